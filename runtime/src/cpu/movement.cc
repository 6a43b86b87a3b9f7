// Shape and data-movement kernels: reshape, transpose, concat, slice,
// broadcast, bitcast, shape_of (of a tensor or a KV cache), range, fill,
// gather, gather_nd and tensor_scatter.
//
// Data is moved by element width only (1, 2, 4 or 8 bytes); the packed 4-bit
// types are unpacked to a byte per element around the same code
// (RunOnUnpackedNibbles), except by reshape and bitcast, which move bytes.
// Every copy is a dense walk of the result reading the input through
// strides (StridedCopy), with memcpy where rows are contiguous.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/kernel_util.h"
#include "cpu/kernels.h"

namespace kiln {
namespace {

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

// True when `shape` agrees with every static dimension of `declared`.
bool MatchesDeclared(const Dims& shape, const Dims& declared) {
  if (shape.rank != declared.rank) return false;
  for (int i = 0; i < shape.rank; ++i)
    if (declared[i] >= 0 && declared[i] != shape[i]) return false;
  return true;
}

// "[0, 2]": the position of element `flat` in a dense tensor of `shape`.
std::string PositionStr(const Dims& shape, int64_t flat) {
  Dims pos;
  pos.rank = shape.rank;
  for (int d = shape.rank - 1; d >= 0; --d) {
    pos[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return pos.str();
}

// Reads element `i` of an index tensor (i32 or i64) as int64.
inline int64_t IndexAt(const Tensor& t, int64_t i) {
  return t.dtype == KILN_DTYPE_I32 ? int64_t(t.as<int32_t>()[i]) : t.as<int64_t>()[i];
}

kiln_status_t CheckIndexTensor(KernelContext& ctx, const Tensor& t,
                               const char* what) {
  if (t.dtype != KILN_DTYPE_I32 && t.dtype != KILN_DTYPE_I64)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "%s must be i32 or i64, found %s", what, DTypeName(t.dtype));
  return nullptr;
}

// Reads a 1-D i64 (or i32) shape operand.
kiln_status_t ReadShapeOperand(KernelContext& ctx, const Tensor& t,
                               std::vector<int64_t>* out) {
  KILN_RETURN_IF_ERROR(CheckIndexTensor(ctx, t, "the shape operand"));
  if (t.shape.rank != 1)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "the shape operand must be 1-D, found shape %s",
                       t.shape.str().c_str());
  if (t.numel() > kMaxRank)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "the shape operand has %lld entries; at most %d are "
                       "supported",
                       static_cast<long long>(t.numel()), kMaxRank);
  out->resize(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) (*out)[size_t(i)] = IndexAt(t, i);
  return nullptr;
}

// Copies a strided view into the dense result `out` of `shape`: output
// element at index (i0, ..., ik) reads in[sum(i_d * strides[d])] (strides in
// elements, may be 0 or negative). Size-1 dimensions are dropped and
// dimensions the view reads contiguously merged, so contiguous rows become
// one memcpy and broadcast rows one fill.
void StridedCopy(ThreadPool& pool, size_t es, const Dims& shape,
                 const void* in, const int64_t* strides, void* out) {
  const int64_t total = shape.numel();
  if (total == 0) return;
  int64_t dims[kMaxRank], st[kMaxRank];
  int r = 0;
  for (int d = 0; d < shape.rank; ++d) {
    if (shape[d] == 1) continue;
    if (r > 0 && st[r - 1] == strides[d] * shape[d]) {
      dims[r - 1] *= shape[d];
      st[r - 1] = strides[d];
    } else {
      dims[r] = shape[d];
      st[r] = strides[d];
      ++r;
    }
  }
  if (r == 0) {
    dims[0] = 1;
    st[0] = 0;
    r = 1;
  }
  const int64_t inner = dims[r - 1], s = st[r - 1];
  if (r == 1 && s == 1) {  // one contiguous run
    ParallelCopy(pool, out, in, size_t(inner) * es);
    return;
  }
  const int64_t rows = total / inner;
  const char* src = static_cast<const char*>(in);
  char* dst = static_cast<char*>(out);
  DispatchBySize(es, [&](auto tag) {
    using T = typename decltype(tag)::type;
    pool.parallel_for(rows, std::max<int64_t>(1, kGrainCheap / inner),
                      [&](int64_t b, int64_t e) {
      // Offset of the first row, then an odometer over the outer dims.
      int64_t idx[kMaxRank] = {};
      int64_t off = 0, rem = b;
      for (int d = r - 2; d >= 0; --d) {
        idx[d] = rem % dims[d];
        rem /= dims[d];
        off += idx[d] * st[d];
      }
      for (int64_t row = b; row < e; ++row) {
        const T* from = reinterpret_cast<const T*>(src) + off;
        T* to = reinterpret_cast<T*>(dst) + row * inner;
        if (s == 1) {
          std::memcpy(to, from, size_t(inner) * sizeof(T));
        } else if (s == 0) {
          std::fill(to, to + inner, *from);
        } else {
          for (int64_t j = 0; j < inner; ++j) to[j] = from[j * s];
        }
        for (int d = r - 2; d >= 0; --d) {
          off += st[d];
          if (++idx[d] < dims[d]) break;
          off -= dims[d] * st[d];
          idx[d] = 0;
        }
      }
    });
  });
}

// A dense copy of `x` into `out` that keeps its bytes, or makes `out` a view
// of `x` when the memory plan allows.
kiln_status_t CopyOrAlias(KernelContext& ctx, const Tensor& x,
                          const Dims& shape) {
  Tensor* out = nullptr;
  if (ctx.can_alias(0, 0)) return ctx.alias_output(0, shape, 0, &out);
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  ParallelCopy(ctx.pool(), out->data, x.data, size_t(x.bytes()));
  return nullptr;
}

//===----------------------------------------------------------------------===//
// reshape
//===----------------------------------------------------------------------===//

// The rule for a result with several dynamic dimensions and no shape
// operand: they are the input's dynamic dimensions in order, with static
// dimensions split, merged, inserted or removed around them. The kernel sees
// only run-time input dimensions, so it finds where they are: the input must
// read as T0 d1 T1 d2 ... dk Tk with each static run Tj holding as many
// elements as the result's static run Sj between the same dynamic
// dimensions. Runs are tried shortest first (backtracking over the size-1
// dimensions that make them ambiguous).
bool MatchDynamicDims(const Dims& in, const int64_t* groups, int k, int g,
                      int pos, int64_t* found) {
  int64_t prod = 1;
  for (int end = pos;; ++end) {
    if (prod == groups[g]) {
      if (g == k) {
        if (end == in.rank) return true;
      } else if (end < in.rank) {
        found[g] = in[end];
        if (MatchDynamicDims(in, groups, k, g + 1, end + 1, found)) return true;
      }
    }
    if (end >= in.rank) return false;
    prod *= in[end];
    if (prod > groups[g] && groups[g] != 0) return false;
  }
}

kiln_status_t ReshapeKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1, 1));
  const Tensor& x = ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  const Dims& declared = ctx.declared_output_shape(0);
  const int64_t numel = x.numel();
  Dims shape = declared;
  int dynamic = 0;
  for (int i = 0; i < declared.rank; ++i) dynamic += declared[i] < 0;

  if (ctx.num_inputs() > 1 && ctx.has_input(1)) {
    // ONNX Reshape: 0 copies the input dimension, one -1 is inferred.
    std::vector<int64_t> s;
    KILN_RETURN_IF_ERROR(ReadShapeOperand(ctx, ctx.input(1), &s));
    if (int(s.size()) != declared.rank)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "the shape operand has %zu entries but the result "
                         "%s has rank %d",
                         s.size(), declared.str().c_str(), declared.rank);
    int infer = -1;
    for (int i = 0; i < declared.rank; ++i) {
      int64_t v = s[size_t(i)];
      if (v == 0) {
        if (i >= x.shape.rank)
          return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                             "shape entry %d is 0 (copy the input dimension) "
                             "but the input %s has rank %d",
                             i, x.shape.str().c_str(), x.shape.rank);
        v = x.shape[i];
      } else if (v == -1) {
        if (infer >= 0)
          return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                             "the shape operand has more than one -1");
        infer = i;
        v = 1;
      } else if (v < -1) {
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "shape entry %d is %lld", i, static_cast<long long>(v));
      }
      shape[i] = v;
    }
    if (infer >= 0) {
      const int64_t rest = shape.numel();
      if (rest == 0 ? numel != 0 : numel % rest != 0)
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "cannot reshape input %s (%lld elements) with shape "
                           "entries that leave %lld elements for the -1",
                           x.shape.str().c_str(), static_cast<long long>(numel),
                           static_cast<long long>(rest));
      shape[infer] = rest == 0 ? 0 : numel / rest;
    }
  } else if (dynamic == 1) {
    // The element count gives the one dynamic dimension.
    int at = 0;
    int64_t rest = 1;
    for (int i = 0; i < declared.rank; ++i) {
      if (declared[i] < 0) at = i;
      else rest *= declared[i];
    }
    if (rest == 0 ? numel != 0 : numel % rest != 0)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "cannot reshape input %s (%lld elements) into %s",
                         x.shape.str().c_str(), static_cast<long long>(numel),
                         declared.str().c_str());
    shape[at] = rest == 0 ? 0 : numel / rest;
  } else if (dynamic > 1) {
    // With the input's compile-time shape the dynamic dimensions are known
    // exactly: the input's run-time dimensions where it was dynamic, in
    // order. Without it (unit tests), they are searched for.
    const Dims* in_decl = ctx.declared_input_shape(0);
    int in_dynamic = 0;
    if (in_decl && in_decl->rank == x.shape.rank)
      for (int i = 0; i < in_decl->rank; ++i) in_dynamic += (*in_decl)[i] < 0;
    if (in_dynamic == dynamic) {
      for (int i = 0, j = 0; i < declared.rank; ++i) {
        if (declared[i] >= 0) continue;
        while ((*in_decl)[j] >= 0) ++j;
        shape[i] = x.shape[j++];
      }
    } else {
      int64_t groups[kMaxRank + 1], found[kMaxRank];
      int k = 0;
      groups[0] = 1;
      for (int i = 0; i < declared.rank; ++i) {
        if (declared[i] < 0) groups[++k] = 1;
        else groups[k] *= declared[i];
      }
      if (!MatchDynamicDims(x.shape, groups, k, 0, 0, found))
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "cannot find the %d dynamic dimensions of %s in the "
                           "input %s",
                           dynamic, declared.str().c_str(), x.shape.str().c_str());
      for (int i = 0, j = 0; i < declared.rank; ++i)
        if (declared[i] < 0) shape[i] = found[j++];
    }
  }
  if (!MatchesDeclared(shape, declared) || shape.numel() != numel)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "cannot reshape input %s (%lld elements) into %s "
                       "(declared %s)",
                       x.shape.str().c_str(), static_cast<long long>(numel),
                       shape.str().c_str(), declared.str().c_str());
  // Packed 4-bit rows are padded to whole bytes: with an odd innermost
  // dimension on either side the bytes move, so repack.
  auto odd_rows = [](const Dims& d) { return d.rank == 0 || (d.back() & 1); };
  if (IsSubByte(x.dtype) && numel > 0 && (odd_rows(x.shape) || odd_rows(shape))) {
    std::vector<uint8_t> bytes(static_cast<size_t>(numel));
    UnpackNibbles(x.as<uint8_t>(), x.shape, false, bytes.data());
    Tensor* out = nullptr;
    KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
    PackNibbles(bytes.data(), shape, out->as<uint8_t>());
    return nullptr;
  }
  return CopyOrAlias(ctx, x, shape);
}

//===----------------------------------------------------------------------===//
// transpose
//===----------------------------------------------------------------------===//

// Tiled copy for a transpose whose innermost result dimension is strided in
// the input: both the input's and the result's innermost dimension are
// walked in kTile x kTile blocks so every cache line read or written is used
// whole. `a` is the result dimension that is the input's innermost.
template <class T>
void TiledTranspose(ThreadPool& pool, int rank, const int64_t* dims,
                    const int64_t* in_strides, int a, const T* in, T* out) {
  constexpr int64_t kTile = 16;
  const int last = rank - 1;
  Dims shape = Dims::FromArray(dims, rank);
  const Dims out_strides = StridesOf(shape);
  const int64_t na = dims[a], nl = dims[last];
  const int64_t ta = (na + kTile - 1) / kTile, tl = (nl + kTile - 1) / kTile;
  int64_t outer = 1;
  for (int d = 0; d < rank; ++d)
    if (d != a && d != last) outer *= dims[d];
  const int64_t sl = in_strides[last], oa = out_strides[a];
  pool.parallel_for(outer * ta * tl,
                    std::max<int64_t>(1, kGrainCheap / (kTile * kTile)),
                    [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t jl = t % tl, ja = (t / tl) % ta;
      int64_t rem = t / (tl * ta);
      int64_t in_off = 0, out_off = 0;
      for (int d = last; d >= 0; --d) {
        if (d == a || d == last) continue;
        const int64_t i = rem % dims[d];
        rem /= dims[d];
        in_off += i * in_strides[d];
        out_off += i * out_strides[d];
      }
      const int64_t a0 = ja * kTile, a1 = std::min(na, a0 + kTile);
      const int64_t l0 = jl * kTile, l1 = std::min(nl, l0 + kTile);
      for (int64_t i = a0; i < a1; ++i) {
        const T* src = in + in_off + i;  // the input's stride along `a` is 1
        T* dst = out + out_off + i * oa;
        for (int64_t j = l0; j < l1; ++j) dst[j] = src[j * sl];
      }
    }
  });
}

kiln_status_t TransposeKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, TransposeKernel);
  const Tensor& x = ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  const std::vector<int64_t>& perm = ctx.attrs().Ints("permutation");
  const int rank = x.shape.rank;
  bool valid = int(perm.size()) == rank;
  bool seen[kMaxRank] = {};
  for (size_t i = 0; valid && i < perm.size(); ++i) {
    valid = perm[i] >= 0 && perm[i] < rank && !seen[perm[i]];
    if (valid) seen[perm[i]] = true;
  }
  if (!valid) {
    std::string p = "[";
    for (size_t i = 0; i < perm.size(); ++i)
      p += (i ? ", " : "") + std::to_string(perm[i]);
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "permutation %s] does not permute the dimensions of "
                       "input %s",
                       p.c_str(), x.shape.str().c_str());
  }
  Dims shape;
  for (int i = 0; i < rank; ++i) shape.push_back(x.shape[perm[size_t(i)]]);
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  if (shape.numel() == 0) return nullptr;
  const size_t es = ElementBytes(x.dtype);
  const Dims in_strides = StridesOf(x.shape);
  // Result dimensions with their input strides; merge the runs the input
  // also holds adjacent and in order (size-1 dimensions are transparent).
  int64_t dims[kMaxRank], st[kMaxRank];
  int r = 0;
  for (int i = 0; i < rank; ++i) {
    const int64_t n = shape[i], s = in_strides[perm[size_t(i)]];
    if (n == 1) continue;
    if (r > 0 && st[r - 1] == s * n) {
      dims[r - 1] *= n;
      st[r - 1] = s;
    } else {
      dims[r] = n;
      st[r] = s;
      ++r;
    }
  }
  int a = -1;  // the result dimension the input walks contiguously
  for (int i = 0; i < r; ++i)
    if (st[i] == 1) a = i;
  if (r >= 2 && a >= 0 && a != r - 1) {
    DispatchBySize(es, [&](auto tag) {
      using T = typename decltype(tag)::type;
      TiledTranspose<T>(ctx.pool(), r, dims, st, a, x.as<T>(), out->as<T>());
    });
    return nullptr;
  }
  if (r == 0) {  // a single element
    std::memcpy(out->data, x.data, es);
    return nullptr;
  }
  StridedCopy(ctx.pool(), es, Dims::FromArray(dims, r), x.data, st, out->data);
  return nullptr;
}

//===----------------------------------------------------------------------===//
// concat
//===----------------------------------------------------------------------===//

kiln_status_t ConcatKernel(KernelContext& ctx) {
  const size_t n = ctx.num_inputs();
  if (n == 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "needs at least one input");
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, n));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, ConcatKernel);
  const Tensor& first = ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, first.dtype));
  const int64_t axis_attr = ctx.attrs().Int("axis", 0);
  int axis;
  if (!NormalizeAxis(axis_attr, first.shape.rank, &axis))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "axis %lld is out of range for input shape %s",
                       static_cast<long long>(axis_attr), first.shape.str().c_str());
  Dims shape = first.shape;
  shape[axis] = 0;
  for (size_t k = 0; k < n; ++k) {
    const Tensor& t = ctx.input(k);
    if (t.dtype != first.dtype)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "input #%zu is %s but input #0 is %s", k,
                         DTypeName(t.dtype), DTypeName(first.dtype));
    bool ok = t.shape.rank == first.shape.rank;
    for (int d = 0; ok && d < t.shape.rank; ++d)
      ok = d == axis || t.shape[d] == first.shape[d];
    if (!ok)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "input #%zu shape %s does not match input #0 shape %s "
                         "outside axis %d",
                         k, t.shape.str().c_str(), first.shape.str().c_str(), axis);
    shape[axis] += t.shape[axis];
  }
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  if (shape.numel() == 0) return nullptr;
  const size_t es = ElementBytes(first.dtype);
  const int64_t outer = DimProduct(shape, 0, axis);
  const size_t inner_bytes = size_t(DimProduct(shape, axis + 1, shape.rank)) * es;
  const size_t out_row = size_t(shape[axis]) * inner_bytes;
  // Each (outer index, input) pair is one contiguous block.
  std::vector<size_t> offset(n), bytes(n);
  size_t at = 0;
  for (size_t k = 0; k < n; ++k) {
    offset[k] = at;
    bytes[k] = size_t(ctx.input(k).shape[axis]) * inner_bytes;
    at += bytes[k];
  }
  char* dst = out->as<char>();
  if (outer == 1) {  // a few large blocks: split each one
    for (size_t k = 0; k < n; ++k)
      ParallelCopy(ctx.pool(), dst + offset[k], ctx.input(k).data, bytes[k]);
    return nullptr;
  }
  ctx.pool().parallel_for(outer, std::max<int64_t>(1, int64_t(kGrainCheap / std::max<size_t>(out_row, 1))),
                          [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o)
      for (size_t k = 0; k < n; ++k)
        if (bytes[k])
          std::memcpy(dst + size_t(o) * out_row + offset[k],
                      ctx.input(k).as<char>() + size_t(o) * bytes[k], bytes[k]);
  });
  return nullptr;
}

//===----------------------------------------------------------------------===//
// slice
//===----------------------------------------------------------------------===//

kiln_status_t SliceKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, SliceKernel);
  const Tensor& x = ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  const Attrs& attrs = ctx.attrs();
  const std::vector<int64_t>& axes = attrs.Ints("axes");
  const std::vector<int64_t>& starts = attrs.Ints("starts");
  const std::vector<int64_t>& ends = attrs.Ints("ends");
  const std::vector<int64_t>& steps = attrs.Ints("steps");
  const size_t n = axes.size();
  if (starts.size() != n || ends.size() != n || steps.size() != n)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "axes, starts, ends and steps must have equal lengths, "
                       "found %zu, %zu, %zu, %zu",
                       n, starts.size(), ends.size(), steps.size());
  Dims shape = x.shape;
  int64_t first[kMaxRank] = {}, step[kMaxRank];
  for (int d = 0; d < kMaxRank; ++d) step[d] = 1;
  bool seen[kMaxRank] = {};
  for (size_t i = 0; i < n; ++i) {
    int axis;
    if (!NormalizeAxis(axes[i], x.shape.rank, &axis))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "axis %lld is out of range for input shape %s",
                         static_cast<long long>(axes[i]), x.shape.str().c_str());
    if (seen[axis])
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "axis %lld is listed twice", static_cast<long long>(axes[i]));
    seen[axis] = true;
    if (steps[i] == 0)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "step for axis %lld is 0", static_cast<long long>(axes[i]));
    // ONNX Slice: negative bounds count from the end, then starts clamp to
    // [0, dim] ([0, dim - 1] stepping backwards) and ends to [0, dim]
    // ([-1, dim - 1] backwards, -1 meaning "through index 0").
    const int64_t dim = x.shape[axis];
    const int64_t st = std::max<int64_t>(steps[i], -INT64_MAX);
    auto norm = [&](int64_t v) { return v < 0 ? v + dim : v; };
    int64_t size;
    if (st > 0) {
      const int64_t s = std::clamp<int64_t>(norm(starts[i]), 0, dim);
      const int64_t e = std::clamp<int64_t>(norm(ends[i]), 0, dim);
      size = e > s ? (e - s - 1) / st + 1 : 0;
      first[axis] = s;
    } else {
      const int64_t s = std::clamp<int64_t>(norm(starts[i]), -1, dim - 1);
      const int64_t e = std::clamp<int64_t>(norm(ends[i]), -1, dim - 1);
      size = s > e ? (s - e - 1) / -st + 1 : 0;
      first[axis] = s;
    }
    // With one element taken the step is irrelevant; with more it is below
    // the dimension, so step * stride below cannot overflow.
    step[axis] = size > 1 ? st : 1;
    shape[axis] = size;
  }
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  if (shape.numel() == 0) return nullptr;
  const Dims in_strides = StridesOf(x.shape);
  int64_t strides[kMaxRank];
  int64_t base = 0;
  for (int d = 0; d < x.shape.rank; ++d) {
    base += first[d] * in_strides[d];
    strides[d] = step[d] * in_strides[d];
  }
  const size_t es = ElementBytes(x.dtype);
  StridedCopy(ctx.pool(), es, shape, x.as<char>() + base * int64_t(es), strides,
              out->data);
  return nullptr;
}

//===----------------------------------------------------------------------===//
// broadcast
//===----------------------------------------------------------------------===//

kiln_status_t BroadcastKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1, 1));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, BroadcastKernel);
  const Tensor& x = ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  const Dims& declared = ctx.declared_output_shape(0);
  Dims shape;
  if (ctx.num_inputs() > 1 && ctx.has_input(1)) {
    // ONNX Expand: the target broadcasts with the input's shape.
    std::vector<int64_t> s;
    KILN_RETURN_IF_ERROR(ReadShapeOperand(ctx, ctx.input(1), &s));
    Dims target;
    for (int64_t v : s) {
      if (v < 0)
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "the shape operand has a negative entry %lld",
                           static_cast<long long>(v));
      target.push_back(v);
    }
    const Dims* shapes[2] = {&x.shape, &target};
    if (!BroadcastShapes(shapes, 2, &shape))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "input shape %s does not broadcast with the target %s",
                         x.shape.str().c_str(), target.str().c_str());
  } else {
    // A dynamic result dimension is the input's dimension aligned with it.
    shape = declared;
    const int offset = declared.rank - x.shape.rank;
    if (offset < 0)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "cannot broadcast input %s to the lower rank result %s",
                         x.shape.str().c_str(), declared.str().c_str());
    for (int d = 0; d < declared.rank; ++d) {
      if (declared[d] >= 0) continue;
      if (d < offset)
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "result dimension %d of %s is dynamic but has no "
                           "aligned input dimension in %s",
                           d, declared.str().c_str(), x.shape.str().c_str());
      shape[d] = x.shape[d - offset];
    }
  }
  // The input must broadcast to the result.
  const int offset = shape.rank - x.shape.rank;
  bool ok = offset >= 0;
  for (int d = 0; ok && d < x.shape.rank; ++d)
    ok = x.shape[d] == 1 || x.shape[d] == shape[d + offset];
  if (!ok)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "input shape %s does not broadcast to %s",
                       x.shape.str().c_str(), shape.str().c_str());
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  if (shape.numel() == 0) return nullptr;
  const Dims in_strides = StridesOf(x.shape);
  int64_t strides[kMaxRank] = {};
  for (int d = 0; d < x.shape.rank; ++d)
    strides[d + offset] = x.shape[d] == shape[d + offset] ? in_strides[d] : 0;
  StridedCopy(ctx.pool(), ElementBytes(x.dtype), shape, x.data, strides, out->data);
  return nullptr;
}

//===----------------------------------------------------------------------===//
// bitcast
//===----------------------------------------------------------------------===//

kiln_status_t BitcastKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  const Tensor& x = ctx.input(0);
  const kiln_dtype_t to = ctx.output_dtype(0);
  if (kiln_dtype_bit_width(to) == 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "invalid result element type %d", int(to));
  const Dims& declared = ctx.declared_output_shape(0);
  const uint64_t bytes = x.bytes();
  Dims shape = declared;
  int dynamic = 0, at = -1;
  for (int i = 0; i < declared.rank; ++i)
    if (declared[i] < 0) ++dynamic, at = i;
  if (dynamic == 1) {
    // The byte count gives the dynamic dimension: storage grows linearly
    // with it, except for a packed innermost one (two elements per byte;
    // the even count is taken).
    shape[at] = 1;
    uint64_t unit = StorageBytes(to, shape);
    int64_t v = -1;
    if (IsSubByte(to) && at == declared.rank - 1) {
      uint64_t rows = uint64_t(DimProduct(shape, 0, at));
      if (rows == 0) v = 0;
      else if (bytes % rows == 0) v = int64_t(bytes / rows * 2);
    } else if (unit == 0) {
      v = 0;
    } else if (bytes % unit == 0) {
      v = int64_t(bytes / unit);
    }
    if (v < 0)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "input %s %s (%llu bytes) does not fill a whole %s %s",
                         x.shape.str().c_str(), DTypeName(x.dtype),
                         static_cast<unsigned long long>(bytes),
                         declared.str().c_str(), DTypeName(to));
    shape[at] = v;
  } else if (dynamic > 1) {
    // Several: the input's dimensions at the same positions.
    if (declared.rank != x.shape.rank)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "cannot infer the dynamic dimensions of %s from input %s",
                         declared.str().c_str(), x.shape.str().c_str());
    for (int i = 0; i < declared.rank; ++i)
      if (declared[i] < 0) shape[i] = x.shape[i];
  }
  if (StorageBytes(to, shape) != bytes)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "input %s %s occupies %llu bytes but result %s %s "
                       "occupies %llu",
                       x.shape.str().c_str(), DTypeName(x.dtype),
                       static_cast<unsigned long long>(bytes), shape.str().c_str(),
                       DTypeName(to),
                       static_cast<unsigned long long>(StorageBytes(to, shape)));
  return CopyOrAlias(ctx, x, shape);
}

//===----------------------------------------------------------------------===//
// shape_of, range, fill
//===----------------------------------------------------------------------===//

kiln_status_t ShapeOfKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  // Of a KV cache, the logical shape of its keys: the tokens cached so far,
  // not the capacity (which is the storage's business).
  Dims shape;
  if (ctx.is_cache(0)) {
    const KvCache& c = ctx.cache_input(0);
    shape = Dims{c.batch, c.length, c.kv_heads, c.head_dim};
  } else {
    shape = ctx.input(0).shape;
  }
  const kiln_dtype_t to = ctx.output_dtype(0);
  if (to != KILN_DTYPE_I64 && to != KILN_DTYPE_I32)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "result must be i64, found %s", DTypeName(to));
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, Dims{shape.rank}, &out));
  for (int i = 0; i < shape.rank; ++i) {
    if (to == KILN_DTYPE_I64) out->as<int64_t>()[i] = shape[i];
    else out->as<int32_t>()[i] = int32_t(shape[i]);
  }
  return nullptr;
}

// Results with more elements than this are refused rather than attempted.
constexpr int64_t kMaxRangeElements = int64_t(1) << 32;

kiln_status_t RangeKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 3));
  const kiln_dtype_t dtype = ctx.input(0).dtype;
  const char* names[3] = {"start", "limit", "delta"};
  for (size_t i = 0; i < 3; ++i) {
    const Tensor& t = ctx.input(i);
    if (t.dtype != dtype)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "%s is %s but start is %s", names[i],
                         DTypeName(t.dtype), DTypeName(dtype));
    if (t.numel() != 1)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "%s must be a scalar, found shape %s", names[i],
                         t.shape.str().c_str());
  }
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, dtype));
  if (!DispatchNumeric(dtype, [](auto) {}))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "no range kernel for element type %s", DTypeName(dtype));
  kiln_status_t status = nullptr;
  DispatchNumeric(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    using E = Elem<S>;
    const S start = ctx.input(0).as<S>()[0], limit = ctx.input(1).as<S>()[0],
            delta = ctx.input(2).as<S>()[0];
    int64_t n = 0;
    if constexpr (kIsFloatStorage<S>) {
      const double s = double(E::Load(start)), l = double(E::Load(limit)),
                   d = double(E::Load(delta));
      if (!std::isfinite(s) || !std::isfinite(l) || !std::isfinite(d) || d == 0) {
        status = KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                             "start %g, limit %g and delta %g do not give a "
                             "finite range", s, l, d);
        return;
      }
      const double count = std::ceil((l - s) / d);
      if (count > double(kMaxRangeElements)) n = kMaxRangeElements + 1;
      else n = count > 0 ? int64_t(count) : 0;
      if (n <= kMaxRangeElements) {
        Tensor* out = nullptr;
        status = ctx.allocate_output(0, Dims{n}, &out);
        if (status) return;
        S* o = out->as<S>();
        for (int64_t i = 0; i < n; ++i) o[i] = StoreDouble<S>(s + double(i) * d);
        return;
      }
    } else {
      // Exact in 128 bits: limit - start cannot overflow there.
      const __int128 s = start, l = limit, d = delta;
      if (d == 0) {
        status = KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "delta is 0");
        return;
      }
      __int128 count = 0;
      if (d > 0 && l > s) count = (l - s + d - 1) / d;
      if (d < 0 && l < s) count = (s - l - d - 1) / -d;
      n = count > kMaxRangeElements ? kMaxRangeElements + 1 : int64_t(count);
      if (n <= kMaxRangeElements) {
        Tensor* out = nullptr;
        status = ctx.allocate_output(0, Dims{n}, &out);
        if (status) return;
        S* o = out->as<S>();
        for (int64_t i = 0; i < n; ++i) o[i] = S(s + __int128(i) * d);
        return;
      }
    }
    status = KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "the range has more than %lld elements",
                         static_cast<long long>(kMaxRangeElements));
  });
  return status;
}

kiln_status_t FillKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 0, 1));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, FillKernel);
  const kiln_dtype_t dtype = ctx.output_dtype(0);
  const Dims& declared = ctx.declared_output_shape(0);
  Dims shape = declared;
  if (ctx.num_inputs() > 0 && ctx.has_input(0)) {
    std::vector<int64_t> s;
    KILN_RETURN_IF_ERROR(ReadShapeOperand(ctx, ctx.input(0), &s));
    if (int(s.size()) != declared.rank)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "the shape operand has %zu entries but the result %s "
                         "has rank %d",
                         s.size(), declared.str().c_str(), declared.rank);
    for (int i = 0; i < declared.rank; ++i) {
      if (s[size_t(i)] < 0)
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "shape entry %d is %lld", i,
                           static_cast<long long>(s[size_t(i)]));
      shape[i] = s[size_t(i)];
    }
  } else {
    for (int i = 0; i < declared.rank; ++i)
      if (declared[i] < 0)
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "result %s is dynamic but no shape operand is given",
                           declared.str().c_str());
  }
  const AttrValue* value = ctx.attrs().Find("value");
  if (!value || (value->kind != AttrValue::kInt && value->kind != AttrValue::kFloat &&
                 value->kind != AttrValue::kBool))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "needs an integer or float 'value' attribute");
  uint64_t pattern = 0;  // the element's bytes
  const bool supported = DispatchAll(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S v = value->kind == AttrValue::kFloat ? Convert<S>(value->f)
                                                 : Convert<S>(value->i);
    std::memcpy(&pattern, &v, sizeof(S));
  });
  if (!supported)
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "no fill kernel for element type %s", DTypeName(dtype));
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  const int64_t n = shape.numel();
  if (n == 0) return nullptr;
  DispatchBySize(ElementBytes(dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v;
    std::memcpy(&v, &pattern, sizeof(T));
    T* o = out->as<T>();
    ctx.pool().parallel_for(n, kGrainCheap, [&](int64_t b, int64_t e) {
      std::fill(o + b, o + e, v);
    });
  });
  return nullptr;
}

//===----------------------------------------------------------------------===//
// gather, gather_nd
//===----------------------------------------------------------------------===//

// Copies groups * offsets.size() slices of `slice` elements: result slice
// g * n + k (n = offsets.size()) comes from element g * group_stride +
// offsets[k] of the input. Offsets are per index, not per result slice, so
// no table the size of the result is built.
void CopySlices(ThreadPool& pool, size_t es, const void* in, int64_t groups,
                const std::vector<int64_t>& offsets, int64_t group_stride,
                int64_t slice, void* out) {
  const int64_t n = int64_t(offsets.size()), count = groups * n;
  if (count == 0 || slice == 0) return;
  DispatchBySize(es, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = static_cast<const T*>(in);
    T* dst = static_cast<T*>(out);
    pool.parallel_for(count, std::max<int64_t>(1, kGrainCheap / slice),
                      [&](int64_t b, int64_t e) {
      int64_t g = b / n, k = b % n;
      for (int64_t j = b; j < e; ++j) {
        const T* from = src + g * group_stride + offsets[size_t(k)];
        if (slice == 1)
          dst[j] = *from;
        else
          std::memcpy(dst + j * slice, from, size_t(slice) * sizeof(T));
        if (++k == n) k = 0, ++g;
      }
    });
  });
}

kiln_status_t GatherKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 2));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, GatherKernel);
  const Tensor& x = ctx.input(0);
  const Tensor& idx = ctx.input(1);
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  KILN_RETURN_IF_ERROR(CheckIndexTensor(ctx, idx, "indices"));
  const int64_t axis_attr = ctx.attrs().Int("axis", 0);
  int axis;
  if (!NormalizeAxis(axis_attr, x.shape.rank, &axis))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "axis %lld is out of range for input shape %s",
                       static_cast<long long>(axis_attr), x.shape.str().c_str());
  if (x.shape.rank - 1 + idx.shape.rank > kMaxRank)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "input %s and indices %s give a result of rank > %d",
                       x.shape.str().c_str(), idx.shape.str().c_str(), kMaxRank);
  Dims shape;
  for (int d = 0; d < axis; ++d) shape.push_back(x.shape[d]);
  for (int d = 0; d < idx.shape.rank; ++d) shape.push_back(idx.shape[d]);
  for (int d = axis + 1; d < x.shape.rank; ++d) shape.push_back(x.shape[d]);
  // Check every index before writing anything (ids outside the vocabulary
  // come this way).
  const int64_t dim = x.shape[axis], n = idx.numel();
  std::vector<int64_t> index(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    int64_t v = IndexAt(idx, j);
    if (v < -dim || v >= dim)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "index %lld at %s is out of range [%lld, %lld) of axis %d",
                         static_cast<long long>(v), PositionStr(idx.shape, j).c_str(),
                         static_cast<long long>(-dim), static_cast<long long>(dim),
                         axis);
    index[size_t(j)] = v < 0 ? v + dim : v;
  }
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  if (shape.numel() == 0) return nullptr;
  const int64_t outer = DimProduct(x.shape, 0, axis);
  const int64_t inner = DimProduct(x.shape, axis + 1, x.shape.rank);
  for (int64_t& v : index) v *= inner;
  CopySlices(ctx.pool(), ElementBytes(x.dtype), x.data, outer, index, dim * inner,
             inner, out->data);
  return nullptr;
}

kiln_status_t GatherNdKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 2));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, GatherNdKernel);
  const Tensor& x = ctx.input(0);
  const Tensor& idx = ctx.input(1);
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  KILN_RETURN_IF_ERROR(CheckIndexTensor(ctx, idx, "indices"));
  const int64_t b = ctx.attrs().Int("batch_dims", 0);
  const int64_t k = idx.shape.rank > 0 ? idx.shape.back() : 0;
  if (idx.shape.rank < 1 || b < 0 || b >= std::min(x.shape.rank, idx.shape.rank) ||
      k < 1 || b + k > x.shape.rank)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "batch_dims %lld and indices %s do not fit input %s",
                       static_cast<long long>(b), idx.shape.str().c_str(),
                       x.shape.str().c_str());
  for (int d = 0; d < b; ++d)
    if (x.shape[d] != idx.shape[d])
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "batch dimension %d differs: input %s, indices %s", d,
                         x.shape.str().c_str(), idx.shape.str().c_str());
  Dims shape;
  for (int d = 0; d + 1 < idx.shape.rank; ++d) shape.push_back(idx.shape[d]);
  if (shape.rank + (x.shape.rank - b - k) > kMaxRank)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "input %s and indices %s give a result of rank > %d",
                       x.shape.str().c_str(), idx.shape.str().c_str(), kMaxRank);
  for (int d = int(b + k); d < x.shape.rank; ++d) shape.push_back(x.shape[d]);
  const Dims in_strides = StridesOf(x.shape);
  const int64_t batches = DimProduct(x.shape, 0, int(b));
  const int64_t tuples = idx.numel() / k;  // over all batches
  const int64_t per_batch = batches ? tuples / batches : 0;
  const int64_t batch_stride = b > 0 ? in_strides[int(b) - 1] : 0;
  const int64_t slice = DimProduct(x.shape, int(b + k), x.shape.rank);
  std::vector<int64_t> src(static_cast<size_t>(tuples));
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t off = per_batch ? (t / per_batch) * batch_stride : 0;
    for (int64_t c = 0; c < k; ++c) {
      const int axis = int(b + c);
      const int64_t dim = x.shape[axis];
      int64_t v = IndexAt(idx, t * k + c);
      if (v < -dim || v >= dim)
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "index %lld at %s is out of range [%lld, %lld) of "
                           "axis %d",
                           static_cast<long long>(v),
                           PositionStr(idx.shape, t * k + c).c_str(),
                           static_cast<long long>(-dim), static_cast<long long>(dim),
                           axis);
      off += (v < 0 ? v + dim : v) * in_strides[axis];
    }
    src[size_t(t)] = off;
  }
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  if (shape.numel() == 0) return nullptr;
  CopySlices(ctx.pool(), ElementBytes(x.dtype), x.data, 1, src, 0, slice, out->data);
  return nullptr;
}

//===----------------------------------------------------------------------===//
// tensor_scatter
//===----------------------------------------------------------------------===//

kiln_status_t TensorScatterKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 2, 1));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, TensorScatterKernel);
  const Tensor& cache = ctx.input(0);
  const Tensor& update = ctx.input(1);
  const bool has_indices = ctx.num_inputs() > 2 && ctx.has_input(2);
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, cache.dtype));
  if (update.dtype != cache.dtype)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "update is %s but the cache is %s", DTypeName(update.dtype),
                       DTypeName(cache.dtype));
  const int64_t axis_attr = ctx.attrs().Int("axis", -2);
  int axis;
  if (!NormalizeAxis(axis_attr, cache.shape.rank, &axis))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "axis %lld is out of range for cache shape %s",
                       static_cast<long long>(axis_attr), cache.shape.str().c_str());
  bool ok = update.shape.rank == cache.shape.rank;
  for (int d = 0; ok && d < cache.shape.rank; ++d)
    ok = d == axis || update.shape[d] == cache.shape[d];
  if (!ok)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "update shape %s does not match the cache shape %s "
                       "outside axis %d",
                       update.shape.str().c_str(), cache.shape.str().c_str(), axis);
  const bool circular = ctx.attrs().Flag("circular");
  const int64_t length = cache.shape[axis], count = update.shape[axis];
  // Batch rows (dimension 0) start at their own write index.
  const int64_t batches = axis > 0 ? cache.shape[0] : 1;
  std::vector<int64_t> start(static_cast<size_t>(batches), 0);
  if (has_indices) {
    const Tensor& wi = ctx.input(2);
    KILN_RETURN_IF_ERROR(CheckIndexTensor(ctx, wi, "write_indices"));
    if (axis == 0)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "axis 0 is the batch dimension; write_indices need "
                         "another axis");
    if (wi.shape.rank != 1 || wi.shape[0] != batches)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "write_indices must be [%lld] for cache shape %s, found %s",
                         static_cast<long long>(batches), cache.shape.str().c_str(),
                         wi.shape.str().c_str());
    for (int64_t i = 0; i < batches; ++i) start[size_t(i)] = IndexAt(wi, i);
  }
  for (int64_t i = 0; i < batches; ++i) {
    int64_t s = start[size_t(i)];
    if (circular && length > 0) {
      start[size_t(i)] = ((s % length) + length) % length;
    } else if (count > 0 && (s < 0 || s > length || count > length - s)) {
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "write index %lld of batch row %lld with %lld new "
                         "entries does not fit axis %d of cache shape %s",
                         static_cast<long long>(s), static_cast<long long>(i),
                         static_cast<long long>(count), axis,
                         cache.shape.str().c_str());
    }
  }
  if (circular && length == 0 && count > 0 && update.numel() > 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "cannot write %lld entries into the empty axis %d of "
                       "cache shape %s",
                       static_cast<long long>(count), axis, cache.shape.str().c_str());
  // Update the cache in place when the memory plan gives the result its
  // buffer (the static KV cache case); otherwise copy it first.
  Tensor* out = nullptr;
  if (ctx.can_alias(0, 0)) {
    KILN_RETURN_IF_ERROR(ctx.alias_output(0, cache.shape, 0, &out));
  } else {
    KILN_RETURN_IF_ERROR(ctx.allocate_output(0, cache.shape, &out));
    ParallelCopy(ctx.pool(), out->data, cache.data, size_t(cache.bytes()));
  }
  if (update.numel() == 0) return nullptr;
  // [batches, mid, length, inner] for the cache; [.., count, ..] for update.
  const size_t es = ElementBytes(cache.dtype);
  const int64_t mid = axis > 0 ? DimProduct(cache.shape, 1, axis) : 1;
  const size_t inner = size_t(DimProduct(cache.shape, axis + 1, cache.shape.rank)) * es;
  const char* src = update.as<char>();
  char* dst = out->as<char>();
  // Entries written to one place twice (circular, count > length): the last
  // one wins, so each (batch, mid) row is written in order by one task.
  const int64_t rows = batches * mid;
  ctx.pool().parallel_for(rows, std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(1, count * int64_t(inner))),
                          [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t s = start[size_t(r / mid)];
      for (int64_t u = 0; u < count; ++u) {
        int64_t pos = s + u;
        if (circular) pos %= length;
        std::memcpy(dst + (size_t(r * length + pos)) * inner,
                    src + (size_t(r * count + u)) * inner, inner);
      }
    }
  });
  return nullptr;
}

}  // namespace

void AppendMovementKernels(std::vector<KernelEntry>& out) {
  out.push_back({"reshape", ReshapeKernel});
  out.push_back({"transpose", TransposeKernel});
  out.push_back({"concat", ConcatKernel});
  out.push_back({"slice", SliceKernel});
  out.push_back({"broadcast", BroadcastKernel});
  out.push_back({"bitcast", BitcastKernel});
  out.push_back({"shape_of", ShapeOfKernel});
  out.push_back({"range", RangeKernel});
  out.push_back({"fill", FillKernel});
  out.push_back({"gather", GatherKernel});
  out.push_back({"gather_nd", GatherNdKernel});
  out.push_back({"tensor_scatter", TensorScatterKernel});
}

}  // namespace kiln
