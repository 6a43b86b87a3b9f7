// kiln.quantize: float -> block-quantized storage. The compiler turns the
// op's !kiln.qtensor result into plain results (docs/artifact-format.md):
// the stored values, plus the scales (and zero points) when the scheme is
// dynamic and they are computed from the data here.
//
//   stored = saturate(round_half_even(x / scale) + zero_point)   integers
//   stored = saturating_cast(x / scale)                           float8
//
// Dynamic scales per block: symmetric schemes map max|x| to the largest
// stored magnitude (127, 7, 448 for f8E4M3FN, 57344 for f8E5M2); asymmetric
// ones map [min(x, 0), max(x, 0)] onto the storage range with a rounded
// zero point. A block of zeros gets scale 1.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/hadamard.h"
#include "cpu/half.h"
#include "cpu/kernel_util.h"
#include "cpu/kernels.h"
#include "cpu/llm_util.h"
#include "cpu/quantize.h"

namespace kiln {

namespace {

float LoadFloat(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case KILN_DTYPE_F32: return t.as<float>()[i];
    case KILN_DTYPE_F64: return float(t.as<double>()[i]);
    case KILN_DTYPE_F16: return HalfToFloat(t.as<uint16_t>()[i]);
    case KILN_DTYPE_BF16: return BF16ToFloat(t.as<uint16_t>()[i]);
    default: return 0.f;
  }
}

void StoreFloat(const Tensor& t, int64_t i, float v) {
  switch (t.dtype) {
    case KILN_DTYPE_F32: t.as<float>()[i] = v; break;
    case KILN_DTYPE_F64: t.as<double>()[i] = v; break;
    case KILN_DTYPE_F16: t.as<uint16_t>()[i] = FloatToHalf(v); break;
    case KILN_DTYPE_BF16: t.as<uint16_t>()[i] = FloatToBF16(v); break;
    default: break;
  }
}

/// Storage range of an integer type.
bool IntRange(kiln_dtype_t t, int64_t* lo, int64_t* hi) {
  switch (t) {
    case KILN_DTYPE_I8: *lo = -128; *hi = 127; return true;
    case KILN_DTYPE_U8: *lo = 0; *hi = 255; return true;
    case KILN_DTYPE_I4: *lo = -8; *hi = 7; return true;
    case KILN_DTYPE_U4: *lo = 0; *hi = 15; return true;
    case KILN_DTYPE_I16: *lo = -32768; *hi = 32767; return true;
    case KILN_DTYPE_U16: *lo = 0; *hi = 65535; return true;
    default: return false;
  }
}

/// Reads element `i` (row-major, rows of `inner` elements) of an integer
/// tensor, unpacking 4-bit types.
int64_t LoadInt(const Tensor& t, int64_t i, int64_t inner) {
  switch (t.dtype) {
    case KILN_DTYPE_I8: return t.as<int8_t>()[i];
    case KILN_DTYPE_U8: return t.as<uint8_t>()[i];
    case KILN_DTYPE_I16: return t.as<int16_t>()[i];
    case KILN_DTYPE_U16: return t.as<uint16_t>()[i];
    case KILN_DTYPE_I4:
    case KILN_DTYPE_U4: {
      int64_t row = i / inner, col = i % inner;
      uint8_t byte = t.as<uint8_t>()[row * ((inner + 1) / 2) + col / 2];
      int v = (col % 2) ? byte >> 4 : byte & 0xF;
      return t.dtype == KILN_DTYPE_I4 && v >= 8 ? v - 16 : v;
    }
    default: return 0;
  }
}

void StoreInt(const Tensor& t, int64_t i, int64_t inner, int64_t v) {
  switch (t.dtype) {
    case KILN_DTYPE_I8: t.as<int8_t>()[i] = int8_t(v); break;
    case KILN_DTYPE_U8: t.as<uint8_t>()[i] = uint8_t(v); break;
    case KILN_DTYPE_I16: t.as<int16_t>()[i] = int16_t(v); break;
    case KILN_DTYPE_U16: t.as<uint16_t>()[i] = uint16_t(v); break;
    case KILN_DTYPE_I4:
    case KILN_DTYPE_U4: {
      int64_t row = i / inner, col = i % inner;
      uint8_t& byte = t.as<uint8_t>()[row * ((inner + 1) / 2) + col / 2];
      uint8_t nib = uint8_t(v) & 0xF;
      byte = (col % 2) ? uint8_t((byte & 0x0F) | (nib << 4)) : uint8_t((byte & 0xF0) | nib);
      break;
    }
    default: break;
  }
}

}  // namespace

kiln_status_t QuantizeBlocks(const Tensor& x, const Dims& block, bool compute_scales,
                             const Tensor& data, const Tensor& scales_t, const Tensor* zero) {
  const kiln_dtype_t storage = data.dtype;
  const int rank = x.shape.rank;
  Dims sshape;
  sshape.rank = rank;
  for (int d = 0; d < rank; ++d) sshape[d] = (x.shape[d] + block[d] - 1) / block[d];
  const bool is_f8 = storage == KILN_DTYPE_F8E4M3FN || storage == KILN_DTYPE_F8E5M2;
  int64_t qlo = 0, qhi = 0;
  if (!is_f8 && !IntRange(storage, &qlo, &qhi))
    return KILN_MAKE_STATUS(KILN_STATUS_UNIMPLEMENTED, "quantizing to %s is not supported",
                            kiln_dtype_name(storage));
  if (data.shape != x.shape || scales_t.shape != sshape || (zero && zero->shape != sshape))
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "quantizing %s in blocks %s needs stored values %s and scales %s",
                            x.shape.str().c_str(), block.str().c_str(), x.shape.str().c_str(),
                            sshape.str().c_str());
  const bool has_zero = zero != nullptr;
  const int64_t n = x.numel();
  const int64_t inner = rank ? std::max<int64_t>(x.shape.back(), 1) : 1;
  const int64_t sinner = rank ? std::max<int64_t>(sshape.back(), 1) : 1;
  const Dims xs = StridesOf(x.shape), ss = StridesOf(sshape);
  auto block_of = [&](int64_t i) {
    int64_t b = 0;
    for (int d = 0; d < rank; ++d) b += ((i / xs[d]) % x.shape[d]) / block[d] * ss[d];
    return b;
  };

  if (compute_scales) {
    const int64_t nb = sshape.numel();
    std::vector<float> lo(size_t(nb), 0.f), hi(size_t(nb), 0.f);
    for (int64_t i = 0; i < n; ++i) {
      float v = LoadFloat(x, i);
      int64_t b = block_of(i);
      lo[size_t(b)] = std::min(lo[size_t(b)], v);
      hi[size_t(b)] = std::max(hi[size_t(b)], v);
    }
    for (int64_t b = 0; b < nb; ++b) {
      float scale, zp = 0;
      if (has_zero) {
        float range = hi[size_t(b)] - lo[size_t(b)];
        scale = range > 0 ? range / float(qhi - qlo) : 1.f;
        zp = std::nearbyint(float(qlo) - lo[size_t(b)] / scale);
        zp = std::min(std::max(zp, float(qlo)), float(qhi));
        StoreInt(*zero, b, sinner, int64_t(zp));
      } else {
        float amax = std::max(-lo[size_t(b)], hi[size_t(b)]);
        float qmax = storage == KILN_DTYPE_F8E4M3FN ? 448.f
                     : storage == KILN_DTYPE_F8E5M2 ? 57344.f
                                                    : float(qhi);
        scale = amax > 0 ? amax / qmax : 1.f;
      }
      StoreFloat(scales_t, b, scale);
    }
  }

  // The rounding mode is the default round-to-nearest-even (nearbyint).
  for (int64_t i = 0; i < n; ++i) {
    int64_t b = block_of(i);
    float scale = LoadFloat(scales_t, b);
    float v = LoadFloat(x, i) / scale;
    if (is_f8) {
      data.as<uint8_t>()[i] =
          storage == KILN_DTYPE_F8E4M3FN ? FloatToF8E4M3FN(v) : FloatToF8E5M2(v);
      continue;
    }
    float q = std::nearbyint(v);
    if (has_zero) q += float(LoadInt(*zero, b, sinner));
    if (std::isnan(q)) q = 0;
    q = std::min(std::max(q, float(qlo)), float(qhi));
    StoreInt(data, i, inner, int64_t(q));
  }
  return nullptr;
}

kiln_status_t QuantizeKernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const std::vector<int64_t>& block_attr = ctx.attrs().Ints("block");
  const int rank = x.shape.rank;
  if (int(block_attr.size()) != rank)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "block has %zu entries for input %s", block_attr.size(),
                       x.shape.str().c_str());
  // Block per dimension (0 = the whole dimension) and the scale shape.
  Dims block, sshape;
  block.rank = sshape.rank = rank;
  for (int d = 0; d < rank; ++d) {
    if (block_attr[size_t(d)] < 0)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "negative block size");
    block[d] = block_attr[size_t(d)] == 0 ? std::max<int64_t>(x.shape[d], 1)
                                          : block_attr[size_t(d)];
    sshape[d] = (x.shape[d] + block[d] - 1) / block[d];
  }
  const bool dynamic = !ctx.has_input(1);
  const bool has_zero = dynamic ? ctx.num_outputs() > 2 : ctx.has_input(2);

  Tensor* data;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &data));
  Tensor scales_t, zero_t;
  if (dynamic) {
    Tensor* s;
    KILN_RETURN_IF_ERROR(ctx.allocate_output(1, sshape, &s));
    scales_t = *s;
    if (has_zero) {
      Tensor* z;
      KILN_RETURN_IF_ERROR(ctx.allocate_output(2, sshape, &z));
      zero_t = *z;
    }
  } else {
    scales_t = ctx.input(1);
    if (scales_t.shape != sshape)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "scales are %s; input %s with block %s needs %s",
                         scales_t.shape.str().c_str(), x.shape.str().c_str(),
                         Dims::FromArray(block_attr.data(), rank).str().c_str(),
                         sshape.str().c_str());
    if (has_zero) {
      zero_t = ctx.input(2);
      if (zero_t.shape != sshape)
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "zero points are %s; the scales are %s",
                           zero_t.shape.str().c_str(), sshape.str().c_str());
    }
  }
  kiln_status_t st = QuantizeBlocks(x, block, dynamic, *data, scales_t,
                                    has_zero ? &zero_t : nullptr);
  if (st) {
    std::string why = kiln_status_message(st);
    kiln_status_free(st);
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED, "%s", why.c_str());
  }
  return nullptr;
}

/// Reads each block of `n` consecutive values of `x` (any float dtype) as
/// f32, calls `transform(v, scratch)`, which returns where the block's
/// result is (v or scratch), and stores it into `out` (x's dtype and shape).
template <class F>
void TransformBlocks(KernelContext& ctx, const Tensor& x, Tensor* out, int64_t n, int64_t grain,
                     F&& transform) {
  DispatchFloat(x.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* in = x.as<S>();
    S* y = out->as<S>();
    ctx.pool().parallel_for(x.numel() / n, std::max<int64_t>(1, grain), [&](int64_t b0, int64_t b1) {
      std::vector<float> v(static_cast<size_t>(n)), w(static_cast<size_t>(n));
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(Elem<S>::Load(in[b * n + i]));
        const float* r = transform(v.data(), w.data());
        for (int64_t i = 0; i < n; ++i)
          y[b * n + i] = Elem<S>::Store(typename Elem<S>::Compute(r[i]));
      }
    });
  });
}

kiln_status_t HadamardKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  const Tensor& x = ctx.input(0);
  if (!DispatchFloat(x.dtype, [](auto) {}))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED, "no hadamard kernel for element type %s",
                       DTypeName(x.dtype));
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  const int64_t block = ctx.attrs().Int("block", 0);
  const int64_t last = x.shape.rank ? x.shape[x.shape.rank - 1] : 0;
  if (x.shape.rank < 1 || !IsPowerOfTwo(block) || last % block != 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "block %lld is not a power of two dividing the last dimension of %s",
                       static_cast<long long>(block), x.shape.str().c_str());
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &out));
  TransformBlocks(ctx, x, out, block, 4096 / block,
                  [&](float* v, float*) { FastHadamard(v, block); return v; });
  return nullptr;
}

kiln_status_t RotateKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 2));
  const Tensor& x = ctx.input(0);
  const Tensor& r = ctx.input(1);
  if (!DispatchFloat(x.dtype, [](auto) {}) || !DispatchFloat(r.dtype, [](auto) {}))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED, "no rotate kernel for %s by %s",
                       DTypeName(x.dtype), DTypeName(r.dtype));
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  const int64_t n = r.shape.rank == 2 ? r.shape[0] : 0;
  const int64_t last = x.shape.rank ? x.shape[x.shape.rank - 1] : 0;
  if (n < 1 || r.shape[1] != n || x.shape.rank < 1 || last % n != 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "rotation %s is not a square matrix whose size divides the last "
                       "dimension of %s",
                       r.shape.str().c_str(), x.shape.str().c_str());
  std::vector<float> rf(size_t(n * n));
  DispatchFloat(r.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    for (int64_t i = 0; i < n * n; ++i) rf[size_t(i)] = float(Elem<S>::Load(r.as<S>()[i]));
  });
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &out));
  TransformBlocks(ctx, x, out, n, 65536 / (n * n), [&](float* v, float* w) {
    RotateBlock(v, rf.data(), n, w);
    return w;
  });
  return nullptr;
}

}  // namespace kiln
