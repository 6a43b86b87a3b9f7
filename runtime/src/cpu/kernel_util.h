// Helpers shared by the elementwise, reduction and movement kernels
// (elementwise.cc, reduce.cc, movement.cc): element storage types and dtype
// dispatch, operand checks, NumPy broadcasting plans that walk tensors one
// contiguous row at a time, and the 4-bit unpacking adapter.
#ifndef KILN_RUNTIME_CPU_KERNEL_UTIL_H_
#define KILN_RUNTIME_CPU_KERNEL_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "cpu/half.h"
#include "cpu/kernel.h"
#include "cpu/kernels.h"

namespace kiln {

//===----------------------------------------------------------------------===//
// Element types
//===----------------------------------------------------------------------===//

// Storage types of the element types C++ has no arithmetic type for. They are
// distinct types (not uint16_t / uint8_t) so templates can tell f16 from u16
// and i1 from u8, and enums rather than structs so that the vectorizer sees
// plain integer loads and stores.
enum class Half : uint16_t {};
enum class BFloat16 : uint16_t {};
enum class Float8E4M3FN : uint8_t {};
enum class Float8E5M2 : uint8_t {};
enum class Bool : uint8_t {};

// Elem<S>::Compute is the type a kernel computes S in; Load/Store convert.
// Narrow floats compute in f32 and round back to nearest even.
template <class S>
struct Elem {
  using Compute = S;
  static Compute Load(S s) { return s; }
  static S Store(Compute c) { return c; }
};
template <>
struct Elem<Half> {
  using Compute = float;
  static float Load(Half h) { return HalfToFloat(uint16_t(h)); }
  static Half Store(float f) { return Half{FloatToHalf(f)}; }
};
template <>
struct Elem<BFloat16> {
  using Compute = float;
  static float Load(BFloat16 h) { return BF16ToFloat(uint16_t(h)); }
  static BFloat16 Store(float f) { return BFloat16{FloatToBF16(f)}; }
};
template <>
struct Elem<Float8E4M3FN> {
  using Compute = float;
  static float Load(Float8E4M3FN h) { return F8E4M3FNToFloat(uint8_t(h)); }
  static Float8E4M3FN Store(float f) { return Float8E4M3FN{FloatToF8E4M3FN(f)}; }
};
template <>
struct Elem<Float8E5M2> {
  using Compute = float;
  static float Load(Float8E5M2 h) { return F8E5M2ToFloat(uint8_t(h)); }
  static Float8E5M2 Store(float f) { return Float8E5M2{FloatToF8E5M2(f)}; }
};
template <>
struct Elem<Bool> {
  using Compute = uint8_t;
  static uint8_t Load(Bool b) { return uint8_t(b) != 0; }
  static Bool Store(uint8_t c) { return Bool{uint8_t(c != 0)}; }
};

template <class S>
constexpr bool kIsFloatStorage =
    std::is_floating_point_v<S> || std::is_same_v<S, Half> ||
    std::is_same_v<S, BFloat16> || std::is_same_v<S, Float8E4M3FN> ||
    std::is_same_v<S, Float8E5M2>;

// f64 to f32 rounding to odd: truncate toward zero and set the last bit when
// anything was dropped. Rounding that result to a format at least two bits
// narrower (f16, bf16, f8) equals rounding the f64 directly, which a plain
// f64 -> f32 -> f16 double rounding does not.
inline float DoubleToFloatRoundOdd(double d) {
  float f = static_cast<float>(d);
  if (std::isnan(d) || std::isinf(f) || static_cast<double>(f) == d) return f;
  if (std::fabs(static_cast<double>(f)) > std::fabs(d))
    f = std::nextafter(f, 0.0f);  // rounded away from zero: step back
  return BitsToFloat(FloatBits(f) | 1u);
}

/// A double rounded once (to nearest even) into storage type S.
template <class S>
inline S StoreDouble(double d) {
  if constexpr (std::is_same_v<S, double>) {
    return d;
  } else if constexpr (std::is_same_v<S, float>) {
    return static_cast<float>(d);
  } else {
    return Elem<S>::Store(DoubleToFloatRoundOdd(d));
  }
}

// Integers to f32 rounding to odd, for the same reason.
template <class I>
inline float IntToFloatRoundOdd(I v) {
  bool neg = false;
  uint64_t u;
  if constexpr (std::is_signed_v<I>) {
    neg = v < 0;
    u = neg ? uint64_t(0) - uint64_t(v) : uint64_t(v);
  } else {
    u = uint64_t(v);
  }
  if (u < (uint64_t(1) << 24)) return neg ? -float(u) : float(u);
  int bits = 64 - __builtin_clzll(u);
  int shift = bits - 24;
  uint64_t m = u >> shift;
  if (u & ((uint64_t(1) << shift) - 1)) m |= 1;
  float f = std::ldexp(float(m), shift);
  return neg ? -f : f;
}

// Float to integer: truncate toward zero; NaN becomes 0 and values beyond
// the range saturate (ONNX leaves both undefined; saturating is what CUDA's
// conversions do, so the GPU backend can match).
template <class D, class C>
inline D FloatToInt(C x) {
  if (x != x) return D(0);
  constexpr int kDigits = std::numeric_limits<D>::digits;
  constexpr C kHi = C(uint64_t(1) << (kDigits - 1)) * C(2);  // 2^digits
  if (x >= kHi) return std::numeric_limits<D>::max();
  if constexpr (std::is_signed_v<D>) {
    if (x <= -kHi) return std::numeric_limits<D>::min();
  } else {
    if (x <= C(-1)) return D(0);
  }
  return static_cast<D>(x);
}

/// One element of storage type S converted to storage type D with
/// kiln.cast's rules: floats round to nearest even (once, even from f64 or
/// 64-bit integers), floats truncate toward zero into integers (saturating,
/// NaN -> 0), integers wrap into narrower integers, i1 is x != 0.
template <class D, class S>
inline D Convert(S s) {
  if constexpr (std::is_same_v<S, D>) {
    return s;
  } else if constexpr (std::is_same_v<D, Bool>) {
    return Bool{uint8_t(Elem<S>::Load(s) != 0)};  // NaN is true
  } else if constexpr (std::is_same_v<S, Bool>) {
    return Convert<D, uint8_t>(uint8_t(uint8_t(s) != 0));
  } else if constexpr (kIsFloatStorage<S> && kIsFloatStorage<D>) {
    if constexpr (std::is_same_v<D, double>) {
      return double(Elem<S>::Load(s));
    } else if constexpr (std::is_same_v<D, float>) {
      return float(Elem<S>::Load(s));
    } else if constexpr (std::is_same_v<S, double>) {
      return Elem<D>::Store(DoubleToFloatRoundOdd(s));
    } else {
      return Elem<D>::Store(Elem<S>::Load(s));  // exact in f32
    }
  } else if constexpr (kIsFloatStorage<S>) {  // float -> int
    return FloatToInt<D>(Elem<S>::Load(s));
  } else if constexpr (kIsFloatStorage<D>) {  // int -> float
    if constexpr (std::is_same_v<D, double> || std::is_same_v<D, float>)
      return static_cast<D>(s);
    else
      return Elem<D>::Store(IntToFloatRoundOdd(s));
  } else {  // int -> int wraps (two's complement), as ONNX Cast
    return static_cast<D>(s);
  }
}

/// e^x in f32, within 1 ulp of the exact value over the whole f32 range
/// (checked against f64 exp on a sweep of every 13th f32; subnormal results,
/// overflow to inf, -inf -> 0 and NaN included). Cody-Waite reduction to
/// r = x - n ln2 with |r| <= ln2 / 2, a degree-6 polynomial (Cephes expf)
/// and 2^n applied as two factors so that subnormal results stay exact.
/// It is branch-free, with the clamp done on the bits, so that loops calling
/// it vectorize even though GCC must assume floating-point ops may trap
/// (glibc's expf is a call per element).
inline float FastExpF(float x) {
  const uint32_t bits = FloatBits(x), ax = bits & 0x7FFFFFFFu;
  // |x| > 104 (inf included, NaN excluded) saturates: e^104 overflows and
  // e^-104 underflows to 0. NaN flows through the arithmetic.
  const uint32_t clamped = (ax > 0x42D00000u && ax <= 0x7F800000u)
                               ? (bits & 0x80000000u) | 0x42D00000u
                               : bits;
  const float xc = BitsToFloat(clamped);
  // Adding 1.5 * 2^23 rounds x * log2(e) to the integer n, which the low
  // mantissa bits of t then hold (read as bits: no float -> int conversion).
  const float kShift = 12582912.0f;
  const float t = xc * 1.44269504088896341f + kShift;
  const float n = t - kShift;
  float r = xc - n * 0.693359375f;  // ln 2 split in two for exact n * ln2
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t ni = int32_t(FloatBits(t) - FloatBits(kShift));
  const int32_t n1 = ni / 2, n2 = ni - n1;
  const float s1 = BitsToFloat(uint32_t(n1 + 127) << 23);
  const float s2 = BitsToFloat(uint32_t(n2 + 127) << 23);
  return p * s1 * s2;
}

/// e^x in the compute type: FastExpF for f32, std::exp for f64.
inline float ExpC(float x) { return FastExpF(x); }
inline double ExpC(double x) { return std::exp(x); }

template <class T>
struct TypeTag {
  using type = T;
};

// Each Dispatch* calls f(TypeTag<S>{}) with S the storage type of `dtype`
// and returns true, or returns false when `dtype` is not in the group.

template <class F>
bool DispatchFloat(kiln_dtype_t dtype, F&& f) {  // f32 f64 f16 bf16
  switch (dtype) {
    case KILN_DTYPE_F32: f(TypeTag<float>{}); return true;
    case KILN_DTYPE_F64: f(TypeTag<double>{}); return true;
    case KILN_DTYPE_F16: f(TypeTag<Half>{}); return true;
    case KILN_DTYPE_BF16: f(TypeTag<BFloat16>{}); return true;
    default: return false;
  }
}

template <class F>
bool DispatchInt(kiln_dtype_t dtype, F&& f) {  // i8..u64 (not i1, not i4)
  switch (dtype) {
    case KILN_DTYPE_I8: f(TypeTag<int8_t>{}); return true;
    case KILN_DTYPE_U8: f(TypeTag<uint8_t>{}); return true;
    case KILN_DTYPE_I16: f(TypeTag<int16_t>{}); return true;
    case KILN_DTYPE_U16: f(TypeTag<uint16_t>{}); return true;
    case KILN_DTYPE_I32: f(TypeTag<int32_t>{}); return true;
    case KILN_DTYPE_U32: f(TypeTag<uint32_t>{}); return true;
    case KILN_DTYPE_I64: f(TypeTag<int64_t>{}); return true;
    case KILN_DTYPE_U64: f(TypeTag<uint64_t>{}); return true;
    default: return false;
  }
}

template <class F>
bool DispatchNumeric(kiln_dtype_t dtype, F&& f) {
  return DispatchFloat(dtype, f) || DispatchInt(dtype, f);
}

// Every byte-addressable element type: numeric, f8 and i1.
template <class F>
bool DispatchAll(kiln_dtype_t dtype, F&& f) {
  switch (dtype) {
    case KILN_DTYPE_F8E4M3FN: f(TypeTag<Float8E4M3FN>{}); return true;
    case KILN_DTYPE_F8E5M2: f(TypeTag<Float8E5M2>{}); return true;
    case KILN_DTYPE_I1: f(TypeTag<Bool>{}); return true;
    default: return DispatchNumeric(dtype, f);
  }
}

// Data movement only needs the element's width: f(TypeTag<uintN_t>{}).
template <class F>
bool DispatchBySize(size_t bytes, F&& f) {
  switch (bytes) {
    case 1: f(TypeTag<uint8_t>{}); return true;
    case 2: f(TypeTag<uint16_t>{}); return true;
    case 4: f(TypeTag<uint32_t>{}); return true;
    case 8: f(TypeTag<uint64_t>{}); return true;
    default: return false;
  }
}

/// Bytes per element; 0 for the packed sub-byte types.
inline size_t ElementBytes(kiln_dtype_t dtype) {
  return kiln_dtype_bit_width(dtype) / 8;
}
inline bool IsSubByte(kiln_dtype_t dtype) {
  return dtype == KILN_DTYPE_I4 || dtype == KILN_DTYPE_U4;
}
inline const char* DTypeName(kiln_dtype_t dtype) { return kiln_dtype_name(dtype); }

//===----------------------------------------------------------------------===//
// Operand checks
//===----------------------------------------------------------------------===//

/// Checks the launch's operand list: `required` leading operands present,
/// at most `optional` more (which may be absent), none quantized, and at
/// least one result. Kernels check dtypes and shapes themselves.
kiln_status_t CheckOperands(const KernelContext& ctx, size_t required,
                            size_t optional = 0);

/// Result 0 must have the element type `input` (ops that keep the type).
inline kiln_status_t CheckSameType(const KernelContext& ctx, kiln_dtype_t input) {
  if (ctx.output_dtype(0) != input)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "result element type %s differs from the input's %s",
                       DTypeName(ctx.output_dtype(0)), DTypeName(input));
  return nullptr;
}

/// `axis` in [-rank, rank) made non-negative; false when out of range.
inline bool NormalizeAxis(int64_t axis, int rank, int* out) {
  if (axis < -int64_t(rank) || axis >= int64_t(rank)) return false;
  *out = int(axis < 0 ? axis + rank : axis);
  return true;
}

/// Product of dims [begin, end).
inline int64_t DimProduct(const Dims& d, int begin, int end) {
  int64_t n = 1;
  for (int i = begin; i < end; ++i) n *= d[i];
  return n;
}

//===----------------------------------------------------------------------===//
// Broadcasting
//===----------------------------------------------------------------------===//

/// NumPy broadcast of `n` shapes (aligned at the innermost dimension; a 1
/// stretches). False when some dimension pair is neither equal nor 1.
bool BroadcastShapes(const Dims* const* shapes, int n, Dims* out);

/// How up to kMaxOperands inputs are read while the dense output of `shape`
/// is written in order. Size-1 dimensions are dropped and runs of dimensions
/// that every operand reads contiguously are merged, so a plain elementwise
/// op on equal shapes is one dimension of stride 1 and a bias add is two.
struct StridedPlan {
  static constexpr int kMaxOperands = 3;
  int rank = 1;  // at least 1 (a scalar is [1])
  int operands = 0;
  int64_t shape[kMaxRank] = {1};
  int64_t stride[kMaxOperands][kMaxRank] = {};  // elements; 0 = broadcast
  int64_t numel = 1;

  /// `inputs[k]` must broadcast to `out` (checked by the caller).
  static StridedPlan Make(const Dims& out, const Dims* const* inputs, int n);
  /// Innermost strides.
  int64_t inner_stride(int k) const { return stride[k][rank - 1]; }
};

/// Calls row(out_offset, in_offsets, count) for each maximal run of the
/// innermost dimension inside output elements [begin, end); operand k is
/// read at in_offsets[k] + j * plan.inner_stride(k) for j < count. `row` is
/// a template functor, so the per-element work inlines.
template <class Row>
inline void ForEachRow(const StridedPlan& plan, int64_t begin, int64_t end,
                       Row&& row) {
  if (begin >= end) return;
  const int r = plan.rank, last = r - 1;
  int64_t idx[kMaxRank];
  int64_t off[StridedPlan::kMaxOperands] = {0, 0, 0};
  int64_t rem = begin;
  for (int d = r - 1; d >= 0; --d) {
    idx[d] = rem % plan.shape[d];
    rem /= plan.shape[d];
    for (int k = 0; k < plan.operands; ++k) off[k] += idx[d] * plan.stride[k][d];
  }
  int64_t pos = begin;
  while (pos < end) {
    int64_t count = plan.shape[last] - idx[last];
    if (count > end - pos) count = end - pos;
    row(pos, off, count);
    pos += count;
    if (pos >= end) break;
    // Advance the odometer past the finished row.
    for (int k = 0; k < plan.operands; ++k)
      off[k] += (count - 1) * plan.stride[k][last];
    idx[last] += count - 1;
    for (int d = last; d >= 0; --d) {
      if (++idx[d] < plan.shape[d]) {
        for (int k = 0; k < plan.operands; ++k) off[k] += plan.stride[k][d];
        break;
      }
      for (int k = 0; k < plan.operands; ++k)
        off[k] -= (plan.shape[d] - 1) * plan.stride[k][d];
      idx[d] = 0;
    }
  }
}

/// Iterations per parallel_for chunk: cheap per-element work (copies,
/// arithmetic) and expensive work (transcendentals).
constexpr int64_t kGrainCheap = 1 << 15;
constexpr int64_t kGrainHeavy = 1 << 12;

/// A memcpy split across the pool when it is large.
void ParallelCopy(ThreadPool& pool, void* dst, const void* src, size_t bytes);

//===----------------------------------------------------------------------===//
// 4-bit types
//===----------------------------------------------------------------------===//

/// Unpacks a packed 4-bit tensor of `shape` (two per byte along the
/// innermost dimension, low nibble first, rows padded to whole bytes) into
/// one byte per element, sign-extending when `is_signed`.
void UnpackNibbles(const uint8_t* src, const Dims& shape, bool is_signed,
                   uint8_t* dst);
/// The inverse: keeps the low nibble of each byte.
void PackNibbles(const uint8_t* src, const Dims& shape, uint8_t* dst);

/// Runs `fn` as if every i4 / ui4 operand and result were i8 / ui8 (one
/// byte per element), then packs the results. Lets data-movement kernels
/// written for whole bytes serve the packed types.
kiln_status_t RunOnUnpackedNibbles(KernelContext& ctx, KernelFn fn);
/// True when some operand or result of the launch is i4 / ui4.
bool HasSubByteOperand(const KernelContext& ctx);

/// reduce, softmax and cumsum (reduce.cc); AppendElementwiseKernels adds
/// them.
void AppendReduceKernels(std::vector<KernelEntry>& out);

}  // namespace kiln

#endif  // KILN_RUNTIME_CPU_KERNEL_UTIL_H_
