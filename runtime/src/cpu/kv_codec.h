// Reading and writing one token row of a KV cache in its storage type: the
// model's float type as is, or a quantized type with per-row (per token and
// head) or group-wise scales computed from the row when it is written.
//
// Quantization is symmetric: a group of elements with largest magnitude
// `amax` gets scale s = amax / qmax (qmax: 127 for i8, 7 for i4, 448 for
// f8E4M3FN), rounded to the scale type first so that writing and reading
// use the same s; element x is stored as round(x / s) (clamped to
// [-qmax, qmax]) or, for f8, as the f8 nearest to x / s. An all-zero group
// has scale 0 and reads back as zeros. f16 scales saturate at 65504.
#ifndef KILN_RUNTIME_CPU_KV_CODEC_H_
#define KILN_RUNTIME_CPU_KV_CODEC_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/half.h"
#include "cpu/tensor.h"
#include "kiln/runtime/api.h"

namespace kiln {

/// The largest stored magnitude of a quantized KV storage type.
inline float KvQmax(kiln_dtype_t t) {
  switch (t) {
    case KILN_DTYPE_I8:
      return 127.f;
    case KILN_DTYPE_I4:
      return 7.f;
    case KILN_DTYPE_F8E4M3FN:
      return 448.f;
    default:
      return 0.f;
  }
}

/// Bytes of one stored row of `dim` elements.
inline int64_t KvRowBytes(const KvCache& c, int64_t dim) {
  return dim * int64_t(kiln_dtype_bit_width(c.stored())) / 8;
}

/// Bytes of one row's scales (0 when unquantized).
inline int64_t KvScaleBytes(const KvCache& c, int64_t dim) {
  if (!c.quantized()) return 0;
  return c.Groups(dim) * (c.scale_dtype == KILN_DTYPE_F16 ? 2 : 4);
}

struct KvRowRef {
  uint8_t* data;
  void* scales;  // null when unquantized
  int64_t dim;
};

/// Row `row` (a KvCache::Row index) of the key half, or of the value half.
inline KvRowRef KvRow(const KvCache& c, bool value, int64_t row) {
  const int64_t dim = value ? c.v_head_dim : c.head_dim;
  uint8_t* base = static_cast<uint8_t*>(value ? c.value : c.key);
  uint8_t* sbase = static_cast<uint8_t*>(value ? c.value_scale : c.key_scale);
  return {base + row * KvRowBytes(c, dim),
          c.quantized() ? sbase + row * KvScaleBytes(c, dim) : nullptr, dim};
}

inline float KvLoadScale(const KvCache& c, const void* scales, int64_t g) {
  return c.scale_dtype == KILN_DTYPE_F16 ? HalfToFloat(static_cast<const uint16_t*>(scales)[g])
                                         : static_cast<const float*>(scales)[g];
}

/// Writes `src` (r.dim floats) into row r, quantizing when the storage is.
inline void KvStoreRow(const KvCache& c, const KvRowRef& r, const float* src) {
  switch (c.stored()) {
    case KILN_DTYPE_F32:
      std::memcpy(r.data, src, size_t(r.dim) * sizeof(float));
      return;
    case KILN_DTYPE_F16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(r.data);
      for (int64_t i = 0; i < r.dim; ++i) d[i] = FloatToHalf(src[i]);
      return;
    }
    case KILN_DTYPE_BF16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(r.data);
      for (int64_t i = 0; i < r.dim; ++i) d[i] = FloatToBF16(src[i]);
      return;
    }
    default:
      break;
  }
  const float qmax = KvQmax(c.stored());
  const int64_t gsize = c.group > 0 ? c.group : r.dim;
  for (int64_t g = 0; g * gsize < r.dim; ++g) {
    const float* x = src + g * gsize;
    float amax = 0.f;
    for (int64_t i = 0; i < gsize; ++i) amax = std::max(amax, std::fabs(x[i]));
    float s = amax / qmax;
    if (c.scale_dtype == KILN_DTYPE_F16) {
      uint16_t h = FloatToHalf(std::min(s, 65504.f));
      static_cast<uint16_t*>(r.scales)[g] = h;
      s = HalfToFloat(h);
    } else {
      static_cast<float*>(r.scales)[g] = s;
    }
    const float inv = s > 0.f ? 1.f / s : 0.f;
    switch (c.stored()) {
      case KILN_DTYPE_I8: {
        int8_t* d = reinterpret_cast<int8_t*>(r.data) + g * gsize;
        for (int64_t i = 0; i < gsize; ++i)
          d[i] = int8_t(std::clamp(std::nearbyint(x[i] * inv), -qmax, qmax));
        break;
      }
      case KILN_DTYPE_I4: {
        uint8_t* d = r.data + g * gsize / 2;
        for (int64_t i = 0; i < gsize; i += 2) {
          const int lo = int(std::clamp(std::nearbyint(x[i] * inv), -qmax, qmax));
          const int hi = int(std::clamp(std::nearbyint(x[i + 1] * inv), -qmax, qmax));
          d[i / 2] = uint8_t((lo & 0xF) | ((hi & 0xF) << 4));
        }
        break;
      }
      case KILN_DTYPE_F8E4M3FN: {
        uint8_t* d = r.data + g * gsize;
        for (int64_t i = 0; i < gsize; ++i) d[i] = FloatToF8E4M3FN(x[i] * inv);
        break;
      }
      default:
        break;
    }
  }
}

/// Reads row r as r.dim floats, dequantizing when the storage is quantized.
inline void KvLoadRow(const KvCache& c, const KvRowRef& r, float* dst) {
  switch (c.stored()) {
    case KILN_DTYPE_F32:
      std::memcpy(dst, r.data, size_t(r.dim) * sizeof(float));
      return;
    case KILN_DTYPE_F16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(r.data);
      for (int64_t i = 0; i < r.dim; ++i) dst[i] = HalfToFloat(s[i]);
      return;
    }
    case KILN_DTYPE_BF16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(r.data);
      for (int64_t i = 0; i < r.dim; ++i) dst[i] = BF16ToFloat(s[i]);
      return;
    }
    default:
      break;
  }
  const int64_t gsize = c.group > 0 ? c.group : r.dim;
  for (int64_t g = 0; g * gsize < r.dim; ++g) {
    const float s = KvLoadScale(c, r.scales, g);
    float* y = dst + g * gsize;
    switch (c.stored()) {
      case KILN_DTYPE_I8: {
        const int8_t* q = reinterpret_cast<const int8_t*>(r.data) + g * gsize;
        for (int64_t i = 0; i < gsize; ++i) y[i] = float(q[i]) * s;
        break;
      }
      case KILN_DTYPE_I4: {
        const uint8_t* q = r.data + g * gsize / 2;
        for (int64_t i = 0; i < gsize; i += 2) {
          const uint8_t b = q[i / 2];
          y[i] = float(int8_t(uint8_t(b << 4)) >> 4) * s;  // sign-extend low nibble
          y[i + 1] = float(int8_t(b) >> 4) * s;
        }
        break;
      }
      case KILN_DTYPE_F8E4M3FN: {
        const uint8_t* q = r.data + g * gsize;
        for (int64_t i = 0; i < gsize; ++i) y[i] = F8E4M3FNToFloat(q[i]) * s;
        break;
      }
      default:
        break;
    }
  }
}

/// Copies row `from_row` of `from` to row `to_row` of `to` (caches of the
/// same storage and geometry): stored bytes and scales, no re-quantization.
inline void KvCopyRow(const KvCache& from, int64_t from_row, const KvCache& to, int64_t to_row) {
  for (bool value : {false, true}) {
    const KvRowRef a = KvRow(from, value, from_row);
    const KvRowRef b = KvRow(to, value, to_row);
    std::memcpy(b.data, a.data, size_t(KvRowBytes(from, a.dim)));
    if (a.scales) std::memcpy(b.scales, a.scales, size_t(KvScaleBytes(from, a.dim)));
  }
}

/// Bytes of the key and value rows and scales of `blocks` blocks of
/// `block_size` tokens (one sequence's slab when contiguous).
inline int64_t KvBytesPerToken(const KvCache& c) {
  return c.kv_heads * (KvRowBytes(c, c.head_dim) + KvRowBytes(c, c.v_head_dim) +
                       KvScaleBytes(c, c.head_dim) + KvScaleBytes(c, c.v_head_dim));
}

}  // namespace kiln

#endif  // KILN_RUNTIME_CPU_KV_CODEC_H_
