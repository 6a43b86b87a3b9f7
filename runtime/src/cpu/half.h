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

inline float HalfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  if (exp == 0x1F) return BitsToFloat(sign | 0x7F800000u | (man << 13));
  if (exp == 0) {
    // Subnormal (or zero): man * 2^-24, exact in f32.
    float v = float(man) * 5.9604644775390625e-8f;
    return BitsToFloat(sign | FloatBits(v));
  }
  return BitsToFloat(sign | ((exp + 112) << 23) | (man << 13));
}

inline uint16_t FloatToHalf(float f) {
  uint32_t u = FloatBits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {
    if (abs > 0x7F800000u)  // NaN: keep it quiet and keep some payload
      return uint16_t(sign | 0x7E00u | ((abs >> 13) & 0x3FFu));
    return uint16_t(sign | 0x7C00u);
  }
  uint32_t r = half_internal::RoundToNarrow<10, 15>(abs);
  if (r >= 0x7C00u) r = 0x7C00u;  // overflow -> infinity (IEEE)
  return uint16_t(sign | r);
}

// --- bf16 (the top half of an f32) ---

inline float BF16ToFloat(uint16_t b) { return BitsToFloat(uint32_t(b) << 16); }

inline uint16_t FloatToBF16(float f) {
  uint32_t u = FloatBits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u)  // NaN: truncating could make it Inf
    return uint16_t((u >> 16) | 0x40u);
  u += 0x7FFFu + ((u >> 16) & 1u);  // overflow rounds to Inf, as IEEE does
  return uint16_t(u >> 16);
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
