// Helpers the LLM kernels (llm.cc, matmul.cc, attention.cc) share: dtype row
// conversion, block-quantized row decoding, activations, explicit-width SIMD
// vectors and the per-ISA dispatch of hot loops.
//
// Why explicit vectors and per-ISA entry points: the runtime is built for the
// baseline x86-64 (SSE2) so that one binary runs everywhere, and GCC's
// auto-vectorizer is fragile on register-tiled loops (a 4x16 f32 micro-kernel
// came out at 7 GFLOP/s, a 4x24 one at 120). Hot loops are therefore written
// once as templates on the vector width in bytes (VB) with GCC vector
// extensions, and instantiated for SSE2 (16), AVX2+FMA (32) and AVX-512 (64);
// ParallelForIsa picks the widest the CPU supports. Outside x86-64 GCC/Clang
// only the 16-byte variant exists (vector extensions lower to NEON etc.).
#ifndef KILN_RUNTIME_CPU_LLM_UTIL_H_
#define KILN_RUNTIME_CPU_LLM_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "cpu/half.h"
#include "cpu/kernel.h"
#include "cpu/tensor.h"

// Vector arguments of always-inlined helpers never cross a real call, so
// GCC's note that AVX vectors change the calling convention does not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define KILN_ALWAYS_INLINE inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KILN_X86_DISPATCH 1
#define KILN_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))
#define KILN_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#else
#define KILN_X86_DISPATCH 0
#endif

namespace kiln {

// ---------------------------------------------------------------------------
// Kernel entry points defined in matmul.cc and attention.cc (registered by
// AppendLlmKernels in llm.cc).

kiln_status_t MatmulKernel(KernelContext& ctx);
kiln_status_t GatedMlpKernel(KernelContext& ctx);
kiln_status_t AttentionKernel(KernelContext& ctx);
kiln_status_t QuantizeKernel(KernelContext& ctx);  // quantize.cc
kiln_status_t HadamardKernel(KernelContext& ctx);  // quantize.cc
kiln_status_t RotateKernel(KernelContext& ctx);    // quantize.cc

// ---------------------------------------------------------------------------
// ISA dispatch.

enum class Isa : int { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

/// The widest ISA the LLM kernels use on this CPU, capped by
/// SetLlmIsaCapForTesting.
Isa LlmIsa();
/// Caps LlmIsa() (tests run every variant on one machine); -1 removes the cap.
void SetLlmIsaCapForTesting(int cap);

/// Runs f.template Run<VB>(begin, end) over [0, n) on the pool, with VB the
/// vector width of the current ISA. Each Run<VB> must be KILN_ALWAYS_INLINE
/// (and so must what it calls in hot loops) so that it is compiled for the
/// target of its entry point below.
template <typename F>
void RunIsaBase(const F& f, int64_t begin, int64_t end) {
  f.template Run<16>(begin, end);
}
#if KILN_X86_DISPATCH
template <typename F>
KILN_TARGET_AVX2 void RunIsaAvx2(const F& f, int64_t begin, int64_t end) {
  f.template Run<32>(begin, end);
}
template <typename F>
KILN_TARGET_AVX512 void RunIsaAvx512(const F& f, int64_t begin, int64_t end) {
  f.template Run<64>(begin, end);
}
#endif

template <typename F>
void ParallelForIsa(ThreadPool& pool, int64_t n, int64_t grain, const F& f) {
#if KILN_X86_DISPATCH
  switch (LlmIsa()) {
    case Isa::kAvx512:
      pool.parallel_for(n, grain,
                        [&f](int64_t b, int64_t e) { RunIsaAvx512(f, b, e); });
      return;
    case Isa::kAvx2:
      pool.parallel_for(n, grain,
                        [&f](int64_t b, int64_t e) { RunIsaAvx2(f, b, e); });
      return;
    case Isa::kBase:
      break;
  }
#endif
  pool.parallel_for(n, grain,
                    [&f](int64_t b, int64_t e) { RunIsaBase(f, b, e); });
}

// ---------------------------------------------------------------------------
// Explicit-width vectors (GCC/Clang vector extensions).

template <typename T, int VB>
struct Vec {
  typedef T type __attribute__((vector_size(VB)));
  static constexpr int kLanes = VB / int(sizeof(T));
};

template <typename V, typename T>
KILN_ALWAYS_INLINE V LoadV(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
KILN_ALWAYS_INLINE void StoreV(T* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}
template <typename T, typename V>
KILN_ALWAYS_INLINE T HorizontalSum(V v) {
  constexpr int kLanes = int(sizeof(V) / sizeof(T));
  T s = 0;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

/// sum(a[i] * b[i]) with four vector accumulators (the reassociation is what
/// makes it vectorize; the order is fixed, so results are deterministic).
template <typename T, int VB>
KILN_ALWAYS_INLINE T Dot(const T* a, const T* b, int64_t n) {
  using V = typename Vec<T, VB>::type;
  constexpr int L = Vec<T, VB>::kLanes;
  V acc0{}, acc1{}, acc2{}, acc3{};
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    acc0 += LoadV<V>(a + i) * LoadV<V>(b + i);
    acc1 += LoadV<V>(a + i + L) * LoadV<V>(b + i + L);
    acc2 += LoadV<V>(a + i + 2 * L) * LoadV<V>(b + i + 2 * L);
    acc3 += LoadV<V>(a + i + 3 * L) * LoadV<V>(b + i + 3 * L);
  }
  for (; i + L <= n; i += L) acc0 += LoadV<V>(a + i) * LoadV<V>(b + i);
  T s = HorizontalSum<T>((acc0 + acc1) + (acc2 + acc3));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

/// y[i] += alpha * x[i].
template <typename T, int VB>
KILN_ALWAYS_INLINE void Axpy(T alpha, const T* x, T* y, int64_t n) {
  using V = typename Vec<T, VB>::type;
  constexpr int L = Vec<T, VB>::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L)
    StoreV(y + i, LoadV<V>(y + i) + alpha * LoadV<V>(x + i));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// ---------------------------------------------------------------------------
// The register-tiled micro-kernel (GEMM in matmul.cc, attention's Q K^T and
// P V in attention.cc). B is packed in strips of NR = 2 vectors of columns:
// strip s holds [kc][NR] values, zero-padded past the last column.

/// Rows of A per micro-kernel call: 6 x 2 vector accumulators use 12 of the
/// 16 AVX2 registers (AVX-512 has 32; SSE2 spills a little).
constexpr int kPanelMR = 6;

/// c[0:R, 0:NR] (+)= a[0:R, 0:kc] @ panel strip b[0:kc, 0:NR].
template <typename T, int VB, int R>
KILN_ALWAYS_INLINE void MicroKernel(int64_t kc, const T* __restrict a,
                                    int64_t lda, const T* __restrict b,
                                    T* __restrict c, int64_t ldc, bool first) {
  using V = typename Vec<T, VB>::type;
  constexpr int L = Vec<T, VB>::kLanes;
  constexpr int NR = 2 * L;
  V acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = V{};
  for (int64_t k = 0; k < kc; ++k) {
    const V b0 = LoadV<V>(b + k * NR), b1 = LoadV<V>(b + k * NR + L);
    for (int r = 0; r < R; ++r) {
      const T av = a[r * lda + k];
      acc[r][0] += av * b0;
      acc[r][1] += av * b1;
    }
  }
  for (int r = 0; r < R; ++r) {
    T* cr = c + r * ldc;
    if (first) {
      StoreV(cr, acc[r][0]);
      StoreV(cr + L, acc[r][1]);
    } else {
      StoreV(cr, LoadV<V>(cr) + acc[r][0]);
      StoreV(cr + L, LoadV<V>(cr + L) + acc[r][1]);
    }
  }
}

/// c[0:rows, 0:strips*NR] (+)= a[0:rows, 0:kc] @ panel. Strips outer, rows
/// inner: a strip (kc * NR values) stays in L1 while A's rows stream.
template <typename T, int VB>
KILN_ALWAYS_INLINE void MultiplyPanel(int64_t rows, int64_t strips, int64_t kc,
                                      const T* a, int64_t lda, const T* panel,
                                      T* c, int64_t ldc, bool first) {
  constexpr int NR = 2 * Vec<T, VB>::kLanes;
  for (int64_t s = 0; s < strips; ++s) {
    const T* strip = panel + s * kc * NR;
    int64_t r = 0;
    for (; r + kPanelMR <= rows; r += kPanelMR)
      MicroKernel<T, VB, kPanelMR>(kc, a + r * lda, lda, strip,
                                   c + r * ldc + s * NR, ldc, first);
    const T* ar = a + r * lda;
    T* cr = c + r * ldc + s * NR;
    switch (rows - r) {
      case 5:
        MicroKernel<T, VB, 5>(kc, ar, lda, strip, cr, ldc, first);
        break;
      case 4:
        MicroKernel<T, VB, 4>(kc, ar, lda, strip, cr, ldc, first);
        break;
      case 3:
        MicroKernel<T, VB, 3>(kc, ar, lda, strip, cr, ldc, first);
        break;
      case 2:
        MicroKernel<T, VB, 2>(kc, ar, lda, strip, cr, ldc, first);
        break;
      case 1:
        MicroKernel<T, VB, 1>(kc, ar, lda, strip, cr, ldc, first);
        break;
      default:
        break;
    }
  }
}

// u8 lanes -> i32 / f32 lanes for the fused int4 / int8 GEMV, one overload
// per width (GCC 12 rejects __builtin_convertvector on dependent vector
// types). Only unsigned bytes: GCC 12 lowers a zero-extending conversion to
// pmovzxbd but scalarizes a sign-extending one, so signed storage is
// decoded as (u ^ 0x80) - 128.
typedef uint8_t U8x4 __attribute__((vector_size(4)));
typedef uint8_t U8x8 __attribute__((vector_size(8)));
typedef uint8_t U8x16 __attribute__((vector_size(16)));
typedef int32_t I32x4 __attribute__((vector_size(16)));
typedef int32_t I32x8 __attribute__((vector_size(32)));
typedef int32_t I32x16 __attribute__((vector_size(64)));
typedef float F32x4 __attribute__((vector_size(16)));
typedef float F32x8 __attribute__((vector_size(32)));
typedef float F32x16 __attribute__((vector_size(64)));

template <int VB>
struct ByteLanes;
template <>
struct ByteLanes<16> {
  typedef U8x4 U;
  typedef F32x4 F;
  static KILN_ALWAYS_INLINE I32x4 Widen(U u) {
    return __builtin_convertvector(u, I32x4);
  }
  static KILN_ALWAYS_INLINE F Float(I32x4 i) {
    return __builtin_convertvector(i, F32x4);
  }
};
template <>
struct ByteLanes<32> {
  typedef U8x8 U;
  typedef F32x8 F;
  static KILN_ALWAYS_INLINE I32x8 Widen(U u) {
    return __builtin_convertvector(u, I32x8);
  }
  static KILN_ALWAYS_INLINE F Float(I32x8 i) {
    return __builtin_convertvector(i, F32x8);
  }
};
template <>
struct ByteLanes<64> {
  typedef U8x16 U;
  typedef F32x16 F;
  static KILN_ALWAYS_INLINE I32x16 Widen(U u) {
    return __builtin_convertvector(u, I32x16);
  }
  static KILN_ALWAYS_INLINE F Float(I32x16 i) {
    return __builtin_convertvector(i, F32x16);
  }
};

// ---------------------------------------------------------------------------
// Dtypes.

inline bool IsFloatDtype(kiln_dtype_t t) {
  return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16 ||
         t == KILN_DTYPE_F64;
}
inline bool IsIntDtype(kiln_dtype_t t) {
  switch (t) {
    case KILN_DTYPE_I8:
    case KILN_DTYPE_U8:
    case KILN_DTYPE_I16:
    case KILN_DTYPE_U16:
    case KILN_DTYPE_I32:
    case KILN_DTYPE_U32:
    case KILN_DTYPE_I64:
    case KILN_DTYPE_U64:
      return true;
    default:
      return false;
  }
}
inline size_t ElemBytes(kiln_dtype_t t) { return kiln_dtype_bit_width(t) / 8; }
inline const char* DtypeName(kiln_dtype_t t) { return kiln_dtype_name(t); }

/// f16 -> f32 without branches, so loops over rows vectorize (HalfToFloat in
/// half.h branches on the exponent). Exact, like every f16 -> f32
/// conversion; the trick is Maratos' FP16 library's.
KILN_ALWAYS_INLINE float HalfToFloatFast(uint16_t h) {
  const uint32_t w = uint32_t(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized =
      BitsToFloat((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = BitsToFloat((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t bits =
      two_w < (1u << 27) ? FloatBits(denormalized) : FloatBits(normalized);
  return BitsToFloat(sign | bits);
}

/// dst[i] = element (offset + i) of a float tensor of dtype `dt`.
template <typename T>
KILN_ALWAYS_INLINE void LoadRow(kiln_dtype_t dt, const void* base,
                                int64_t offset, int64_t n, T* __restrict dst) {
  switch (dt) {
    case KILN_DTYPE_F32: {
      const float* s = static_cast<const float*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = T(s[i]);
      return;
    }
    case KILN_DTYPE_F64: {
      const double* s = static_cast<const double*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = T(s[i]);
      return;
    }
    case KILN_DTYPE_F16: {
      const uint16_t* s = static_cast<const uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = T(HalfToFloatFast(s[i]));
      return;
    }
    case KILN_DTYPE_BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i)
        dst[i] = T(BitsToFloat(uint32_t(s[i]) << 16));
      return;
    }
    default:  // callers validate dtypes; never read unknown storage
      for (int64_t i = 0; i < n; ++i) dst[i] = T(0);
      return;
  }
}

/// Element (offset + i) of a float tensor = src[i], rounded to nearest even.
template <typename T>
KILN_ALWAYS_INLINE void StoreRow(const T* __restrict src, int64_t n,
                                 kiln_dtype_t dt, void* base, int64_t offset) {
  switch (dt) {
    case KILN_DTYPE_F32: {
      float* d = static_cast<float*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = float(src[i]);
      return;
    }
    case KILN_DTYPE_F64: {
      double* d = static_cast<double*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = double(src[i]);
      return;
    }
    case KILN_DTYPE_F16: {
      uint16_t* d = static_cast<uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = FloatToHalf(float(src[i]));
      return;
    }
    case KILN_DTYPE_BF16: {
      uint16_t* d = static_cast<uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = FloatToBF16(float(src[i]));
      return;
    }
    default:
      return;
  }
}

/// One element of a float tensor.
inline double LoadScalar(kiln_dtype_t dt, const void* base, int64_t index) {
  switch (dt) {
    case KILN_DTYPE_F32:
      return static_cast<const float*>(base)[index];
    case KILN_DTYPE_F64:
      return static_cast<const double*>(base)[index];
    case KILN_DTYPE_F16:
      return HalfToFloat(static_cast<const uint16_t*>(base)[index]);
    case KILN_DTYPE_BF16:
      return BF16ToFloat(static_cast<const uint16_t*>(base)[index]);
    default:
      return 0;
  }
}

/// One element of an integer tensor (ids, positions). u64 values beyond
/// int64 saturate, which every caller's range check then rejects.
inline int64_t LoadInt(kiln_dtype_t dt, const void* base, int64_t index) {
  switch (dt) {
    case KILN_DTYPE_I8:
      return static_cast<const int8_t*>(base)[index];
    case KILN_DTYPE_U8:
      return static_cast<const uint8_t*>(base)[index];
    case KILN_DTYPE_I16:
      return static_cast<const int16_t*>(base)[index];
    case KILN_DTYPE_U16:
      return static_cast<const uint16_t*>(base)[index];
    case KILN_DTYPE_I32:
      return static_cast<const int32_t*>(base)[index];
    case KILN_DTYPE_U32:
      return static_cast<const uint32_t*>(base)[index];
    case KILN_DTYPE_I64:
      return static_cast<const int64_t*>(base)[index];
    case KILN_DTYPE_U64: {
      uint64_t v = static_cast<const uint64_t*>(base)[index];
      return v > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(v);
    }
    default:
      return 0;
  }
}

// ---------------------------------------------------------------------------
// Block-quantized tensors.

/// Decodes rows of a QTensor viewed as [rows, cols] (cols = innermost data
/// dimension, rows = the product of the others), applying block-wise scales
/// and zero points. Construct only from a QTensor that CheckQTensor accepted.
class QView {
 public:
  QView() = default;
  explicit QView(const QTensor& q);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  kiln_dtype_t storage() const { return storage_; }
  /// Elements along the innermost dimension that share a scale.
  int64_t col_block() const { return col_block_; }
  bool has_zero_points() const { return zp_ != nullptr; }
  const uint8_t* row_data(int64_t row) const {
    return data_ + row * row_bytes_;
  }

  /// The index of `row`'s first scale in the scale tensor's rows.
  KILN_ALWAYS_INLINE int64_t ScaleRow(int64_t row) const {
    int64_t sr = 0;
    for (int d = outer_rank_ - 1; d >= 0; --d) {
      int64_t idx = row % outer_dims_[d];
      row /= outer_dims_[d];
      sr += (idx / outer_blocks_[d]) * scale_strides_[d];
    }
    return sr;
  }
  /// Scale `sc` of scale row `sr` (the row's col / col_block()-th).
  KILN_ALWAYS_INLINE float Scale(int64_t sr, int64_t sc) const {
    int64_t i = sr * scale_cols_ + sc;
    switch (scale_dtype_) {
      case KILN_DTYPE_F32:
        return static_cast<const float*>(scales_)[i];
      case KILN_DTYPE_F16:
        return HalfToFloatFast(static_cast<const uint16_t*>(scales_)[i]);
      case KILN_DTYPE_BF16:
        return BitsToFloat(uint32_t(static_cast<const uint16_t*>(scales_)[i])
                           << 16);
      default:
        return float(LoadScalar(scale_dtype_, scales_, i));
    }
  }
  /// Zero point `sc` of scale row `sr` (0 without zero points).
  KILN_ALWAYS_INLINE float ZeroPoint(int64_t sr, int64_t sc) const {
    if (!zp_) return 0.f;
    switch (storage_) {
      case KILN_DTYPE_U4: {
        uint8_t b = zp_[sr * zp_row_bytes_ + sc / 2];
        return float((sc & 1) ? b >> 4 : b & 15);
      }
      case KILN_DTYPE_I4: {
        uint8_t b = zp_[sr * zp_row_bytes_ + sc / 2];
        return float((sc & 1) ? int8_t(b) >> 4 : int8_t(uint8_t(b << 4)) >> 4);
      }
      case KILN_DTYPE_I8:
        return float(int8_t(zp_[sr * scale_cols_ + sc]));
      case KILN_DTYPE_U8:
        return float(zp_[sr * scale_cols_ + sc]);
      default:
        return 0.f;  // float storage is symmetric
    }
  }

  /// out[i] = dequantized element (c0 + i) of `row`, for i < n.
  KILN_ALWAYS_INLINE void Row(int64_t row, int64_t c0, int64_t n,
                              float* __restrict out) const {
    const uint8_t* p = row_data(row);
    const int64_t sr = ScaleRow(row);
    int64_t c = c0;
    const int64_t end = c0 + n;
    while (c < end) {
      const int64_t sc = c / col_block_;
      const int64_t stop = std::min(end, (sc + 1) * col_block_);
      const float s = Scale(sr, sc);
      const float z = ZeroPoint(sr, sc);
      DecodeSegment(p, c, stop - c, s, z, out + (c - c0));
      c = stop;
    }
  }

 private:
  // out[i] = (q[c + i] - z) * s.
  KILN_ALWAYS_INLINE void DecodeSegment(const uint8_t* p, int64_t c, int64_t n,
                                        float s, float z,
                                        float* __restrict out) const {
    switch (storage_) {
      case KILN_DTYPE_U4:
      case KILN_DTYPE_I4: {
        // Signed nibbles are unsigned ones with the top bit flipped, minus 8.
        const uint8_t flip = storage_ == KILN_DTYPE_I4 ? 0x88 : 0;
        const float zs = -(z + (flip ? 8.f : 0.f)) * s;
        int64_t i = 0;
        if ((c & 1) && n > 0) {
          out[0] = float(uint8_t(p[c >> 1] ^ flip) >> 4) * s + zs;
          i = 1;
        }
        const uint8_t* q = p + ((c + i) >> 1);
        const int64_t pairs = (n - i) / 2;
        float* o = out + i;
        for (int64_t k = 0; k < pairs; ++k) {
          const uint8_t b = q[k] ^ flip;
          o[2 * k] = float(b & 15) * s + zs;
          o[2 * k + 1] = float(b >> 4) * s + zs;
        }
        if ((n - i) & 1)
          out[n - 1] = float(uint8_t(q[pairs] ^ flip) & 15) * s + zs;
        return;
      }
      case KILN_DTYPE_I8: {
        const int8_t* q = reinterpret_cast<const int8_t*>(p) + c;
        for (int64_t k = 0; k < n; ++k) out[k] = (float(q[k]) - z) * s;
        return;
      }
      case KILN_DTYPE_U8: {
        const uint8_t* q = p + c;
        for (int64_t k = 0; k < n; ++k) out[k] = (float(q[k]) - z) * s;
        return;
      }
      case KILN_DTYPE_F8E4M3FN:
      case KILN_DTYPE_F8E5M2: {
        const float* table = F8Table(storage_);
        const uint8_t* q = p + c;
        for (int64_t k = 0; k < n; ++k) out[k] = table[q[k]] * s;
        return;
      }
      default:
        for (int64_t k = 0; k < n; ++k) out[k] = 0.f;
        return;
    }
  }
  static const float* F8Table(kiln_dtype_t storage);

  kiln_dtype_t storage_ = KILN_DTYPE_INVALID;
  const uint8_t* data_ = nullptr;
  int64_t rows_ = 0, cols_ = 0, row_bytes_ = 0;
  int outer_rank_ = 0;
  int64_t outer_dims_[kMaxRank] = {};
  int64_t outer_blocks_[kMaxRank] = {};
  int64_t scale_strides_[kMaxRank] = {};  // in scale rows
  int64_t col_block_ = 1;
  kiln_dtype_t scale_dtype_ = KILN_DTYPE_F32;
  const void* scales_ = nullptr;
  int64_t scale_cols_ = 1;
  const uint8_t* zp_ = nullptr;
  int64_t zp_row_bytes_ = 0;
};

/// Checks that a QTensor's parts agree (storage and scale dtypes, block rank,
/// scale and zero-point shapes); returns "" or what is wrong, for an
/// INVALID_ARGUMENT that names operand `what`.
std::string CheckQTensor(const QTensor& q, const char* what);

// ---------------------------------------------------------------------------
// Activations (kiln.activation's kinds; glu and gated_mlp use them).

enum class Act { kRelu, kSilu, kGelu, kGeluTanh, kSigmoid };

/// False when `name` is no activation kind.
bool ParseActivation(std::string_view name, Act* act);

template <Act A, typename T>
KILN_ALWAYS_INLINE T Activate(T x) {
  switch (A) {
    case Act::kRelu:
      return x > T(0) ? x : T(0);
    case Act::kSilu:
      return x / (T(1) + std::exp(-x));
    case Act::kGelu:
      return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
    case Act::kGeluTanh: {
      const T k = T(0.79788456080286535588);  // sqrt(2 / pi)
      return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
    }
    case Act::kSigmoid:
      return T(1) / (T(1) + std::exp(-x));
  }
  return x;
}

/// out[i] = act(gate[i]) * up[i].
template <typename T>
void GluRow(Act act, const T* gate, const T* up, int64_t n, T* out) {
  switch (act) {
#define KILN_GLU_CASE(K)                                                   \
  case K:                                                                  \
    for (int64_t i = 0; i < n; ++i) out[i] = Activate<K>(gate[i]) * up[i]; \
    return;
    KILN_GLU_CASE(Act::kRelu)
    KILN_GLU_CASE(Act::kSilu)
    KILN_GLU_CASE(Act::kGelu)
    KILN_GLU_CASE(Act::kGeluTanh)
    KILN_GLU_CASE(Act::kSigmoid)
#undef KILN_GLU_CASE
  }
}

// ---------------------------------------------------------------------------
// Misc.

/// Checks the result dtype is a float type; an INVALID_ARGUMENT otherwise.
inline kiln_status_t CheckFloatOutput(const KernelContext& ctx, size_t i = 0) {
  kiln_dtype_t t = ctx.output_dtype(i);
  if (!IsFloatDtype(t))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "result element type %s is not f32, f16, bf16 or f64",
                       DtypeName(t));
  return nullptr;
}

/// Checks a plain operand is present with a float dtype.
inline kiln_status_t CheckFloatInput(const KernelContext& ctx, size_t i,
                                     const char* what) {
  if (!ctx.has_input(i))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "missing operand %s",
                       what);
  if (ctx.is_quantized(i))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "%s must not be quantized", what);
  const Tensor& t = ctx.input(i);
  if (!IsFloatDtype(t.dtype))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "%s element type %s is not f32, f16, bf16 or f64", what,
                       DtypeName(t.dtype));
  if (!t.data && t.numel() != 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "%s has no data",
                       what);
  return nullptr;
}

/// The shape of a plain or quantized operand.
inline const Dims& OperandShape(const KernelContext& ctx, size_t i) {
  return ctx.is_quantized(i) ? ctx.qinput(i).data.shape : ctx.input(i).shape;
}

}  // namespace kiln

#endif  // KILN_RUNTIME_CPU_LLM_UTIL_H_
