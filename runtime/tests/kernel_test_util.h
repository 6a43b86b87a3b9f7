// Helpers for the elementwise and movement kernel tests: tensors of any
// dtype built from and read back as doubles, random data, reference
// broadcasting and tolerance checks.
#ifndef KILN_RUNTIME_TESTS_KERNEL_TEST_UTIL_H_
#define KILN_RUNTIME_TESTS_KERNEL_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu/half.h"
#include "kernel_harness.h"

namespace kiln::testing {

inline bool IsFloatType(kiln_dtype_t t) {
  return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F64 || t == KILN_DTYPE_F16 ||
         t == KILN_DTYPE_BF16 || t == KILN_DTYPE_F8E4M3FN || t == KILN_DTYPE_F8E5M2;
}
inline bool IsSignedInt(kiln_dtype_t t) {
  return t == KILN_DTYPE_I8 || t == KILN_DTYPE_I16 || t == KILN_DTYPE_I32 ||
         t == KILN_DTYPE_I64 || t == KILN_DTYPE_I4;
}
inline bool IsUnsignedInt(kiln_dtype_t t) {
  return t == KILN_DTYPE_U8 || t == KILN_DTYPE_U16 || t == KILN_DTYPE_U32 ||
         t == KILN_DTYPE_U64 || t == KILN_DTYPE_U4;
}
inline int IntBits(kiln_dtype_t t) { return int(kiln_dtype_bit_width(t)); }

// Byte offset and shift of element i of a packed 4-bit tensor.
inline void NibbleAt(const Dims& shape, int64_t i, int64_t* byte, int* shift) {
  int64_t inner = shape.rank ? shape.back() : 1;
  int64_t row = i / inner, col = i % inner;
  *byte = row * ((inner + 1) / 2) + col / 2;
  *shift = int(col & 1) * 4;
}

// Element i as a double (integers as exact values up to 2^53).
inline double GetD(const HostTensor& t, int64_t i) {
  const uint8_t* b = t.bytes.data();
  switch (t.dtype) {
    case KILN_DTYPE_F32: return reinterpret_cast<const float*>(b)[i];
    case KILN_DTYPE_F64: return reinterpret_cast<const double*>(b)[i];
    case KILN_DTYPE_F16: return HalfToFloat(reinterpret_cast<const uint16_t*>(b)[i]);
    case KILN_DTYPE_BF16: return BF16ToFloat(reinterpret_cast<const uint16_t*>(b)[i]);
    case KILN_DTYPE_F8E4M3FN: return F8E4M3FNToFloat(b[i]);
    case KILN_DTYPE_F8E5M2: return F8E5M2ToFloat(b[i]);
    case KILN_DTYPE_I1: return b[i];
    case KILN_DTYPE_I8: return reinterpret_cast<const int8_t*>(b)[i];
    case KILN_DTYPE_U8: return b[i];
    case KILN_DTYPE_I16: return reinterpret_cast<const int16_t*>(b)[i];
    case KILN_DTYPE_U16: return reinterpret_cast<const uint16_t*>(b)[i];
    case KILN_DTYPE_I32: return reinterpret_cast<const int32_t*>(b)[i];
    case KILN_DTYPE_U32: return reinterpret_cast<const uint32_t*>(b)[i];
    case KILN_DTYPE_I64: return double(reinterpret_cast<const int64_t*>(b)[i]);
    case KILN_DTYPE_U64: return double(reinterpret_cast<const uint64_t*>(b)[i]);
    case KILN_DTYPE_I4:
    case KILN_DTYPE_U4: {
      int64_t byte;
      int shift;
      NibbleAt(t.shape, i, &byte, &shift);
      int v = (b[byte] >> shift) & 0xF;
      if (t.dtype == KILN_DTYPE_I4 && v >= 8) v -= 16;
      return v;
    }
    default: return std::nan("");
  }
}

// Element i as an exact 64-bit integer (integer types only).
inline int64_t GetI(const HostTensor& t, int64_t i) {
  const uint8_t* b = t.bytes.data();
  switch (t.dtype) {
    case KILN_DTYPE_I64: return reinterpret_cast<const int64_t*>(b)[i];
    case KILN_DTYPE_U64: return int64_t(reinterpret_cast<const uint64_t*>(b)[i]);
    default: {
      // Only meaningful for integer tensors; float elements (NaN and
      // infinities included) convert without undefined behavior.
      double d = GetD(t, i);
      if (std::isnan(d)) return 0;
      if (d >= 9.2e18) return INT64_MAX;
      if (d <= -9.2e18) return INT64_MIN;
      return int64_t(d);
    }
  }
}

inline int64_t SafeInt(double v) {
  if (std::isnan(v)) return 0;
  if (v >= 9.2e18) return INT64_MAX;
  if (v <= -9.2e18) return INT64_MIN;
  return int64_t(v);
}

// Stores v (which the caller keeps representable, or lets round) as element i.
inline void SetD(HostTensor& t, int64_t i, double v) {
  uint8_t* b = t.bytes.data();
  switch (t.dtype) {
    case KILN_DTYPE_F32: reinterpret_cast<float*>(b)[i] = float(v); break;
    case KILN_DTYPE_F64: reinterpret_cast<double*>(b)[i] = v; break;
    case KILN_DTYPE_F16: reinterpret_cast<uint16_t*>(b)[i] = FloatToHalf(float(v)); break;
    case KILN_DTYPE_BF16: reinterpret_cast<uint16_t*>(b)[i] = FloatToBF16(float(v)); break;
    case KILN_DTYPE_F8E4M3FN: b[i] = FloatToF8E4M3FN(float(v)); break;
    case KILN_DTYPE_F8E5M2: b[i] = FloatToF8E5M2(float(v)); break;
    case KILN_DTYPE_I1: b[i] = v != 0; break;
    // Integers: through int64 (saturated), then wrapped, so that no
    // out-of-range float -> integer conversion (undefined) happens.
    case KILN_DTYPE_I8: reinterpret_cast<int8_t*>(b)[i] = int8_t(SafeInt(v)); break;
    case KILN_DTYPE_U8: b[i] = uint8_t(SafeInt(v)); break;
    case KILN_DTYPE_I16: reinterpret_cast<int16_t*>(b)[i] = int16_t(SafeInt(v)); break;
    case KILN_DTYPE_U16: reinterpret_cast<uint16_t*>(b)[i] = uint16_t(SafeInt(v)); break;
    case KILN_DTYPE_I32: reinterpret_cast<int32_t*>(b)[i] = int32_t(SafeInt(v)); break;
    case KILN_DTYPE_U32: reinterpret_cast<uint32_t*>(b)[i] = uint32_t(SafeInt(v)); break;
    case KILN_DTYPE_I64: reinterpret_cast<int64_t*>(b)[i] = SafeInt(v); break;
    case KILN_DTYPE_U64:
      reinterpret_cast<uint64_t*>(b)[i] =
          v >= 9.2e18 && v < 1.8e19 ? uint64_t(v) : uint64_t(SafeInt(v));
      break;
    case KILN_DTYPE_I4:
    case KILN_DTYPE_U4: {
      int64_t byte;
      int shift;
      NibbleAt(t.shape, i, &byte, &shift);
      b[byte] = uint8_t((b[byte] & ~(0xF << shift)) | ((int(v) & 0xF) << shift));
      break;
    }
    default: break;
  }
}

inline HostTensor FromD(kiln_dtype_t dtype, Dims shape, const std::vector<double>& v) {
  HostTensor t(dtype, shape);
  for (int64_t i = 0; i < shape.numel(); ++i) SetD(t, i, v[size_t(i)]);
  return t;
}

inline std::vector<double> ToD(const HostTensor& t) {
  std::vector<double> v(static_cast<size_t>(t.shape.numel()));
  for (int64_t i = 0; i < t.shape.numel(); ++i) v[size_t(i)] = GetD(t, i);
  return v;
}

// Random data of `dtype`, never zero: floats in +-[0.25, hi] (or [lo, hi]
// with `positive`), integers in a small range that suits every width.
inline HostTensor Random(kiln_dtype_t dtype, Dims shape, uint32_t seed,
                         double hi = 2.0, bool positive = false) {
  std::mt19937 rng(seed);
  HostTensor t(dtype, shape);
  for (int64_t i = 0; i < shape.numel(); ++i) {
    double v;
    if (dtype == KILN_DTYPE_I1) {
      v = double(rng() & 1);
    } else if (IsFloatType(dtype)) {
      std::uniform_real_distribution<double> d(0.25, hi);
      v = d(rng);
      if (!positive && (rng() & 1)) v = -v;
    } else if (dtype == KILN_DTYPE_I4) {
      v = double(int(rng() % 15) - 7);
      if (v == 0) v = 3;
    } else if (dtype == KILN_DTYPE_U4) {
      v = double(1 + rng() % 15);
    } else if (IsSignedInt(dtype)) {
      v = double(int(rng() % 201) - 100);
      if (v == 0 || positive) v = std::fabs(v) + 1;
    } else {
      v = double(1 + rng() % 200);
    }
    SetD(t, i, v);
  }
  return t;
}

// Flat index into `in` (broadcast to `out`) of output element `flat`.
inline int64_t BroadcastIndex(const Dims& out, const Dims& in, int64_t flat) {
  int64_t idx = 0, stride = 1;
  for (int d = out.rank - 1; d >= 0; --d) {
    int64_t i = flat % out[d];
    flat /= out[d];
    int id = d - (out.rank - in.rank);
    if (id < 0) continue;
    if (in[id] != 1) idx += i * stride;
    stride *= in[id];
  }
  return idx;
}

// Relative tolerance of results rounded into `dtype` against a double
// reference: half an ulp plus headroom (f32 ~1e-7 per rounding, f16 2^-11,
// bf16 2^-8).
inline double RoundingTol(kiln_dtype_t dtype) {
  switch (dtype) {
    case KILN_DTYPE_F32: return 1e-6;
    case KILN_DTYPE_F64: return 1e-12;
    case KILN_DTYPE_F16: return 1e-3;
    case KILN_DTYPE_BF16: return 8e-3;
    default: return 0;
  }
}

// Checks |got - ref| <= atol + rtol * |ref| elementwise (NaN must match NaN,
// infinities must match exactly); reports the first few mismatches.
inline void ExpectClose(const HostTensor& got, const std::vector<double>& ref,
                        double rtol, double atol, const std::string& what) {
  ASSERT_EQ(size_t(got.shape.numel()), ref.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double g = GetD(got, int64_t(i)), r = ref[i];
    bool ok;
    if (std::isnan(r)) ok = std::isnan(g);
    else if (std::isinf(r)) ok = g == r;
    else ok = std::fabs(g - r) <= atol + rtol * std::fabs(r);
    if (!ok && ++bad <= 5)
      ADD_FAILURE() << what << ": element " << i << " is " << g << ", expected " << r;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << ref.size() << " elements differ";
}

inline void ExpectExact(const HostTensor& got, const std::vector<double>& ref,
                        const std::string& what) {
  ExpectClose(got, ref, 0, 0, what);
}

inline std::string Str(const Dims& d) { return d.str(); }

// A harness whose memory plan lets result 0 alias input 0, to check the
// kernels that can return views.
class AliasingHarness : public KernelHarness {
 public:
  using KernelHarness::KernelHarness;
  bool can_alias(size_t out, size_t in) const override { return out == 0 && in == 0; }
  kiln_status_t alias_output(size_t, const Dims& shape, size_t in, Tensor** result) override {
    aliased_ = input(in);
    aliased_.shape = shape;
    aliased = true;
    *result = &aliased_;
    return nullptr;
  }
  const Tensor& view() const { return aliased_; }
  bool aliased = false;

 private:
  Tensor aliased_;
};

}  // namespace kiln::testing

#endif  // KILN_RUNTIME_TESTS_KERNEL_TEST_UTIL_H_
