// Scalar conversions between f32 and the narrow float formats the runtime
// stores (f16, bf16, f8E4M3FN, f8E5M2). Kernels compute narrow floats in f32
// and round back with these. Every narrowing rounds to nearest, ties to even.
//
// f8 narrowing follows ONNX Cast with saturate=1 (the default): a finite value
// or an infinity beyond the format's largest finite value becomes that value
// with the input's sign (f8E4M3FN has no infinity; f8E5M2 has one but ONNX
// saturates to it only when saturate=0). NaN stays NaN.
#ifndef KILN_RUNTIME_CPU_HALF_H_
#define KILN_RUNTIME_CPU_HALF_H_

#include <cstdint>
#include <cstring>

namespace kiln {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

namespace half_internal {

// Rounds |f| (given as its f32 bits without sign, not NaN/Inf) to a float
// format with kMan mantissa bits and exponent bias kBias, returning the
// format's bits without sign. The caller checks the result against the
// format's largest finite code (a carry out of the top binade lands above
// it). f32 subnormals are far below half the smallest subnormal of every
// target format, so they take the "too small" path and become 0.
template <int kMan, int kBias>
inline uint32_t RoundToNarrow(uint32_t abs) {
  int32_t exp = int32_t(abs >> 23) - 127 + kBias;  // target biased exponent
  uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;   // 24 bits, implicit one
  if ((abs >> 23) == 0) return 0;                  // zero or f32 subnormal
  int32_t shift = 23 - kMan;
  if (exp < 1) shift += 1 - exp;  // target subnormal: fewer mantissa bits
  if (shift > 25) return 0;       // below half the smallest subnormal
  uint32_t rounded = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1);
  uint32_t halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (rounded & 1))) ++rounded;
  if (exp < 1) return rounded;  // a carry to 1 << kMan is the smallest normal
  // `rounded` still holds the implicit bit, so a carry out of the mantissa
  // moves into the exponent field by itself.
  return (uint32_t(exp) << kMan) + rounded - (1u << kMan);
}

}  // namespace half_internal

// --- f16 (IEEE binary16) ---

// Both directions are branch-free so that loops over them vectorize: every
// case is computed, and where one of them involves float arithmetic the
// choice is a bit mask rather than ?: (GCC would otherwise move the float op
// under a branch, which it may not vectorize while float ops may trap).

inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7FFFu;
  // Normal: move exponent and mantissa into place and rebias by 127 - 15;
  // Inf / NaN (exponent all ones) need the f32 exponent all ones.
  uint32_t bits = (em << 13) + (112u << 23);
  bits += uint32_t(em >= 0x7C00u) * (112u << 23);
  // Subnormal or zero: em * 2^-24, exact in f32.
  const float sub = float(int32_t(em)) * 5.9604644775390625e-8f;
  const uint32_t is_sub = 0u - uint32_t(em < 0x0400u);
  bits = (FloatBits(sub) & is_sub) | (bits & ~is_sub);
  return BitsToFloat(sign | bits);
}

inline uint16_t FloatToHalf(float f) {
  const uint32_t u = FloatBits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7FFFFFFFu;
  // Normal results (2^-14 <= |f| < 2^16): round to nearest even at bit 13
  // and rebias. A carry past 65504 lands exactly on the infinity code, as
  // IEEE rounding wants.
  const uint32_t normal =
      ((abs + 0xFFFu + ((abs >> 13) & 1u)) >> 13) - (112u << 10);
  // Subnormal results: adding 0.5 leaves |f| rounded (to nearest even) to a
  // multiple of 2^-24, the f16 subnormal step, in the low mantissa bits.
  const uint32_t sub = FloatBits(BitsToFloat(abs) + 0.5f) - 0x3F000000u;
  // NaN stays a quiet NaN with the top of its payload; beyond 2^16 is Inf.
  const uint32_t nan = 0x7E00u | ((abs >> 13) & 0x3FFu);
  uint32_t r = abs > 0x7F800000u ? nan : 0x7C00u;
  r = abs < 0x47800000u ? normal : r;
  const uint32_t is_sub = 0u - uint32_t(abs < 0x38800000u);
  r = (sub & is_sub) | (r & ~is_sub);
  return uint16_t(sign | r);
}

// --- bf16 (the top half of an f32) ---

inline float BF16ToFloat(uint16_t b) { return BitsToFloat(uint32_t(b) << 16); }

inline uint16_t FloatToBF16(float f) {
  uint32_t u = FloatBits(f);
  // Overflow rounds to Inf, as IEEE does. NaN must stay NaN (rounding could
  // carry it into Inf): keep it quiet instead. Both are computed and one is
  // selected, so loops over this vectorize.
  uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  uint32_t quiet_nan = (u >> 16) | 0x40u;
  return uint16_t((u & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded);
}

// --- f8E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities,
// S.1111.111 is NaN, largest finite 448. ---

inline float F8E4M3FNToFloat(uint8_t b) {
  uint32_t sign = uint32_t(b & 0x80u) << 24;
  uint32_t exp = (b >> 3) & 0xFu;
  uint32_t man = b & 0x7u;
  if (exp == 0xF && man == 0x7) return BitsToFloat(sign | 0x7FC00000u);
  if (exp == 0) {
    float v = float(man) * 0.001953125f;  // man * 2^-9
    return BitsToFloat(sign | FloatBits(v));
  }
  return BitsToFloat(sign | ((exp + 120) << 23) | (man << 20));
}

inline uint8_t FloatToF8E4M3FN(float f) {
  uint32_t u = FloatBits(f);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t abs = u & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return uint8_t(sign | 0x7Fu);  // NaN
  if (abs == 0x7F800000u) return uint8_t(sign | 0x7Eu);  // saturate Inf
  uint32_t r = half_internal::RoundToNarrow<3, 7>(abs);
  if (r > 0x7Eu) r = 0x7Eu;  // saturate (0x7F would be NaN)
  return uint8_t(sign | r);
}

// --- f8E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa: the top byte of an
// f16. Largest finite 57344. ---

inline float F8E5M2ToFloat(uint8_t b) { return HalfToFloat(uint16_t(b) << 8); }

inline uint8_t FloatToF8E5M2(float f) {
  uint32_t u = FloatBits(f);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t abs = u & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return uint8_t(sign | 0x7Fu);  // NaN
  if (abs == 0x7F800000u) return uint8_t(sign | 0x7Bu);  // saturate Inf
  uint32_t r = half_internal::RoundToNarrow<2, 15>(abs);
  if (r > 0x7Bu) r = 0x7Bu;  // saturate
  return uint8_t(sign | r);
}

}  // namespace kiln

#endif  // KILN_RUNTIME_CPU_HALF_H_
