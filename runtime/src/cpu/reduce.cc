// Reductions along axes, softmax and cumulative sums.
//
// Every kernel views its input as [outer, axis, inner] (several reduced axes
// are reduced one contiguous group at a time) so that the inner loops run
// over contiguous memory: along the axis when inner == 1, across `inner`
// otherwise.
//
// Accumulation: floating-point sums, means and products accumulate in f64
// and integers in 64 bits (wrapping as the narrower type would), then round
// once to the result type; max and min are exact. Long sums are split into
// fixed-size chunks whose partial results are combined in order, so results
// do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/kernel_util.h"
#include "cpu/kernels.h"

namespace kiln {
namespace {

//===----------------------------------------------------------------------===//
// reduce
//===----------------------------------------------------------------------===//

enum class RedKind { kSum, kMean, kMax, kMin, kProd };

// The accumulator type of storage type S.
template <class S>
using AccOf = std::conditional_t<
    kIsFloatStorage<S>, double,
    std::conditional_t<std::is_signed_v<S>, int64_t, uint64_t>>;

// max and min are exact in the compute type (f32 for f32, f16 and bf16),
// which keeps their loops in f32.
template <RedKind kKind, class S>
using AccT = std::conditional_t<(kKind == RedKind::kMax || kKind == RedKind::kMin) &&
                                    kIsFloatStorage<S>,
                                typename Elem<S>::Compute, AccOf<S>>;

template <RedKind kKind, class A>
inline A Combine(A a, A b) {
  if constexpr (kKind == RedKind::kSum || kKind == RedKind::kMean) {
    if constexpr (std::is_integral_v<A>)
      return A(uint64_t(a) + uint64_t(b));  // wraps instead of overflowing
    else
      return a + b;
  } else if constexpr (kKind == RedKind::kProd) {
    if constexpr (std::is_integral_v<A>)
      return A(uint64_t(a) * uint64_t(b));
    else
      return a * b;
  } else if constexpr (kKind == RedKind::kMax) {
    return ((a > b) | (a != a)) ? a : b;  // NaN propagates
  } else {
    return ((a < b) | (a != a)) ? a : b;
  }
}

// The value of an empty reduction (ONNX: max of nothing is -inf, or the
// type's lowest value for integers).
template <RedKind kKind, class S>
inline AccT<kKind, S> Identity() {
  using A = AccT<kKind, S>;
  if constexpr (kKind == RedKind::kSum || kKind == RedKind::kMean) return A(0);
  if constexpr (kKind == RedKind::kProd) return A(1);
  if constexpr (kKind == RedKind::kMax) {
    if constexpr (kIsFloatStorage<S>) return -std::numeric_limits<A>::infinity();
    else return A(std::numeric_limits<S>::lowest());
  }
  if constexpr (kKind == RedKind::kMin) {
    if constexpr (kIsFloatStorage<S>) return std::numeric_limits<A>::infinity();
    else return A(std::numeric_limits<S>::max());
  }
}

template <class S>
inline AccOf<S> LoadAcc(S s) {
  return AccOf<S>(Elem<S>::Load(s));
}

// Long reductions are cut into chunks of this many steps; chunk results are
// combined in order, so the split does not depend on the thread count.
constexpr int64_t kReduceChunk = 1 << 14;
// Inner columns one task reduces at once.
constexpr int64_t kInnerBlock = 1024;

// out[o, i] = fold over r of in[o, r, i], for In = S (first stage) or the
// accumulator type (later stages).
template <RedKind kKind, class S, class In>
void ReduceStage(ThreadPool& pool, const In* in, AccT<kKind, S>* out, int64_t O,
                 int64_t R, int64_t I) {
  using A = AccT<kKind, S>;
  const A identity = Identity<kKind, S>();
  auto load = [](In v) -> A {
    if constexpr (std::is_same_v<In, A>) return v;
    else return A(Elem<S>::Load(v));
  };
  const int64_t P = R > kReduceChunk ? (R + kReduceChunk - 1) / kReduceChunk : 1;
  std::vector<A> partial;
  A* dst = out;
  if (P > 1) {
    partial.resize(size_t(O * P * I));
    dst = partial.data();
  }
  const int64_t block = std::min(I, kInnerBlock);
  const int64_t blocks = (I + block - 1) / block;
  const int64_t tasks = O * P * blocks;
  const int64_t work = std::min(R, kReduceChunk) * block;
  pool.parallel_for(tasks, std::max<int64_t>(1, kGrainCheap / work),
                    [&](int64_t tb, int64_t te) {
    for (int64_t t = tb; t < te; ++t) {
      const int64_t ib = t % blocks, p = (t / blocks) % P, o = t / (blocks * P);
      const int64_t r0 = p * kReduceChunk, r1 = std::min(R, r0 + kReduceChunk);
      const int64_t i0 = ib * block, i1 = std::min(I, i0 + block);
      A* acc = dst + (o * P + p) * I;
      if (I == 1) {
        // Four independent chains keep the adds pipelined; combining them
        // in a fixed order keeps the result deterministic.
        const In* row = in + o * R;
        A l0 = identity, l1 = identity, l2 = identity, l3 = identity;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
          l0 = Combine<kKind>(l0, load(row[r]));
          l1 = Combine<kKind>(l1, load(row[r + 1]));
          l2 = Combine<kKind>(l2, load(row[r + 2]));
          l3 = Combine<kKind>(l3, load(row[r + 3]));
        }
        for (; r < r1; ++r) l0 = Combine<kKind>(l0, load(row[r]));
        acc[0] = Combine<kKind>(Combine<kKind>(l0, l1), Combine<kKind>(l2, l3));
      } else {
        for (int64_t i = i0; i < i1; ++i) acc[i] = identity;
        // Four rows per pass keep four memory streams in flight; each
        // column still folds its rows in order.
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
          const In* row0 = in + (o * R + r) * I;
          const In* row1 = row0 + I;
          const In* row2 = row1 + I;
          const In* row3 = row2 + I;
          for (int64_t i = i0; i < i1; ++i) {
            A a = Combine<kKind>(acc[i], load(row0[i]));
            a = Combine<kKind>(a, load(row1[i]));
            a = Combine<kKind>(a, load(row2[i]));
            acc[i] = Combine<kKind>(a, load(row3[i]));
          }
        }
        for (; r < r1; ++r) {
          const In* row = in + (o * R + r) * I;
          for (int64_t i = i0; i < i1; ++i)
            acc[i] = Combine<kKind>(acc[i], load(row[i]));
        }
      }
    }
  });
  if (P == 1) return;
  pool.parallel_for(O * I, std::max<int64_t>(1, kGrainCheap / P),
                    [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t o = k / I, i = k % I;
      A v = partial[size_t((o * P) * I + i)];
      for (int64_t p = 1; p < P; ++p)
        v = Combine<kKind>(v, partial[size_t((o * P + p) * I + i)]);
      out[k] = v;
    }
  });
}

template <RedKind kKind, class S>
void RunReduce(ThreadPool& pool, const Tensor& x, const bool* reduced,
               Tensor* out) {
  using A = AccT<kKind, S>;
  const int64_t n_out = out->numel();
  // Dimensions other than 1, merged into groups of equal reducedness.
  int64_t dims[kMaxRank];
  bool red[kMaxRank];
  int r = 0;
  int64_t count = 1;  // elements folded into each result
  for (int d = 0; d < x.shape.rank; ++d) {
    if (reduced[d]) count *= x.shape[d];
    if (x.shape[d] == 1) continue;
    if (r > 0 && red[r - 1] == reduced[d]) {
      dims[r - 1] *= x.shape[d];
    } else {
      dims[r] = x.shape[d];
      red[r] = reduced[d];
      ++r;
    }
  }
  std::vector<A> acc;
  if (count == 0) {
    acc.assign(size_t(n_out), Identity<kKind, S>());
  } else {
    // Reduce the innermost reduced group first, then the next one out, each
    // stage folding one [O, R, I] view into an accumulator buffer.
    std::vector<A> stage;
    bool first = true;
    for (int g = r - 1; g >= 0; --g) {
      if (!red[g]) continue;
      const int64_t O = [&] { int64_t v = 1; for (int k = 0; k < g; ++k) v *= dims[k]; return v; }();
      const int64_t I = [&] { int64_t v = 1; for (int k = g + 1; k < r; ++k) v *= dims[k]; return v; }();
      std::vector<A> next(static_cast<size_t>(O * I));
      if (first)
        ReduceStage<kKind, S>(pool, x.as<S>(), next.data(), O, dims[g], I);
      else
        ReduceStage<kKind, S>(pool, stage.data(), next.data(), O, dims[g], I);
      stage.swap(next);
      first = false;
      dims[g] = 1;
    }
    if (first) {  // every reduced dimension has size 1: a copy
      stage.resize(size_t(n_out));
      const S* in = x.as<S>();
      for (int64_t k = 0; k < n_out; ++k) stage[size_t(k)] = A(Elem<S>::Load(in[k]));
    }
    acc.swap(stage);
  }
  S* o = out->as<S>();
  pool.parallel_for(n_out, kGrainCheap, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      A v = acc[size_t(k)];
      if constexpr (kKind == RedKind::kMean) {
        if constexpr (std::is_integral_v<A>)
          v = count == 0 ? A(0) : A(v / A(count));  // truncates toward zero
        else
          v = v / A(count);  // 0 / 0 = NaN for an empty mean
      }
      if constexpr (kIsFloatStorage<S>)
        o[k] = StoreDouble<S>(v);
      else
        o[k] = static_cast<S>(v);
    }
  });
}

kiln_status_t ReduceKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  const Tensor& x = ctx.input(0);
  if (!DispatchNumeric(x.dtype, [](auto) {}))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "no reduce kernel for element type %s", DTypeName(x.dtype));
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  std::string_view kind_name = ctx.attrs().String("kind");
  RedKind kind;
  if (kind_name == "sum") kind = RedKind::kSum;
  else if (kind_name == "mean") kind = RedKind::kMean;
  else if (kind_name == "max") kind = RedKind::kMax;
  else if (kind_name == "min") kind = RedKind::kMin;
  else if (kind_name == "prod") kind = RedKind::kProd;
  else
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "unknown reduction '%.*s' (expected sum, mean, max, min "
                       "or prod)",
                       int(kind_name.size()), kind_name.data());
  // The op's verifier requires at least one axis (the importer lists every
  // axis for ONNX's reduce-all default), so an empty list is malformed.
  const std::vector<int64_t>& axes = ctx.attrs().Ints("axes");
  if (axes.empty())
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "needs at least one axis");
  bool reduced[kMaxRank] = {};
  for (int64_t a : axes) {
    int axis;
    if (!NormalizeAxis(a, x.shape.rank, &axis))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "axis %lld is out of range for input shape %s",
                         static_cast<long long>(a), x.shape.str().c_str());
    if (reduced[axis])
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "axis %lld is listed twice", static_cast<long long>(a));
    reduced[axis] = true;
  }
  const bool keep = ctx.attrs().Flag("keep_dims");
  Dims shape;
  for (int d = 0; d < x.shape.rank; ++d) {
    if (!reduced[d]) shape.push_back(x.shape[d]);
    else if (keep) shape.push_back(1);
  }
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  if (out->numel() == 0) return nullptr;
  DispatchNumeric(x.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    switch (kind) {
      case RedKind::kSum: RunReduce<RedKind::kSum, S>(ctx.pool(), x, reduced, out); break;
      case RedKind::kMean: RunReduce<RedKind::kMean, S>(ctx.pool(), x, reduced, out); break;
      case RedKind::kMax: RunReduce<RedKind::kMax, S>(ctx.pool(), x, reduced, out); break;
      case RedKind::kMin: RunReduce<RedKind::kMin, S>(ctx.pool(), x, reduced, out); break;
      case RedKind::kProd: RunReduce<RedKind::kProd, S>(ctx.pool(), x, reduced, out); break;
    }
  });
  return nullptr;
}

//===----------------------------------------------------------------------===//
// softmax
//===----------------------------------------------------------------------===//

// softmax over the axis of an [O, A, I] view, computed in C (f32 for f32,
// f16 and bf16; f64 for f64): subtract the maximum, exponentiate, divide by
// the sum. A row of all -inf gives NaN, as the formula does.
template <class S>
void RunSoftmax(ThreadPool& pool, const S* in, S* out, int64_t O, int64_t A,
                int64_t I) {
  using E = Elem<S>;
  using C = typename E::Compute;
  if (I == 1) {
    pool.parallel_for(O, std::max<int64_t>(1, kGrainHeavy / A),
                      [&](int64_t b, int64_t e) {
      std::vector<C> buf;
      if constexpr (!std::is_same_v<S, C>) buf.resize(size_t(A));
      for (int64_t o = b; o < e; ++o) {
        const S* x = in + o * A;
        C* v;
        if constexpr (std::is_same_v<S, C>) {
          v = out + o * A;
          std::memcpy(v, x, size_t(A) * sizeof(C));
        } else {
          v = buf.data();
          for (int64_t a = 0; a < A; ++a) v[a] = E::Load(x[a]);
        }
        C m = -std::numeric_limits<C>::infinity();
        bool nan = false;
        for (int64_t a = 0; a < A; ++a) {
          m = v[a] > m ? v[a] : m;
          nan |= v[a] != v[a];
        }
        if (nan) m = std::numeric_limits<C>::quiet_NaN();
        // Eight partial sums in f64: a fixed order, and no loss over long
        // rows (a 128k vocabulary).
        double part[8] = {};
        int64_t a = 0;
        for (int64_t k = 0; k < A; ++k) v[k] = ExpC(v[k] - m);
        for (; a + 8 <= A; a += 8)
          for (int k = 0; k < 8; ++k) part[k] += v[a + k];
        for (; a < A; ++a) part[0] += v[a];
        const C sum = C(((part[0] + part[1]) + (part[2] + part[3])) +
                        ((part[4] + part[5]) + (part[6] + part[7])));
        if constexpr (std::is_same_v<S, C>) {
          for (int64_t k = 0; k < A; ++k) v[k] = v[k] / sum;
        } else {
          S* y = out + o * A;
          for (int64_t k = 0; k < A; ++k) y[k] = E::Store(v[k] / sum);
        }
      }
    });
    return;
  }
  // Strided axis: columns of a block of `inner` are independent, so each
  // pass runs across them contiguously.
  const int64_t block = std::min(I, kInnerBlock);
  const int64_t blocks = (I + block - 1) / block;
  pool.parallel_for(O * blocks, std::max<int64_t>(1, kGrainHeavy / (A * block)),
                    [&](int64_t b, int64_t e) {
    std::vector<C> mx(static_cast<size_t>(block));
    std::vector<double> sum(static_cast<size_t>(block));
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / blocks, i0 = (t % blocks) * block;
      const int64_t w = std::min(I, i0 + block) - i0;
      const S* x = in + o * A * I + i0;
      S* y = out + o * A * I + i0;
      std::fill(mx.begin(), mx.end(), -std::numeric_limits<C>::infinity());
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t a = 0; a < A; ++a)
        for (int64_t i = 0; i < w; ++i) {
          C v = E::Load(x[a * I + i]);
          mx[i] = ((v > mx[i]) | (v != v)) ? v : mx[i];
        }
      for (int64_t a = 0; a < A; ++a)
        for (int64_t i = 0; i < w; ++i)
          sum[i] += ExpC(E::Load(x[a * I + i]) - mx[i]);
      for (int64_t a = 0; a < A; ++a)
        for (int64_t i = 0; i < w; ++i)
          y[a * I + i] = E::Store(ExpC(E::Load(x[a * I + i]) - mx[i]) / C(sum[i]));
    }
  });
}

kiln_status_t SoftmaxKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  const Tensor& x = ctx.input(0);
  if (!DispatchFloat(x.dtype, [](auto) {}))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "no softmax kernel for element type %s", DTypeName(x.dtype));
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  const int64_t axis_attr = ctx.attrs().Int("axis", -1);
  int axis = 0;
  // A scalar has one element along its (implicit) only axis.
  if (x.shape.rank == 0 ? (axis_attr != 0 && axis_attr != -1)
                        : !NormalizeAxis(axis_attr, x.shape.rank, &axis))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "axis %lld is out of range for input shape %s",
                       static_cast<long long>(axis_attr), x.shape.str().c_str());
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &out));
  if (x.numel() == 0) return nullptr;
  int64_t O = 1, A = 1, I = 1;
  if (x.shape.rank > 0) {
    O = DimProduct(x.shape, 0, axis);
    A = x.shape[axis];
    I = DimProduct(x.shape, axis + 1, x.shape.rank);
  }
  DispatchFloat(x.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    RunSoftmax<S>(ctx.pool(), x.as<S>(), out->as<S>(), O, A, I);
  });
  return nullptr;
}

//===----------------------------------------------------------------------===//
// cumsum
//===----------------------------------------------------------------------===//

template <class S>
void RunCumsum(ThreadPool& pool, const S* in, S* out, int64_t O, int64_t N,
               int64_t I, bool exclusive, bool reverse) {
  using A = AccOf<S>;
  auto store = [](A v) -> S {
    if constexpr (kIsFloatStorage<S>) return StoreDouble<S>(v);
    else return static_cast<S>(v);
  };
  const int64_t block = std::min(I, kInnerBlock);
  const int64_t blocks = (I + block - 1) / block;
  pool.parallel_for(O * blocks, std::max<int64_t>(1, kGrainCheap / (N * block)),
                    [&](int64_t b, int64_t e) {
    std::vector<A> acc(static_cast<size_t>(block));
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / blocks, i0 = (t % blocks) * block;
      const int64_t w = std::min(I, i0 + block) - i0;
      std::fill(acc.begin(), acc.end(), A(0));
      for (int64_t step = 0; step < N; ++step) {
        const int64_t a = reverse ? N - 1 - step : step;
        const S* x = in + (o * N + a) * I + i0;
        S* y = out + (o * N + a) * I + i0;
        for (int64_t i = 0; i < w; ++i) {
          const A v = LoadAcc<S>(x[i]);
          if (exclusive) y[i] = store(acc[i]);
          acc[i] = Combine<RedKind::kSum>(acc[i], v);
          if (!exclusive) y[i] = store(acc[i]);
        }
      }
    }
  });
}

kiln_status_t CumsumKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  const Tensor& x = ctx.input(0);
  if (!DispatchNumeric(x.dtype, [](auto) {}))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "no cumsum kernel for element type %s", DTypeName(x.dtype));
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  const int64_t axis_attr = ctx.attrs().Int("axis", 0);
  int axis;
  if (!NormalizeAxis(axis_attr, x.shape.rank, &axis))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "axis %lld is out of range for input shape %s",
                       static_cast<long long>(axis_attr), x.shape.str().c_str());
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &out));
  if (x.numel() == 0) return nullptr;
  const int64_t O = DimProduct(x.shape, 0, axis), N = x.shape[axis],
                I = DimProduct(x.shape, axis + 1, x.shape.rank);
  const bool exclusive = ctx.attrs().Flag("exclusive");
  const bool reverse = ctx.attrs().Flag("reverse");
  DispatchNumeric(x.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    RunCumsum<S>(ctx.pool(), x.as<S>(), out->as<S>(), O, N, I, exclusive, reverse);
  });
  return nullptr;
}

}  // namespace

void AppendReduceKernels(std::vector<KernelEntry>& out) {
  out.push_back({"reduce", ReduceKernel});
  out.push_back({"softmax", SoftmaxKernel});
  out.push_back({"cumsum", CumsumKernel});
}

}  // namespace kiln
