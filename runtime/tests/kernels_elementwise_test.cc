// Elementwise, reduction, softmax, cumsum and fused elementwise (program)
// kernels against naive references computed in double on fixed-seed random
// data (never zeros).
//
// Tolerances (relative, plus a tiny absolute term where results cross
// zero), against a double-precision reference:
//   f32: 1e-6 for correctly rounded ops (+ - * / sqrt, casts), 1e-5 for
//        transcendentals and activations, 1e-5 for sums and softmax;
//   f64: 1e-12;  f16: 1e-3 (half an ulp is 4.9e-4);  bf16: 8e-3 (3.9e-3).
// Integer results and data movement are compared exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "cpu/half.h"
#include "cpu/thread_pool.h"
#include "kiln/runtime/artifact_format.h"
#include "kernel_harness.h"
#include "kernel_test_util.h"

namespace kiln::testing {
namespace {

const kiln_dtype_t kFloatTypes[] = {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16,
                                    KILN_DTYPE_BF16};
const kiln_dtype_t kIntTypes[] = {KILN_DTYPE_I8,  KILN_DTYPE_U8,  KILN_DTYPE_I16,
                                  KILN_DTYPE_U16, KILN_DTYPE_I32, KILN_DTYPE_U32,
                                  KILN_DTYPE_I64, KILN_DTYPE_U64};

std::string Name(kiln_dtype_t t) { return kiln_dtype_name(t); }

// Transcendental tolerance per dtype: a few ulps for f32.
double MathTol(kiln_dtype_t t) { return t == KILN_DTYPE_F32 ? 1e-5 : RoundingTol(t); }

// Wraps v into the range of integer type t (two's complement).
double WrapInt(kiln_dtype_t t, __int128 v) {
  const int bits = IntBits(t);
  const __int128 mod = __int128(1) << bits;
  __int128 r = v % mod;
  if (r < 0) r += mod;
  if (IsSignedInt(t) && r >= mod / 2) r -= mod;
  return double(r);
}

//===----------------------------------------------------------------------===//
// Narrow float conversions (half.h)
//===----------------------------------------------------------------------===//

// Every f16 value round-trips, and every midpoint between neighbours rounds
// to the even one (and just off the midpoint to the nearer one).
// The value of f16 code h from its fields, independently of half.h.
double F16Value(uint32_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const double s = (h & 0x8000) ? -1 : 1;
  if (e == 0x1F) return m ? std::nan("") : s * INFINITY;
  if (e == 0) return s * std::ldexp(m, -24);
  return s * std::ldexp(1024 + m, e - 25);
}

TEST(ElementwiseHalf, F16RoundTripAndTiesToEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = HalfToFloat(uint16_t(h));
    const double want = F16Value(h);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << h;
    } else {
      ASSERT_EQ(double(f), want) << "f16 0x" << std::hex << h;
      ASSERT_EQ(std::signbit(f), bool(h & 0x8000)) << h;
    }
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f)))) << h;
      continue;
    }
    ASSERT_EQ(FloatToHalf(f), h) << "f16 0x" << std::hex << h;
  }
  for (uint32_t h = 0; h < 0x7BFF; ++h) {  // positive finite, below max
    double lo = HalfToFloat(uint16_t(h)), hi = HalfToFloat(uint16_t(h + 1));
    float mid = float((lo + hi) / 2);  // exact in f32
    uint16_t even = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
    ASSERT_EQ(FloatToHalf(mid), even) << "tie above 0x" << std::hex << h;
    ASSERT_EQ(FloatToHalf(std::nextafter(mid, 0.f)), h);
    ASSERT_EQ(FloatToHalf(std::nextafter(mid, 1e9f)), h + 1);
    ASSERT_EQ(FloatToHalf(-mid), 0x8000 | even);
  }
  EXPECT_EQ(FloatToHalf(65519.f), 0x7BFF);  // rounds down to 65504
  EXPECT_EQ(FloatToHalf(65520.f), 0x7C00);  // the tie rounds to infinity
  EXPECT_EQ(FloatToHalf(1e-9f), 0);
  EXPECT_EQ(FloatToHalf(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.f, -24));
}

TEST(ElementwiseHalf, BF16RoundsToNearestEven) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    float f = BF16ToFloat(uint16_t(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(f))));
      continue;
    }
    ASSERT_EQ(FloatToBF16(f), b);
  }
  EXPECT_EQ(FloatToBF16(BitsToFloat(0x3F808000)), 0x3F80);  // tie, even below
  EXPECT_EQ(FloatToBF16(BitsToFloat(0x3F818000)), 0x3F82);  // tie, even above
  EXPECT_EQ(FloatToBF16(BitsToFloat(0x3F808001)), 0x3F81);
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(BitsToFloat(0x7F800001)))));
}

TEST(ElementwiseHalf, Float8) {
  int nans = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    float f = F8E4M3FNToFloat(uint8_t(b));
    if (std::isnan(f)) {
      ++nans;
      continue;
    }
    ASSERT_EQ(FloatToF8E4M3FN(f), b) << b;
    float g = F8E5M2ToFloat(uint8_t(b));
    if (!std::isnan(g) && !std::isinf(g)) {
      ASSERT_EQ(FloatToF8E5M2(g), b) << b;
    }
  }
  EXPECT_EQ(nans, 2);  // S.1111.111 only
  EXPECT_EQ(F8E4M3FNToFloat(0x7E), 448.f);
  EXPECT_EQ(F8E4M3FNToFloat(0x01), std::ldexp(1.f, -9));
  EXPECT_EQ(F8E5M2ToFloat(0x7B), 57344.f);
  // Saturation (ONNX Cast saturate=1): beyond max and infinities clamp.
  EXPECT_EQ(FloatToF8E4M3FN(1000.f), 0x7E);
  EXPECT_EQ(FloatToF8E4M3FN(-1e30f), 0xFE);
  EXPECT_EQ(FloatToF8E4M3FN(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(FloatToF8E4M3FN(464.f), 0x7E);  // would round to 480 (NaN code)
  EXPECT_EQ(FloatToF8E5M2(1e6f), 0x7B);
  EXPECT_EQ(FloatToF8E5M2(-std::numeric_limits<float>::infinity()), 0xFB);
  EXPECT_EQ(FloatToF8E4M3FN(std::nanf("")) & 0x7F, 0x7F);
  // Ties to even: 1 + 1/16 lies between 1 and 1.125 -> 1.
  EXPECT_EQ(F8E4M3FNToFloat(FloatToF8E4M3FN(1.0625f)), 1.f);
  EXPECT_EQ(F8E4M3FNToFloat(FloatToF8E4M3FN(1.1875f)), 1.25f);
  // Subnormal tie: 1.5 * 2^-9 -> 2 * 2^-9.
  EXPECT_EQ(FloatToF8E4M3FN(std::ldexp(1.5f, -9)), 0x02);
  EXPECT_EQ(FloatToF8E4M3FN(std::ldexp(0.5f, -9)), 0x00);
}

//===----------------------------------------------------------------------===//
// Binary arithmetic
//===----------------------------------------------------------------------===//

struct ShapePair {
  Dims a, b, out;
};

const std::vector<ShapePair>& BinaryShapes() {
  static const std::vector<ShapePair> shapes = {
      {{2, 3, 4}, {2, 3, 4}, {2, 3, 4}},
      {{2, 3, 4}, {4}, {2, 3, 4}},
      {{2, 1, 4}, {3, 1}, {2, 3, 4}},
      {{}, {5, 2}, {5, 2}},
      {{5, 2}, {}, {5, 2}},
      {{1}, {1}, {1}},
      {{3, 1, 1}, {1, 2, 5}, {3, 2, 5}},
      {{0, 3}, {3}, {0, 3}},
      {{4, 0}, {1}, {4, 0}},
      {{1, 7, 1, 3}, {2, 1, 5, 1}, {2, 7, 5, 3}},
  };
  return shapes;
}

double RefBinary(const std::string& op, kiln_dtype_t t, double a, double b) {
  if (IsFloatType(t)) {
    if (op == "add") return a + b;
    if (op == "sub") return a - b;
    if (op == "mul") return a * b;
    if (op == "div") return a / b;
    if (op == "pow") return std::pow(a, b);
    if (op == "max") return std::max(a, b);
    if (op == "min") return std::min(a, b);
  } else {
    __int128 x = __int128(int64_t(a)), y = __int128(int64_t(b));
    if (op == "add") return WrapInt(t, x + y);
    if (op == "sub") return WrapInt(t, x - y);
    if (op == "mul") return WrapInt(t, x * y);
    if (op == "div") return WrapInt(t, x / y);  // C++ truncates toward zero
    if (op == "max") return double(std::max(x, y));
    if (op == "min") return double(std::min(x, y));
  }
  return std::nan("");
}

void CheckBinary(const std::string& op, kiln_dtype_t t, const ShapePair& s,
                 int threads, uint32_t seed) {
  const bool positive = op == "pow";
  HostTensor a = Random(t, s.a, seed, 2.0, positive);
  HostTensor b = op == "pow" ? Random(t, s.b, seed + 1, 2.0, false)
                             : Random(t, s.b, seed + 1, 2.0, positive);
  // Declare the leading result dimension dynamic.
  Dims declared = s.out;
  if (declared.rank) declared[0] = -1;
  KernelHarness h(op, threads);
  h.In(a).In(b).Out(t, declared);
  std::string what = op + " " + Name(t) + " " + Str(s.a) + " x " + Str(s.b);
  ASSERT_EQ(h.RunMessage(), "") << what;
  ASSERT_EQ(h.Result().shape, s.out) << what;
  std::vector<double> ref(static_cast<size_t>(s.out.numel()));
  for (int64_t i = 0; i < s.out.numel(); ++i)
    ref[size_t(i)] = RefBinary(op, t, GetD(a, BroadcastIndex(s.out, s.a, i)),
                               GetD(b, BroadcastIndex(s.out, s.b, i)));
  if (IsFloatType(t))
    ExpectClose(h.Result(), ref, op == "pow" ? MathTol(t) : RoundingTol(t), 1e-30, what);
  else
    ExpectExact(h.Result(), ref, what);
}

TEST(ElementwiseBinary, ArithmeticAllTypesAndBroadcasts) {
  uint32_t seed = 1;
  for (std::string op : {"add", "sub", "mul", "div", "max", "min"}) {
    for (kiln_dtype_t t : kFloatTypes)
      for (const ShapePair& s : BinaryShapes()) CheckBinary(op, t, s, 2, seed++);
    for (kiln_dtype_t t : kIntTypes)
      for (const ShapePair& s : BinaryShapes()) CheckBinary(op, t, s, 2, seed++);
  }
}

TEST(ElementwiseBinary, PowOnFloats) {
  uint32_t seed = 100;
  for (kiln_dtype_t t : kFloatTypes)
    for (const ShapePair& s : BinaryShapes()) CheckBinary("pow", t, s, 2, seed++);
  KernelHarness h("pow");
  h.In(Random(KILN_DTYPE_I32, {3}, 1)).In(Random(KILN_DTYPE_I32, {3}, 2)).Out(KILN_DTYPE_I32, {3});
  EXPECT_NE(h.RunMessage().find("no pow kernel for element type i32"), std::string::npos);
}

TEST(ElementwiseBinary, LargeAndThreaded) {
  // Big enough that four threads split every plan shape.
  const std::vector<ShapePair> big = {
      {{64, 1024}, {64, 1024}, {64, 1024}},
      {{64, 1024}, {1024}, {64, 1024}},
      {{64, 1}, {1, 1024}, {64, 1024}},
      {{16, 4, 1024}, {16, 1, 1024}, {16, 4, 1024}},
  };
  uint32_t seed = 500;
  for (const ShapePair& s : big)
    for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_I64})
      for (std::string op : {"add", "mul", "max"}) CheckBinary(op, t, s, 4, seed++);
}

TEST(ElementwiseBinary, IntegerEdgeCases) {
  // Wrapping, truncating division and MIN / -1.
  {
    KernelHarness h("add");
    h.In(HostTensor::Of<int8_t>(KILN_DTYPE_I8, {2}, {100, -128}))
        .In(HostTensor::Of<int8_t>(KILN_DTYPE_I8, {2}, {100, -1}))
        .Out(KILN_DTYPE_I8, {2});
    ASSERT_EQ(h.RunMessage(), "");
    EXPECT_EQ(h.Result().values<int8_t>(), (std::vector<int8_t>{-56, 127}));
  }
  {
    KernelHarness h("div");
    h.In(HostTensor::Of<int32_t>(KILN_DTYPE_I32, {4}, {7, -7, 7, INT32_MIN}))
        .In(HostTensor::Of<int32_t>(KILN_DTYPE_I32, {4}, {2, 2, -2, -1}))
        .Out(KILN_DTYPE_I32, {4});
    ASSERT_EQ(h.RunMessage(), "");
    EXPECT_EQ(h.Result().values<int32_t>(), (std::vector<int32_t>{3, -3, -3, INT32_MIN}));
  }
  {
    KernelHarness h("mul");
    h.In(HostTensor::Of<uint16_t>(KILN_DTYPE_U16, {1}, {65535}))
        .In(HostTensor::Of<uint16_t>(KILN_DTYPE_U16, {1}, {65535}))
        .Out(KILN_DTYPE_U16, {1});
    ASSERT_EQ(h.RunMessage(), "");
    EXPECT_EQ(h.Result().values<uint16_t>()[0], 1);
  }
  {
    KernelHarness h("div");
    h.In(HostTensor::Of<int64_t>(KILN_DTYPE_I64, {2, 2}, {1, 2, 3, 4}))
        .In(HostTensor::Of<int64_t>(KILN_DTYPE_I64, {2}, {5, 0}))
        .Out(KILN_DTYPE_I64, {2, 2});
    kiln_status_t s = h.Run();
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_status_message(s)).find("integer division by zero"),
              std::string::npos)
        << kiln_status_message(s);
    kiln_status_free(s);
  }
  {
    // Float division by zero is IEEE: inf.
    KernelHarness h("div");
    h.In(HostTensor::Of<float>(KILN_DTYPE_F32, {1}, {1.f}))
        .In(HostTensor::Of<float>(KILN_DTYPE_F32, {1}, {0.f}))
        .Out(KILN_DTYPE_F32, {1});
    ASSERT_EQ(h.RunMessage(), "");
    EXPECT_TRUE(std::isinf(h.Result().values<float>()[0]));
  }
}

TEST(ElementwiseBinary, MaxMinPropagateNaN) {
  const float nan = std::nanf("");
  for (std::string op : {"max", "min"}) {
    KernelHarness h(op);
    h.In(HostTensor::Of<float>(KILN_DTYPE_F32, {3}, {nan, 1.f, 2.f}))
        .In(HostTensor::Of<float>(KILN_DTYPE_F32, {3}, {1.f, nan, 3.f}))
        .Out(KILN_DTYPE_F32, {3});
    ASSERT_EQ(h.RunMessage(), "");
    auto v = h.Result().values<float>();
    EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1])) << op;
    EXPECT_EQ(v[2], op == "max" ? 3.f : 2.f);
  }
}

TEST(ElementwiseBinary, Errors) {
  {
    KernelHarness h("add");
    h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).In(Random(KILN_DTYPE_F32, {4}, 2)).Out(KILN_DTYPE_F32, {-1, -1});
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("[2, 3] and [4] are not broadcastable"), std::string::npos) << m;
    EXPECT_EQ(m.rfind("kiln.add at 'test': ", 0), 0u) << m;
  }
  {
    KernelHarness h("mul");
    h.In(Random(KILN_DTYPE_F32, {2}, 1)).In(Random(KILN_DTYPE_F16, {2}, 2)).Out(KILN_DTYPE_F32, {2});
    EXPECT_NE(h.RunMessage().find("f32 and f16 differ"), std::string::npos);
  }
  {
    // The declared static shape must match the broadcast result.
    KernelHarness h("sub");
    h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).In(Random(KILN_DTYPE_F32, {3}, 2)).Out(KILN_DTYPE_F32, {2, 4});
    EXPECT_NE(h.RunMessage().find("[2, 3]"), std::string::npos);
  }
  {
    KernelHarness h("add");
    h.In(Random(KILN_DTYPE_F32, {2}, 1)).Out(KILN_DTYPE_F32, {2});
    EXPECT_NE(h.RunMessage().find("expected 2 operands, found 1"), std::string::npos);
  }
}

//===----------------------------------------------------------------------===//
// Logic, compare, select
//===----------------------------------------------------------------------===//

TEST(ElementwiseLogic, AndOrNot) {
  uint32_t seed = 7;
  for (const ShapePair& s : BinaryShapes()) {
    HostTensor a = Random(KILN_DTYPE_I1, s.a, seed++), b = Random(KILN_DTYPE_I1, s.b, seed++);
    for (std::string op : {"and", "or"}) {
      KernelHarness h(op);
      h.In(a).In(b).Out(KILN_DTYPE_I1, s.out);
      ASSERT_EQ(h.RunMessage(), "");
      std::vector<double> ref(static_cast<size_t>(s.out.numel()));
      for (int64_t i = 0; i < s.out.numel(); ++i) {
        bool x = GetD(a, BroadcastIndex(s.out, s.a, i)) != 0;
        bool y = GetD(b, BroadcastIndex(s.out, s.b, i)) != 0;
        ref[size_t(i)] = op == "and" ? (x && y) : (x || y);
      }
      ExpectExact(h.Result(), ref, op + " " + Str(s.a) + " x " + Str(s.b));
    }
    KernelHarness h("not");
    h.In(a).Out(KILN_DTYPE_I1, s.a);
    ASSERT_EQ(h.RunMessage(), "");
    std::vector<double> ref;
    for (double v : ToD(a)) ref.push_back(v == 0);
    ExpectExact(h.Result(), ref, "not " + Str(s.a));
  }
  // Any non-zero byte reads as true; results are 0 / 1.
  KernelHarness h("and");
  h.In(HostTensor::Of<uint8_t>(KILN_DTYPE_I1, {2}, {2, 0}))
      .In(HostTensor::Of<uint8_t>(KILN_DTYPE_I1, {2}, {1, 1}))
      .Out(KILN_DTYPE_I1, {2});
  ASSERT_EQ(h.RunMessage(), "");
  EXPECT_EQ(h.Result().values<uint8_t>(), (std::vector<uint8_t>{1, 0}));
  KernelHarness bad("or");
  bad.In(Random(KILN_DTYPE_F32, {2}, 1)).In(Random(KILN_DTYPE_F32, {2}, 2)).Out(KILN_DTYPE_F32, {2});
  EXPECT_NE(bad.RunMessage().find("no or kernel for element type f32"), std::string::npos);
}

TEST(ElementwiseCompare, AllPredicatesAndTypes) {
  uint32_t seed = 11;
  const char* preds[] = {"eq", "ne", "lt", "le", "gt", "ge"};
  for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16, KILN_DTYPE_BF16,
                         KILN_DTYPE_I64, KILN_DTYPE_I32, KILN_DTYPE_U8, KILN_DTYPE_I8}) {
    for (const ShapePair& s : BinaryShapes()) {
      // Few distinct values so that equality happens often.
      auto small = [&](Dims d, uint32_t sd) {
        std::mt19937 rng(sd);
        std::vector<double> v(static_cast<size_t>(d.numel()));
        for (double& x : v) x = double(1 + rng() % 4);
        return FromD(t, d, v);
      };
      HostTensor a = small(s.a, seed++), b = small(s.b, seed++);
      for (const char* p : preds) {
        KernelHarness h("compare", 3);
        h.In(a).In(b).Out(KILN_DTYPE_I1, s.out).AttrS("predicate", p);
        ASSERT_EQ(h.RunMessage(), "");
        std::vector<double> ref(static_cast<size_t>(s.out.numel()));
        const std::string ps = p;
        for (int64_t i = 0; i < s.out.numel(); ++i) {
          double x = GetD(a, BroadcastIndex(s.out, s.a, i));
          double y = GetD(b, BroadcastIndex(s.out, s.b, i));
          ref[size_t(i)] = ps == "eq" ? x == y : ps == "ne" ? x != y : ps == "lt" ? x < y
                         : ps == "le" ? x <= y : ps == "gt" ? x > y : x >= y;
        }
        ExpectExact(h.Result(), ref, "compare " + ps + " " + Name(t) + " " + Str(s.a));
      }
    }
  }
  // NaN compares unequal to everything.
  const float nan = std::nanf("");
  for (const char* p : preds) {
    KernelHarness h("compare");
    h.In(HostTensor::Of<float>(KILN_DTYPE_F32, {2}, {nan, 1.f}))
        .In(HostTensor::Of<float>(KILN_DTYPE_F32, {2}, {nan, nan}))
        .Out(KILN_DTYPE_I1, {2})
        .AttrS("predicate", p);
    ASSERT_EQ(h.RunMessage(), "");
    uint8_t expect = std::string(p) == "ne";
    EXPECT_EQ(h.Result().values<uint8_t>(), (std::vector<uint8_t>{expect, expect})) << p;
  }
  KernelHarness h("compare");
  h.In(Random(KILN_DTYPE_F32, {2}, 1)).In(Random(KILN_DTYPE_F32, {2}, 2)).Out(KILN_DTYPE_I1, {2}).AttrS("predicate", "lte");
  EXPECT_NE(h.RunMessage().find("unknown predicate 'lte'"), std::string::npos);
}

TEST(ElementwiseSelect, ThreeWayBroadcast) {
  struct Case {
    Dims c, t, f, out;
  };
  const std::vector<Case> cases = {
      {{2, 3}, {2, 3}, {2, 3}, {2, 3}},
      {{1, 1, 4, 4}, {}, {}, {1, 1, 4, 4}},
      {{4, 4}, {2, 1, 4}, {}, {2, 4, 4}},
      {{3, 1}, {1, 5}, {3, 5}, {3, 5}},
      {{2, 1, 3}, {1, 4, 1}, {2, 4, 3}, {2, 4, 3}},
      {{0, 3}, {3}, {1}, {0, 3}},
      {{64, 1024}, {64, 1024}, {}, {64, 1024}},
      {{64, 1024}, {}, {64, 1024}, {64, 1024}},
  };
  uint32_t seed = 21;
  for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_I64, KILN_DTYPE_U8,
                         KILN_DTYPE_I1, KILN_DTYPE_F8E4M3FN, KILN_DTYPE_F64, KILN_DTYPE_I4}) {
    for (const Case& k : cases) {
      HostTensor c = Random(KILN_DTYPE_I1, k.c, seed++);
      HostTensor a = Random(t, k.t, seed++), b = Random(t, k.f, seed++);
      KernelHarness h("select", 4);
      h.In(c).In(a).In(b).Out(t, k.out);
      std::string what = "select " + Name(t) + " " + Str(k.c) + Str(k.t) + Str(k.f);
      ASSERT_EQ(h.RunMessage(), "") << what;
      std::vector<double> ref(static_cast<size_t>(k.out.numel()));
      for (int64_t i = 0; i < k.out.numel(); ++i)
        ref[size_t(i)] = GetD(c, BroadcastIndex(k.out, k.c, i)) != 0
                             ? GetD(a, BroadcastIndex(k.out, k.t, i))
                             : GetD(b, BroadcastIndex(k.out, k.f, i));
      ExpectExact(h.Result(), ref, what);
    }
  }
  KernelHarness h("select");
  h.In(Random(KILN_DTYPE_F32, {2}, 1)).In(Random(KILN_DTYPE_F32, {2}, 2)).In(Random(KILN_DTYPE_F32, {2}, 3)).Out(KILN_DTYPE_F32, {2});
  EXPECT_NE(h.RunMessage().find("condition must be i1, found f32"), std::string::npos);
  KernelHarness h2("select");
  h2.In(Random(KILN_DTYPE_I1, {2, 3}, 1)).In(Random(KILN_DTYPE_F32, {3}, 2)).In(Random(KILN_DTYPE_F32, {2, 2}, 3)).Out(KILN_DTYPE_F32, {2, 3});
  EXPECT_NE(h2.RunMessage().find("condition [2, 3], on_true [3] and on_false [2, 2] shapes are not broadcastable"),
            std::string::npos);
}

//===----------------------------------------------------------------------===//
// Unary math and activations
//===----------------------------------------------------------------------===//

double RefUnary(const std::string& op, double x) {
  if (op == "neg") return -x;
  if (op == "abs") return std::fabs(x);
  if (op == "exp") return std::exp(x);
  if (op == "log") return std::log(x);
  if (op == "sqrt") return std::sqrt(x);
  if (op == "rsqrt") return 1 / std::sqrt(x);
  if (op == "reciprocal") return 1 / x;
  if (op == "tanh") return std::tanh(x);
  if (op == "sin") return std::sin(x);
  if (op == "cos") return std::cos(x);
  if (op == "erf") return std::erf(x);
  if (op == "relu") return std::max(x, 0.0);
  if (op == "sigmoid") return 1 / (1 + std::exp(-x));
  if (op == "silu") return x / (1 + std::exp(-x));
  if (op == "gelu") return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
  if (op == "gelu_tanh")
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
  return std::nan("");
}

void CheckUnary(const std::string& op, const std::string& kind, kiln_dtype_t t, Dims shape,
                int threads, uint32_t seed) {
  const bool positive = op == "log" || op == "sqrt" || op == "rsqrt";
  HostTensor x = Random(t, shape, seed, op == "exp" ? 4.0 : 6.0, positive);
  Dims declared = shape;
  if (declared.rank) declared[declared.rank - 1] = -1;
  KernelHarness h(op, threads);
  h.In(x).Out(t, declared);
  if (!kind.empty()) h.AttrS("kind", kind);
  const std::string name = kind.empty() ? op : kind;
  std::string what = name + " " + Name(t) + " " + Str(shape);
  ASSERT_EQ(h.RunMessage(), "") << what;
  std::vector<double> ref;
  for (double v : ToD(x)) ref.push_back(RefUnary(name, v));
  if (IsFloatType(t)) {
    const bool exact = name == "neg" || name == "abs" || name == "relu" || name == "sqrt" ||
                       name == "reciprocal";
    const double tol = exact ? RoundingTol(t) : MathTol(t);
    ExpectClose(h.Result(), ref, tol, tol * 1e-2, what);  // absolute term for zero crossings
  } else {
    ExpectExact(h.Result(), ref, what);
  }
}

TEST(ElementwiseUnary, FloatMath) {
  uint32_t seed = 31;
  for (std::string op : {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "reciprocal", "tanh",
                         "sin", "cos", "erf"})
    for (kiln_dtype_t t : kFloatTypes)
      for (Dims shape : {Dims{}, Dims{1}, Dims{3, 5}, Dims{2, 0, 3}, Dims{2, 3, 7}})
        CheckUnary(op, "", t, shape, 2, seed++);
}

TEST(ElementwiseUnary, IntegerNegAbs) {
  uint32_t seed = 41;
  for (std::string op : {"neg", "abs"})
    for (kiln_dtype_t t : kIntTypes) {
      HostTensor x = Random(t, {4, 5}, seed++);
      KernelHarness h(op);
      h.In(x).Out(t, {4, 5});
      ASSERT_EQ(h.RunMessage(), "");
      std::vector<double> ref;
      for (int64_t i = 0; i < 20; ++i) {
        __int128 v = GetI(x, i);
        ref.push_back(WrapInt(t, op == "neg" ? -v : (v < 0 ? -v : v)));
      }
      ExpectExact(h.Result(), ref, op + " " + Name(t));
    }
  KernelHarness h("abs");
  h.In(HostTensor::Of<int32_t>(KILN_DTYPE_I32, {2}, {INT32_MIN, -5})).Out(KILN_DTYPE_I32, {2});
  ASSERT_EQ(h.RunMessage(), "");
  EXPECT_EQ(h.Result().values<int32_t>(), (std::vector<int32_t>{INT32_MIN, 5}));
  KernelHarness e("exp");
  e.In(Random(KILN_DTYPE_I32, {2}, 1)).Out(KILN_DTYPE_I32, {2});
  EXPECT_NE(e.RunMessage().find("no exp kernel for element type i32"), std::string::npos);
}

TEST(ElementwiseUnary, Activations) {
  uint32_t seed = 51;
  for (std::string kind : {"relu", "silu", "gelu", "gelu_tanh", "sigmoid"})
    for (kiln_dtype_t t : kFloatTypes)
      for (Dims shape : {Dims{}, Dims{7}, Dims{3, 0}, Dims{4, 33}})
        CheckUnary("activation", kind, t, shape, 2, seed++);
  // Saturation at the ends stays finite.
  KernelHarness h("activation");
  h.In(HostTensor::Of<float>(KILN_DTYPE_F32, {4}, {-1000.f, 1000.f, -90.f, 90.f}))
      .Out(KILN_DTYPE_F32, {4})
      .AttrS("kind", "silu");
  ASSERT_EQ(h.RunMessage(), "");
  auto v = h.Result().values<float>();
  EXPECT_EQ(v[0], -0.f);
  EXPECT_EQ(v[1], 1000.f);
  EXPECT_EQ(v[3], 90.f);
  KernelHarness bad("activation");
  bad.In(Random(KILN_DTYPE_F32, {2}, 1)).Out(KILN_DTYPE_F32, {2}).AttrS("kind", "swish");
  EXPECT_NE(bad.RunMessage().find("unknown activation kind 'swish'"), std::string::npos);
}

TEST(ElementwiseUnary, LargeThreaded) {
  uint32_t seed = 61;
  for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_BF16}) {
    CheckUnary("exp", "", t, {300, 1000}, 4, seed++);
    CheckUnary("activation", "silu", t, {300, 1000}, 4, seed++);
    CheckUnary("neg", "", t, {300, 1000}, 4, seed++);
  }
}

//===----------------------------------------------------------------------===//
// Cast
//===----------------------------------------------------------------------===//

const kiln_dtype_t kAllByteTypes[] = {
    KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16, KILN_DTYPE_BF16, KILN_DTYPE_F8E4M3FN,
    KILN_DTYPE_F8E5M2, KILN_DTYPE_I1, KILN_DTYPE_I8, KILN_DTYPE_U8, KILN_DTYPE_I16,
    KILN_DTYPE_U16, KILN_DTYPE_I32, KILN_DTYPE_U32, KILN_DTYPE_I64, KILN_DTYPE_U64};

// The value of `code` in narrow float type t.
double DecodeNarrow(kiln_dtype_t t, uint32_t code) {
  switch (t) {
    case KILN_DTYPE_F16: return HalfToFloat(uint16_t(code));
    case KILN_DTYPE_BF16: return BF16ToFloat(uint16_t(code));
    case KILN_DTYPE_F8E4M3FN: return F8E4M3FNToFloat(uint8_t(code));
    default: return F8E5M2ToFloat(uint8_t(code));
  }
}

// The reference for one cast element: the nearest value of a narrow float
// found by searching codes (ties to the even code), saturating for f8;
// truncation with saturation for float -> int; wrapping for int -> int.
double RefCast(kiln_dtype_t from, kiln_dtype_t to, double v, int64_t iv) {
  if (to == KILN_DTYPE_I1) return v != 0 || std::isnan(v);
  if (to == KILN_DTYPE_F64) return v;
  if (to == KILN_DTYPE_F32) return double(float(v));
  if (IsFloatType(to)) {
    const bool f8 = to == KILN_DTYPE_F8E4M3FN || to == KILN_DTYPE_F8E5M2;
    if (std::isnan(v)) return v;
    if (std::isinf(v))  // f8 saturates (ONNX saturate=1), f16 / bf16 keep it
      return !f8 ? v : std::copysign(to == KILN_DTYPE_F8E4M3FN ? 448.0 : 57344.0, v);
    const uint32_t codes = f8 ? 0x80 : 0x8000;
    double best = 0, best_err = INFINITY;
    uint32_t best_code = 0;
    for (uint32_t c = 0; c < codes; ++c) {  // positive codes, ascending
      double d = DecodeNarrow(to, c);
      if (std::isnan(d)) continue;
      if (std::isinf(d)) {
        // IEEE formats overflow to infinity past max + half an ulp.
        if (std::fabs(v) >= 65520.0 && to == KILN_DTYPE_F16) best = INFINITY, best_err = 0;
        continue;
      }
      double err = std::fabs(std::fabs(v) - d);
      if (err < best_err || (err == best_err && (c & 1) == 0)) {
        best = d, best_err = err, best_code = c;
      }
    }
    (void)best_code;
    if (to == KILN_DTYPE_BF16 && std::fabs(v) > 3.3961e38) best = INFINITY;
    return v < 0 ? -best : best;
  }
  // Integer results.
  const int bits = IntBits(to);
  if (IsFloatType(from)) {
    if (std::isnan(v)) return 0;
    double tv = std::trunc(v);
    double lo = IsSignedInt(to) ? -std::ldexp(1.0, bits - 1) : 0;
    double hi = IsSignedInt(to) ? std::ldexp(1.0, bits - 1) - 1 : std::ldexp(1.0, bits) - 1;
    return std::clamp(tv, lo, hi);
  }
  return WrapInt(to, from == KILN_DTYPE_U64 ? __int128(uint64_t(iv)) : __int128(iv));
}

TEST(ElementwiseCast, AllPairs) {
  // Values with fractions, signs, ties and out-of-range magnitudes; each
  // source keeps those it can represent.
  std::vector<double> pool = {1, -1, 0.5, -2.75, 3.5, 2.5, -2.5, 100.25, -7, 127, 128,
                              255, 256, -129, 1000.75, 65504, 70000, -40000, 1e10,
                              -3e9, 4294967295.0, 1.0 / 3, 448, 500, 57344, 1e-3, -0.0,
                              0, 1.0009765625, 1.00048828125, 1.5e-5};
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> d(-300, 300);
  for (int i = 0; i < 64; ++i) pool.push_back(d(rng));
  for (kiln_dtype_t from : kAllByteTypes) {
    std::vector<double> vals;
    for (double v : pool) {
      HostTensor one(from, {1});
      SetD(one, 0, v);
      if (from == KILN_DTYPE_I1 ? (v == 0 || v == 1) : GetD(one, 0) == v) vals.push_back(v);
      if (IsFloatType(from) && GetD(one, 0) != v && std::isfinite(GetD(one, 0)) &&
          !std::isnan(GetD(one, 0)))
        vals.push_back(GetD(one, 0));  // its rounded neighbour instead
    }
    if (IsFloatType(from)) {
      vals.push_back(std::nan(""));
      if (from != KILN_DTYPE_F8E4M3FN) vals.push_back(-INFINITY);
    }
    const Dims shape{int64_t(vals.size())};
    HostTensor x = FromD(from, shape, vals);
    for (kiln_dtype_t to : kAllByteTypes) {
      KernelHarness h("cast");
      h.In(x).Out(to, {-1});
      std::string what = "cast " + Name(from) + " -> " + Name(to);
      ASSERT_EQ(h.RunMessage(), "") << what;
      std::vector<double> ref;
      for (int64_t i = 0; i < shape.numel(); ++i)
        ref.push_back(RefCast(from, to, GetD(x, i), GetI(x, i)));
      ExpectExact(h.Result(), ref, what);
    }
  }
}

TEST(ElementwiseCast, DoubleRoundingAvoided) {
  // 1 + 2^-11 + 2^-40 in f64: the nearest f16 is 1 + 2^-10, but rounding
  // through f32 first gives the tie 1 + 2^-11 and then 1.
  const double v = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  KernelHarness h("cast");
  h.In(HostTensor::Of<double>(KILN_DTYPE_F64, {1}, {v})).Out(KILN_DTYPE_F16, {1});
  ASSERT_EQ(h.RunMessage(), "");
  EXPECT_EQ(h.Result().values<uint16_t>()[0], FloatToHalf(1.0f + std::ldexp(1.0f, -10)));
  // The same through a 64-bit integer into bf16: 2^40 + 2^32 + 1 rounds up.
  const int64_t i = (int64_t(1) << 40) + (int64_t(1) << 32) + 1;
  KernelHarness g("cast");
  g.In(HostTensor::Of<int64_t>(KILN_DTYPE_I64, {1}, {i})).Out(KILN_DTYPE_BF16, {1});
  ASSERT_EQ(g.RunMessage(), "");
  EXPECT_EQ(BF16ToFloat(g.Result().values<uint16_t>()[0]), std::ldexp(1.0f, 40) * (1 + 1.0f / 128));
}

TEST(ElementwiseCast, FourBitAndLarge) {
  // Into 4 bits values wrap (ONNX's node tests: -9 -> i4 7); i4 -> f32
  // reads signed nibbles; odd rows pack.
  HostTensor x = HostTensor::Of<int8_t>(KILN_DTYPE_I8, {2, 3}, {-9, -8, 7, 8, 0, -1});
  KernelHarness h("cast");
  h.In(x).Out(KILN_DTYPE_I4, {2, 3});
  ASSERT_EQ(h.RunMessage(), "");
  ExpectExact(h.Result(), {7, -8, 7, -8, 0, -1}, "i8 -> i4");
  EXPECT_EQ(h.Result().bytes.size(), 4u);
  KernelHarness back("cast");
  back.In(h.Result()).Out(KILN_DTYPE_F32, {2, 3});
  ASSERT_EQ(back.RunMessage(), "");
  ExpectExact(back.Result(), {7, -8, 7, -8, 0, -1}, "i4 -> f32");
  // ONNX's test_cast_FLOAT_to_UINT4 data: -9..15 wrap modulo 16.
  std::vector<float> in;
  std::vector<double> want_u4, want_i4;
  for (int v = -9; v <= 15; ++v) {
    in.push_back(float(v));
    want_u4.push_back((v + 16) % 16);
    want_i4.push_back(((v + 16) % 16) >= 8 ? ((v + 16) % 16) - 16 : (v + 16) % 16);
  }
  in.push_back(9.7f);  // truncates toward zero first
  want_u4.push_back(9);
  want_i4.push_back(-7);
  for (auto [to, want] : {std::pair<kiln_dtype_t, std::vector<double>*>{KILN_DTYPE_U4, &want_u4},
                          {KILN_DTYPE_I4, &want_i4}}) {
    KernelHarness u("cast");
    u.In(HostTensor::Of<float>(KILN_DTYPE_F32, {int64_t(in.size())}, in)).Out(to, {-1});
    ASSERT_EQ(u.RunMessage(), "");
    ExpectExact(u.Result(), *want, "f32 -> " + Name(to));
  }
  // Threads.
  HostTensor big = Random(KILN_DTYPE_F32, {256, 1024}, 9, 100.0);
  for (kiln_dtype_t to : {KILN_DTYPE_BF16, KILN_DTYPE_I32, KILN_DTYPE_F8E4M3FN}) {
    KernelHarness c("cast", 4);
    c.In(big).Out(to, {256, 1024});
    ASSERT_EQ(c.RunMessage(), "");
    std::vector<double> ref;
    for (int64_t i = 0; i < big.shape.numel(); ++i) {
      HostTensor one(to, {1});
      double v = GetD(big, i);
      if (to == KILN_DTYPE_I32) ref.push_back(std::trunc(v));
      else ref.push_back((SetD(one, 0, v), GetD(one, 0)));
    }
    ExpectExact(c.Result(), ref, "threaded cast to " + Name(to));
  }
}

//===----------------------------------------------------------------------===//
// Trilu
//===----------------------------------------------------------------------===//

TEST(ElementwiseTrilu, UpperLowerDiagonals) {
  uint32_t seed = 71;
  for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_I64, KILN_DTYPE_F16, KILN_DTYPE_I1,
                         KILN_DTYPE_U4})
    for (Dims shape : {Dims{3, 4}, Dims{2, 5, 3}, Dims{4, 4}, Dims{1, 1}, Dims{0, 3}, Dims{2, 3, 0}})
      for (int64_t diag : {int64_t(-5), int64_t(-1), int64_t(0), int64_t(1), int64_t(2),
                           int64_t(6), INT64_MAX, INT64_MIN})
        for (bool upper : {false, true}) {
          HostTensor x = Random(t, shape, seed++);
          KernelHarness h("trilu");
          h.In(x).Out(t, shape).Attr("diagonal", diag);
          if (upper) h.Flag("upper");
          std::string what = "trilu " + Name(t) + Str(shape) + " diag " + std::to_string(diag) +
                             (upper ? " upper" : " lower");
          ASSERT_EQ(h.RunMessage(), "") << what;
          std::vector<double> ref = ToD(x);
          const int64_t m = shape.back(1), n = shape.back();
          for (int64_t i = 0; i < shape.numel(); ++i) {
            __int128 r = (i / n) % m, c = i % n;
            bool keep = upper ? c - r >= diag : c - r <= diag;
            if (!keep) ref[size_t(i)] = 0;
          }
          ExpectExact(h.Result(), ref, what);
        }
  KernelHarness h("trilu");
  h.In(Random(KILN_DTYPE_F32, {4}, 1)).Out(KILN_DTYPE_F32, {4});
  EXPECT_NE(h.RunMessage().find("rank >= 2, found shape [4]"), std::string::npos);
  // Causal mask size, threaded.
  HostTensor big = Random(KILN_DTYPE_F32, {2, 512, 512}, 3);
  KernelHarness b("trilu", 4);
  b.In(big).Out(KILN_DTYPE_F32, {-1, 512, 512}).Attr("diagonal", 1).Flag("upper");
  ASSERT_EQ(b.RunMessage(), "");
  std::vector<double> ref = ToD(big);
  for (int64_t i = 0; i < big.shape.numel(); ++i)
    if (i % 512 - (i / 512) % 512 < 1) ref[size_t(i)] = 0;
  ExpectExact(b.Result(), ref, "threaded trilu");
}

//===----------------------------------------------------------------------===//
// Cumsum
//===----------------------------------------------------------------------===//

std::vector<double> RefCumsum(const HostTensor& x, int axis, bool exclusive, bool reverse) {
  const Dims& s = x.shape;
  int64_t O = 1, N = s[axis], I = 1;
  for (int d = 0; d < axis; ++d) O *= s[d];
  for (int d = axis + 1; d < s.rank; ++d) I *= s[d];
  std::vector<double> ref(static_cast<size_t>(s.numel()));
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i) {
      double acc = 0;
      for (int64_t k = 0; k < N; ++k) {
        int64_t a = reverse ? N - 1 - k : k;
        int64_t at = (o * N + a) * I + i;
        double v = GetD(x, at);
        if (exclusive) ref[size_t(at)] = acc;
        acc += v;
        if (!exclusive) ref[size_t(at)] = acc;
      }
    }
  return ref;
}

TEST(ElementwiseCumsum, AxesFlagsTypes) {
  uint32_t seed = 81;
  for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16, KILN_DTYPE_BF16,
                         KILN_DTYPE_I32, KILN_DTYPE_I64, KILN_DTYPE_I8})
    for (Dims shape : {Dims{5}, Dims{3, 4, 5}, Dims{2, 0, 3}, Dims{1, 6}})
      for (int axis = -shape.rank; axis < shape.rank; ++axis)
        for (int flags = 0; flags < 4; ++flags) {
          HostTensor x = Random(t, shape, seed++, 2.0);
          if (t == KILN_DTYPE_I8)  // keep sums in range
            for (int64_t i = 0; i < shape.numel(); ++i) SetD(x, i, GetD(x, i) > 0 ? 3 : -2);
          KernelHarness h("cumsum");
          h.In(x).Out(t, shape).Attr("axis", axis);
          if (flags & 1) h.Flag("exclusive");
          if (flags & 2) h.Flag("reverse");
          std::string what = "cumsum " + Name(t) + Str(shape) + " axis " + std::to_string(axis) +
                             " flags " + std::to_string(flags);
          ASSERT_EQ(h.RunMessage(), "") << what;
          auto ref = RefCumsum(x, axis < 0 ? axis + shape.rank : axis, flags & 1, flags & 2);
          ExpectClose(h.Result(), ref, RoundingTol(t), 1e-6, what);
        }
  // Position ids from a mask, threaded, both layouts.
  for (auto [shape, axis] : {std::pair<Dims, int>{{64, 4096}, 1}, {{4096, 64}, 0}}) {
    HostTensor x = Random(KILN_DTYPE_I64, shape, 5);
    KernelHarness h("cumsum", 4);
    h.In(x).Out(KILN_DTYPE_I64, {-1, -1}).Attr("axis", axis);
    ASSERT_EQ(h.RunMessage(), "");
    ExpectExact(h.Result(), RefCumsum(x, axis, false, false), "threaded cumsum");
  }
  KernelHarness h("cumsum");
  h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).Out(KILN_DTYPE_F32, {2, 3}).Attr("axis", 2);
  EXPECT_NE(h.RunMessage().find("axis 2 is out of range for input shape [2, 3]"), std::string::npos);
}

//===----------------------------------------------------------------------===//
// Reduce
//===----------------------------------------------------------------------===//

// Reference reduction in double (integers in __int128 then wrapped).
std::vector<double> RefReduce(const HostTensor& x, const std::string& kind,
                              const std::vector<int>& axes, Dims* out_shape, bool keep) {
  const Dims& s = x.shape;
  bool red[kMaxRank] = {};
  for (int a : axes) red[a] = true;
  Dims out;
  for (int d = 0; d < s.rank; ++d)
    if (!red[d]) out.push_back(s[d]);
    else if (keep) out.push_back(1);
  *out_shape = out;
  // Index of each input element's result (with reduced dims dropped).
  Dims kept;
  for (int d = 0; d < s.rank; ++d)
    if (!red[d]) kept.push_back(s[d]);
  const int64_t n_out = kept.numel();
  const bool is_int = !IsFloatType(x.dtype);
  std::vector<double> acc(static_cast<size_t>(n_out));
  std::vector<__int128> iacc(static_cast<size_t>(n_out));
  std::vector<int64_t> count(static_cast<size_t>(n_out), 0);
  double init = kind == "prod" ? 1 : kind == "max" ? -INFINITY : kind == "min" ? INFINITY : 0;
  std::fill(acc.begin(), acc.end(), init);
  std::fill(iacc.begin(), iacc.end(), kind == "prod" ? 1 : 0);
  for (int64_t i = 0; i < s.numel(); ++i) {
    int64_t rem = i, o = 0, stride = 1;
    for (int d = s.rank - 1; d >= 0; --d) {
      int64_t id = rem % s[d];
      rem /= s[d];
      if (!red[d]) o += id * stride, stride *= s[d];
    }
    double v = GetD(x, i);
    if (kind == "sum" || kind == "mean") acc[size_t(o)] += v, iacc[size_t(o)] += GetI(x, i);
    if (kind == "prod") acc[size_t(o)] *= v, iacc[size_t(o)] *= GetI(x, i);
    if (kind == "max") acc[size_t(o)] = std::max(acc[size_t(o)], v);
    if (kind == "min") acc[size_t(o)] = std::min(acc[size_t(o)], v);
    ++count[size_t(o)];
  }
  std::vector<double> ref(static_cast<size_t>(n_out));
  for (int64_t o = 0; o < n_out; ++o) {
    if (!is_int) {
      ref[size_t(o)] = kind == "mean" ? acc[size_t(o)] / double(count[size_t(o)]) : acc[size_t(o)];
    } else if (kind == "max" || kind == "min") {
      if (count[size_t(o)] == 0) {
        const int bits = IntBits(x.dtype);
        bool sg = IsSignedInt(x.dtype);
        ref[size_t(o)] = kind == "max" ? (sg ? -std::ldexp(1.0, bits - 1) : 0)
                                       : (sg ? std::ldexp(1.0, bits - 1) - 1 : std::ldexp(1.0, bits) - 1);
      } else {
        ref[size_t(o)] = acc[size_t(o)];
      }
    } else if (kind == "mean") {
      ref[size_t(o)] = count[size_t(o)] ? WrapInt(x.dtype, iacc[size_t(o)] / count[size_t(o)]) : 0;
    } else {
      ref[size_t(o)] = WrapInt(x.dtype, iacc[size_t(o)]);
    }
  }
  return ref;
}

void CheckReduce(kiln_dtype_t t, Dims shape, const std::string& kind, std::vector<int64_t> axes,
                 bool keep, int threads, uint32_t seed) {
  HostTensor x = Random(t, shape, seed);
  if (kind == "prod") {  // values near 1 keep products in range
    std::mt19937 rng(seed);
    for (int64_t i = 0; i < shape.numel(); ++i)
      SetD(x, i, IsFloatType(t) ? 0.9 + 0.2 * (rng() % 1000) / 1000.0
                                : double(int(rng() % 3) - 1 == 0 ? 2 : int(rng() % 2) + 1));
  }
  std::vector<int> norm;
  for (int64_t a : axes) norm.push_back(int(a < 0 ? a + shape.rank : a));
  Dims out;
  std::vector<double> ref = RefReduce(x, kind, norm, &out, keep);
  Dims declared = out;
  for (int d = 0; d < declared.rank; ++d)
    if (d % 2 == 0) declared[d] = -1;
  KernelHarness h("reduce", threads);
  h.In(x).Out(t, declared).AttrS("kind", kind).AttrInts("axes", axes);
  if (keep) h.Flag("keep_dims");
  std::string what = "reduce " + kind + " " + Name(t) + Str(shape) + " axes";
  for (int64_t a : axes) what += " " + std::to_string(a);
  ASSERT_EQ(h.RunMessage(), "") << what;
  ASSERT_EQ(h.Result().shape, out) << what;
  if (IsFloatType(t))
    ExpectClose(h.Result(), ref, t == KILN_DTYPE_F32 ? 1e-6 : RoundingTol(t), 1e-6, what);
  else
    ExpectExact(h.Result(), ref, what);
}

TEST(ElementwiseReduce, KindsAxesTypes) {
  uint32_t seed = 91;
  const std::vector<std::vector<int64_t>> axis_sets = {{0}, {-1}, {1}, {0, 2}, {2, 0}, {0, 1, 2}, {1, 2}};
  for (std::string kind : {"sum", "mean", "max", "min", "prod"})
    for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16, KILN_DTYPE_BF16,
                           KILN_DTYPE_I32, KILN_DTYPE_I64, KILN_DTYPE_U8, KILN_DTYPE_I16})
      for (const auto& axes : axis_sets)
        for (bool keep : {false, true}) {
          CheckReduce(t, {3, 4, 5}, kind, axes, keep, 2, seed++);
          CheckReduce(t, {2, 1, 6}, kind, axes, keep, 2, seed++);
        }
}

TEST(ElementwiseReduce, EmptyAndSizeOne) {
  uint32_t seed = 191;
  for (std::string kind : {"sum", "mean", "max", "min", "prod"})
    for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_I32, KILN_DTYPE_U8, KILN_DTYPE_F16}) {
      CheckReduce(t, {3, 0, 2}, kind, {1}, false, 2, seed++);  // empty reductions
      CheckReduce(t, {3, 0, 2}, kind, {0}, true, 2, seed++);   // empty result
      CheckReduce(t, {3, 1, 2}, kind, {1}, false, 2, seed++);  // a copy
    }
}

TEST(ElementwiseReduce, LargeAndThreaded) {
  // Long rows take the chunked path; results do not depend on threads.
  uint32_t seed = 291;
  for (std::string kind : {"sum", "mean", "max"}) {
    CheckReduce(KILN_DTYPE_F32, {8, 100000}, kind, {1}, false, 4, seed++);
    CheckReduce(KILN_DTYPE_F32, {100000, 8}, kind, {0}, true, 4, seed++);
    CheckReduce(KILN_DTYPE_F32, {300000}, kind, {0}, false, 4, seed++);
    CheckReduce(KILN_DTYPE_BF16, {64, 70, 64}, kind, {0, 2}, false, 4, seed++);
    CheckReduce(KILN_DTYPE_I64, {40000, 3}, kind, {0}, false, 4, seed++);
  }
  HostTensor x = Random(KILN_DTYPE_F32, {3, 50000}, 7);
  std::vector<float> first;
  for (int threads : {1, 2, 4}) {
    KernelHarness h("reduce", threads);
    h.In(x).Out(KILN_DTYPE_F32, {3}).AttrS("kind", "sum").AttrInts("axes", {1});
    ASSERT_EQ(h.RunMessage(), "");
    if (first.empty()) first = h.Result().values<float>();
    EXPECT_EQ(h.Result().values<float>(), first) << threads << " threads";
  }
}

TEST(ElementwiseReduce, Errors) {
  auto run = [](std::vector<int64_t> axes, std::string kind) {
    KernelHarness h("reduce");
    h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).Out(KILN_DTYPE_F32, {-1}).AttrS("kind", kind).AttrInts("axes", axes);
    return h.RunMessage();
  };
  EXPECT_NE(run({2}, "sum").find("axis 2 is out of range for input shape [2, 3]"), std::string::npos);
  EXPECT_NE(run({1, -1}, "sum").find("axis -1 is listed twice"), std::string::npos);
  EXPECT_NE(run({}, "sum").find("needs at least one axis"), std::string::npos);
  EXPECT_NE(run({1}, "avg").find("unknown reduction 'avg'"), std::string::npos);
}

//===----------------------------------------------------------------------===//
// Softmax
//===----------------------------------------------------------------------===//

std::vector<double> RefSoftmax(const HostTensor& x, int axis) {
  const Dims& s = x.shape;
  int64_t O = 1, A = s.rank ? s[axis] : 1, I = 1;
  for (int d = 0; d < axis; ++d) O *= s[d];
  for (int d = axis + 1; d < s.rank; ++d) I *= s[d];
  std::vector<double> ref(static_cast<size_t>(s.numel()));
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i) {
      double m = -INFINITY, sum = 0;
      for (int64_t a = 0; a < A; ++a) m = std::max(m, GetD(x, (o * A + a) * I + i));
      for (int64_t a = 0; a < A; ++a) sum += std::exp(GetD(x, (o * A + a) * I + i) - m);
      for (int64_t a = 0; a < A; ++a) {
        int64_t at = (o * A + a) * I + i;
        ref[size_t(at)] = std::exp(GetD(x, at) - m) / sum;
      }
    }
  return ref;
}

TEST(ElementwiseSoftmax, AxesTypesMasks) {
  uint32_t seed = 301;
  for (kiln_dtype_t t : kFloatTypes)
    for (auto [shape, axis] : {std::pair<Dims, int>{{4, 10}, -1}, {{3, 4, 5}, 1}, {{2, 3}, 0},
                               {{2, 3, 17}, -1}, {{0, 5}, -1}, {{5}, 0}, {{}, -1}, {{3, 1}, 1}}) {
      HostTensor x = Random(t, shape, seed++, 8.0);
      KernelHarness h("softmax");
      h.In(x).Out(t, shape).Attr("axis", axis);
      std::string what = "softmax " + Name(t) + Str(shape) + " axis " + std::to_string(axis);
      ASSERT_EQ(h.RunMessage(), "") << what;
      ExpectClose(h.Result(), RefSoftmax(x, shape.rank ? (axis + shape.rank) % shape.rank : 0),
                  MathTol(t), 1e-7, what);
    }
  // Masked entries (-inf) get 0; a fully masked row is NaN, as the formula.
  const float ninf = -INFINITY;
  KernelHarness h("softmax");
  h.In(HostTensor::Of<float>(KILN_DTYPE_F32, {2, 3}, {0.f, ninf, 0.f, ninf, ninf, ninf}))
      .Out(KILN_DTYPE_F32, {2, 3});
  ASSERT_EQ(h.RunMessage(), "");
  auto v = h.Result().values<float>();
  EXPECT_EQ(v[0], 0.5f);
  EXPECT_EQ(v[1], 0.f);
  EXPECT_TRUE(std::isnan(v[3]));
  KernelHarness bad("softmax");
  bad.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).Out(KILN_DTYPE_F32, {2, 3}).Attr("axis", -3);
  EXPECT_NE(bad.RunMessage().find("axis -3 is out of range for input shape [2, 3]"), std::string::npos);
  KernelHarness bad2("softmax");
  bad2.In(Random(KILN_DTYPE_I32, {2}, 1)).Out(KILN_DTYPE_I32, {2});
  EXPECT_NE(bad2.RunMessage().find("no softmax kernel for element type i32"), std::string::npos);
}

TEST(ElementwiseSoftmax, LargeThreaded) {
  uint32_t seed = 401;
  for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_BF16})
    for (auto [shape, axis] : {std::pair<Dims, int>{{2, 50000}, -1}, {{64, 2048}, -1},
                               {{4, 512, 96}, 1}}) {
      HostTensor x = Random(t, shape, seed++, 10.0);
      KernelHarness h("softmax", 4);
      h.In(x).Out(t, shape).Attr("axis", axis);
      ASSERT_EQ(h.RunMessage(), "");
      ExpectClose(h.Result(), RefSoftmax(x, (axis + shape.rank) % shape.rank), MathTol(t), 1e-9,
                  "threaded softmax " + Name(t) + Str(shape));
    }
}

//===----------------------------------------------------------------------===//
// Fused elementwise programs (kiln.elementwise)
//===----------------------------------------------------------------------===//

// A program under construction: Emit appends one instruction and returns the
// register it writes.
struct EwProgram {
  explicit EwProgram(int64_t inputs) : inputs(inputs) {}
  int64_t Emit(int op, int64_t a, int64_t b = -1) {
    const int64_t dst = inputs + int64_t(code.size() / 4);
    code.insert(code.end(), {int64_t(op), dst, a, b});
    return dst;
  }
  int64_t Const(double v) {
    constants.push_back(v);
    return Emit(KILN_EW_CONST, int64_t(constants.size()) - 1);
  }

  int64_t inputs;
  std::vector<int64_t> code;
  std::vector<double> constants;
};

bool IsBinaryEw(int op) { return op >= KILN_EW_ADD && op <= KILN_EW_POW; }

// One opcode in double. The rounding opcodes are only used on values that
// are exact in f32 (inputs), so rounding the double through f32 is exact.
double RefEwOp(int op, double a, double b) {
  switch (op) {
    case KILN_EW_ADD: return a + b;
    case KILN_EW_SUB: return a - b;
    case KILN_EW_MUL: return a * b;
    case KILN_EW_DIV: return a / b;
    case KILN_EW_MAX: return std::max(a, b);
    case KILN_EW_MIN: return std::min(a, b);
    case KILN_EW_POW: return std::pow(a, b);
    case KILN_EW_NEG: return -a;
    case KILN_EW_ABS: return std::fabs(a);
    case KILN_EW_EXP: return std::exp(a);
    case KILN_EW_LOG: return std::log(a);
    case KILN_EW_SQRT: return std::sqrt(a);
    case KILN_EW_RSQRT: return 1 / std::sqrt(a);
    case KILN_EW_TANH: return std::tanh(a);
    case KILN_EW_SIN: return std::sin(a);
    case KILN_EW_COS: return std::cos(a);
    case KILN_EW_ERF: return std::erf(a);
    case KILN_EW_ROUND_BF16: return BF16ToFloat(FloatToBF16(float(a)));
    case KILN_EW_ROUND_F16: return HalfToFloat(FloatToHalf(float(a)));
  }
  return std::nan("");
}

// The program evaluated op by op in double on the broadcast inputs.
std::vector<double> RefEwProgram(const EwProgram& p, int64_t result,
                                 const std::vector<HostTensor>& ins, const Dims& out) {
  std::vector<double> ref(size_t(out.numel())), regs(ins.size() + p.code.size() / 4);
  for (int64_t e = 0; e < out.numel(); ++e) {
    for (size_t k = 0; k < ins.size(); ++k)
      regs[k] = GetD(ins[k], BroadcastIndex(out, ins[k].shape, e));
    for (size_t i = 0; i < p.code.size() / 4; ++i) {
      const int op = int(p.code[4 * i]);
      const int64_t a = p.code[4 * i + 2], b = p.code[4 * i + 3];
      regs[ins.size() + i] = op == KILN_EW_CONST
                                 ? double(float(p.constants[size_t(a)]))
                                 : RefEwOp(op, regs[size_t(a)], b >= 0 ? regs[size_t(b)] : 0);
    }
    ref[size_t(e)] = regs[size_t(result)];
  }
  return ref;
}

KernelHarness& SetEwProgram(KernelHarness& h, const EwProgram& p, int64_t result) {
  h.AttrInts("code", p.code).Attr("result", result);
  if (!p.constants.empty()) h.AttrFloats("constants", p.constants);
  return h;
}

// Fused results are computed in f32 and rounded once into `out_type`, so the
// tolerance is that of one f32 transcendental (1e-5) or of the final rounding
// (f16 1e-3, bf16 8e-3; half an ulp is 4.9e-4 and 3.9e-3), relative to the
// value. The absolute term, a tenth of it, covers results that cancel to
// near zero: their error is relative to the O(1) operands, not to the result.
void CheckEwProgram(const std::string& what, const EwProgram& p, int64_t result,
                    const std::vector<HostTensor>& ins, kiln_dtype_t out_type, Dims declared,
                    Dims expected, int threads = 2) {
  KernelHarness h("elementwise", threads);
  for (const HostTensor& t : ins) h.In(t);
  h.Out(out_type, declared);
  SetEwProgram(h, p, result);
  ASSERT_EQ(h.RunMessage(), "") << what;
  ASSERT_EQ(h.Result().shape, expected) << what;
  ASSERT_EQ(h.Result().dtype, out_type) << what;
  const double tol = MathTol(out_type);
  ExpectClose(h.Result(), RefEwProgram(p, result, ins, expected), tol, tol * 0.1, what);
}

const kiln_dtype_t kEwTypes[] = {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16};

TEST(ElementwiseFused, GemmaSoftCap) {
  // tanh(x / c) * c with c = 30; |x| up to 90 reaches tanh's saturation.
  uint32_t seed = 601;
  for (kiln_dtype_t t : kEwTypes) {
    EwProgram p(1);
    const int64_t c = p.Const(30.0);
    const int64_t r = p.Emit(KILN_EW_MUL, p.Emit(KILN_EW_TANH, p.Emit(KILN_EW_DIV, 0, c)), c);
    HostTensor x = Random(t, {2, 3, 50}, seed++, 90.0);
    CheckEwProgram("soft cap " + Name(t), p, r, {x}, t, {-1, 3, 50}, {2, 3, 50});
  }
}

TEST(ElementwiseFused, RopeTableBroadcastAndHigherDeclaredRank) {
  // cos(pos * inv_freq) * scale: positions [S, 1] times frequencies [8].
  uint32_t seed = 611;
  for (kiln_dtype_t t : kEwTypes)
    for (int op : {KILN_EW_COS, KILN_EW_SIN}) {
      EwProgram p(2);
      const int64_t r = p.Emit(KILN_EW_MUL, p.Emit(op, p.Emit(KILN_EW_MUL, 0, 1)), p.Const(0.75));
      HostTensor pos = Random(t, {16, 1}, seed++, 40.0, true);
      HostTensor freq = Random(t, {8}, seed++, 1.0, true);
      CheckEwProgram("rope table " + Name(t), p, r, {pos, freq}, t, {-1, 8}, {16, 8});
    }
  // The compiler folded a scalar operand into the program: the declared
  // result [1, 4, 8] has a higher rank than every input.
  for (kiln_dtype_t t : kEwTypes) {
    EwProgram p(2);
    const int64_t r = p.Emit(KILN_EW_ADD, p.Emit(KILN_EW_MUL, 0, 1), p.Const(-0.5));
    HostTensor a = Random(t, {4, 8}, seed++), b = Random(t, {8}, seed++);
    CheckEwProgram("declared rank 3 " + Name(t), p, r, {a, b}, t, {1, 4, 8}, {1, 4, 8});
    CheckEwProgram("declared rank 5 " + Name(t), p, r, {a, b}, t, {1, -1, 1, 4, -1},
                   {1, 1, 1, 4, 8});
  }
}

TEST(ElementwiseFused, EveryOpcode) {
  // Each opcode on its own (binary ones broadcasting [3, 5] x [5]) for every
  // input / result type pair, against the double reference.
  uint32_t seed = 621;
  for (int op = KILN_EW_ADD; op < KILN_EW_OPCODE_COUNT; ++op)
    for (kiln_dtype_t in : kEwTypes)
      for (kiln_dtype_t out : kEwTypes) {
        const bool positive = op == KILN_EW_LOG || op == KILN_EW_SQRT || op == KILN_EW_RSQRT ||
                              op == KILN_EW_POW;
        std::vector<HostTensor> ins = {Random(in, {3, 5}, seed++, 2.0, positive)};
        if (IsBinaryEw(op)) ins.push_back(Random(in, {5}, seed++, 2.0, false));
        EwProgram p(int64_t(ins.size()));
        const int64_t r = p.Emit(op, 0, IsBinaryEw(op) ? 1 : -1);
        CheckEwProgram(std::string("opcode ") + std::to_string(op) + " " + Name(in) + " -> " +
                           Name(out),
                       p, r, ins, out, {3, 5}, {3, 5});
      }
  // CONST, alone and feeding an op; an integral constants list (as the
  // manifest stores [2.0, 3.0]) reads as floats.
  for (kiln_dtype_t t : kEwTypes) {
    EwProgram p(1);
    const int64_t c = p.Const(-1.25);
    CheckEwProgram("const " + Name(t), p, c, {Random(t, {2, 3}, seed++)}, t, {2, 3}, {2, 3});
    const int64_t r = p.Emit(KILN_EW_SUB, c, 0);
    CheckEwProgram("const - x " + Name(t), p, r, {Random(t, {2, 3}, seed++)}, t, {2, 3},
                   {2, 3});
  }
  KernelHarness h("elementwise");
  h.In(HostTensor::Of<float>(KILN_DTYPE_F32, {2}, {1.5f, -2.f}))
      .Out(KILN_DTYPE_F32, {2})
      .AttrInts("code", {KILN_EW_CONST, 1, 0, -1, KILN_EW_MUL, 2, 0, 1})
      .AttrInts("constants", {3})
      .Attr("result", 2);
  ASSERT_EQ(h.RunMessage(), "");
  EXPECT_EQ(h.Result().values<float>(), (std::vector<float>{4.5f, -6.f}));
  // The result may be an input register: a copy, rounded to the result
  // type and padded to the declared rank.
  KernelHarness id("elementwise");
  id.In(HostTensor::Of<float>(KILN_DTYPE_F32, {2}, {1.f, 1.f + 1.f / 1024}))
      .Out(KILN_DTYPE_BF16, {1, 2})
      .AttrInts("code", {})
      .Attr("result", 0);
  ASSERT_EQ(id.RunMessage(), "");
  EXPECT_EQ(id.Result().shape, (Dims{1, 2}));
  EXPECT_EQ(id.Result().values<uint16_t>(), (std::vector<uint16_t>{0x3F80, 0x3F80}));
}

TEST(ElementwiseFused, LongChainMixedTypes) {
  // A chain touching most opcodes over three differently typed inputs:
  // sqrt(|a * b - c|) + exp(-a) * erf(c / 2) - max(a, c) ** 2 ...
  uint32_t seed = 631;
  for (kiln_dtype_t out : kEwTypes) {
    std::vector<HostTensor> ins = {Random(KILN_DTYPE_F32, {4, 1, 6}, seed++),
                                   Random(KILN_DTYPE_F16, {5, 6}, seed++),
                                   Random(KILN_DTYPE_BF16, {4, 5, 1}, seed++)};
    EwProgram p(3);
    const int64_t ab = p.Emit(KILN_EW_MUL, 0, 1);
    const int64_t root = p.Emit(KILN_EW_SQRT, p.Emit(KILN_EW_ABS, p.Emit(KILN_EW_SUB, ab, 2)));
    const int64_t e = p.Emit(KILN_EW_EXP, p.Emit(KILN_EW_NEG, 0));
    const int64_t erf = p.Emit(KILN_EW_ERF, p.Emit(KILN_EW_DIV, 2, p.Const(2.0)));
    const int64_t sum = p.Emit(KILN_EW_ADD, root, p.Emit(KILN_EW_MUL, e, erf));
    const int64_t sq = p.Emit(KILN_EW_POW, p.Emit(KILN_EW_ABS, p.Emit(KILN_EW_MAX, 0, 2)),
                              p.Const(2.0));
    const int64_t r = p.Emit(KILN_EW_MIN, p.Emit(KILN_EW_SUB, sum, sq), p.Const(1.0));
    CheckEwProgram("long chain -> " + Name(out), p, r, ins, out, {4, 5, 6}, {4, 5, 6});
  }
}

TEST(ElementwiseFused, ThreeDBroadcasts) {
  // A size-1 middle dimension, outer-product style broadcasts and a scalar
  // input; the results' static dimensions are checked against the declared.
  const std::vector<std::pair<std::vector<Dims>, Dims>> cases = {
      {{{4, 1, 6}, {4, 5, 6}}, {4, 5, 6}},
      {{{2, 1, 3}, {1, 7, 1}}, {2, 7, 3}},
      {{{3, 1, 1}, {1, 2, 5}, {}}, {3, 2, 5}},
      {{{1, 7, 1, 3}, {2, 1, 5, 1}, {5, 3}}, {2, 7, 5, 3}},
      {{{6, 1}, {1}, {6, 1}}, {6, 1}},
  };
  uint32_t seed = 641;
  for (const auto& [shapes, out] : cases)
    for (kiln_dtype_t t : kEwTypes) {
      std::vector<HostTensor> ins;
      for (const Dims& s : shapes) ins.push_back(Random(t, s, seed++));
      EwProgram p(int64_t(ins.size()));
      int64_t acc = 0;
      for (int64_t k = 1; k < int64_t(ins.size()); ++k)
        acc = p.Emit(k % 2 ? KILN_EW_SUB : KILN_EW_MUL, acc, k);
      const int64_t r = p.Emit(KILN_EW_TANH, acc);
      std::string what = "broadcast " + Name(t);
      for (const Dims& s : shapes) what += " " + Str(s);
      CheckEwProgram(what, p, r, ins, t, out, out);
    }
}

TEST(ElementwiseFused, LargeChunkedThreaded) {
  // Many chunks split across four threads: long rows whose length is no
  // multiple of the chunk, and short rows (a [N, 1] x [7] broadcast that no
  // merging makes contiguous), so that chunks start and end inside rows.
  const std::vector<std::pair<std::vector<Dims>, Dims>> cases = {
      {{{300, 1000}, {1000}, {300, 1}}, {300, 1000}},
      {{{257, 999}, {257, 999}, {1}}, {257, 999}},
      {{{9001, 1}, {7}, {9001, 7}}, {9001, 7}},
  };
  uint32_t seed = 651;
  for (const auto& [shapes, out] : cases)
    for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_BF16}) {
      std::vector<HostTensor> ins;
      for (const Dims& s : shapes) ins.push_back(Random(t, s, seed++));
      EwProgram p(3);
      // x * sigmoid-like(y) + z, written out in opcodes.
      const int64_t one = p.Const(1.0);
      const int64_t sig =
          p.Emit(KILN_EW_DIV, one, p.Emit(KILN_EW_ADD, one, p.Emit(KILN_EW_EXP, p.Emit(KILN_EW_NEG, 1))));
      const int64_t r = p.Emit(KILN_EW_ADD, p.Emit(KILN_EW_MUL, 0, sig), 2);
      CheckEwProgram("large " + Name(t) + " " + Str(out), p, r, ins, t, out, out, 4);
    }
}

TEST(ElementwiseFused, RoundingOpcodesAreExact) {
  // ROUND_BF16 / ROUND_F16 give exactly half.h's nearest-even rounding,
  // ties, subnormals, overflow and infinities included.
  std::vector<float> x = RandomFloats(4000, 661, -70000.f, 70000.f);
  for (float v : {BitsToFloat(0x3F808000), BitsToFloat(0x3F818000), 65519.f, 65520.f, 1e-9f,
                  -3e-5f, std::ldexp(1.f, -25), 3.4e38f, -INFINITY, INFINITY})
    x.push_back(v);
  for (int op : {KILN_EW_ROUND_BF16, KILN_EW_ROUND_F16}) {
    const Dims shape{int64_t(x.size())};
    KernelHarness h("elementwise");
    h.In(HostTensor::Of<float>(KILN_DTYPE_F32, shape, x)).Out(KILN_DTYPE_F32, shape);
    EwProgram p(1);
    SetEwProgram(h, p, p.Emit(op, 0));
    ASSERT_EQ(h.RunMessage(), "");
    const std::vector<float> got = h.Result().values<float>();
    for (size_t i = 0; i < x.size(); ++i) {
      const float want = op == KILN_EW_ROUND_BF16 ? BF16ToFloat(FloatToBF16(x[i]))
                                                  : HalfToFloat(FloatToHalf(x[i]));
      ASSERT_EQ(FloatBits(got[i]), FloatBits(want)) << "opcode " << op << " of " << x[i];
    }
  }
}

TEST(ElementwiseFused, RoundOnceVersusUnfused) {
  // bf16 x * y + z: the fused result rounds only once, while the unfused
  // mul and add kernels round the product too. With ROUND_BF16 after the
  // product the fused program reproduces the unfused chain bit for bit.
  uint32_t seed = 671;
  const Dims shape{64, 33};
  HostTensor x = Random(KILN_DTYPE_BF16, shape, seed++), y = Random(KILN_DTYPE_BF16, shape, seed++),
             z = Random(KILN_DTYPE_BF16, shape, seed++);
  KernelHarness mul("mul");
  mul.In(x).In(y).Out(KILN_DTYPE_BF16, shape);
  ASSERT_EQ(mul.RunMessage(), "");
  KernelHarness add("add");
  add.In(mul.Result()).In(z).Out(KILN_DTYPE_BF16, shape);
  ASSERT_EQ(add.RunMessage(), "");
  const std::vector<uint16_t> unfused = add.Result().values<uint16_t>();
  for (bool round : {false, true}) {
    EwProgram p(3);
    int64_t prod = p.Emit(KILN_EW_MUL, 0, 1);
    if (round) prod = p.Emit(KILN_EW_ROUND_BF16, prod);
    const int64_t r = p.Emit(KILN_EW_ADD, prod, 2);
    KernelHarness h("elementwise");
    h.In(x).In(y).In(z).Out(KILN_DTYPE_BF16, shape);
    SetEwProgram(h, p, r);
    ASSERT_EQ(h.RunMessage(), "");
    const std::vector<uint16_t> fused = h.Result().values<uint16_t>();
    size_t differ = 0;
    for (size_t i = 0; i < fused.size(); ++i) differ += fused[i] != unfused[i];
    if (round) {
      EXPECT_EQ(differ, 0u);
    } else {
      // Rounding once is closer to the exact value, so the results differ
      // in a few places (and both stay within tolerance).
      EXPECT_GT(differ, 0u);
      ExpectClose(h.Result(), RefEwProgram(p, r, {x, y, z}, shape), MathTol(KILN_DTYPE_BF16),
                  1e-3, "round once");
    }
  }
}

TEST(ElementwiseFused, MaxMinPropagateNaNAndEmpty) {
  const float nan = std::nanf("");
  for (int op : {KILN_EW_MAX, KILN_EW_MIN}) {
    KernelHarness h("elementwise");
    h.In(HostTensor::Of<float>(KILN_DTYPE_F32, {3}, {nan, 1.f, 2.f}))
        .In(HostTensor::Of<float>(KILN_DTYPE_F32, {3}, {1.f, nan, 3.f}))
        .Out(KILN_DTYPE_F32, {3});
    EwProgram p(2);
    SetEwProgram(h, p, p.Emit(op, 0, 1));
    ASSERT_EQ(h.RunMessage(), "");
    auto v = h.Result().values<float>();
    EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1])) << op;
    EXPECT_EQ(v[2], op == KILN_EW_MAX ? 3.f : 2.f);
  }
  // An empty result (no work) and a scalar one.
  EwProgram p(2);
  const int64_t r = p.Emit(KILN_EW_ADD, 0, 1);
  CheckEwProgram("empty", p, r, {Random(KILN_DTYPE_F16, {0, 3}, 1), Random(KILN_DTYPE_F16, {3}, 2)},
                 KILN_DTYPE_F16, {-1, 3}, {0, 3});
  CheckEwProgram("scalar", p, r, {Random(KILN_DTYPE_F32, {}, 3), Random(KILN_DTYPE_BF16, {}, 4)},
                 KILN_DTYPE_F32, {}, {});
}

TEST(ElementwiseFused, Errors) {
  // Runs a one-input program on an f32 [2, 3] tensor unless `setup` adds
  // its own operands; returns the message, which must be INVALID_ARGUMENT.
  auto run = [](std::vector<int64_t> code, int64_t result,
                const std::function<void(KernelHarness&)>& setup = nullptr) {
    KernelHarness h("elementwise");
    if (setup) {
      setup(h);
    } else {
      h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).Out(KILN_DTYPE_F32, {2, 3});
    }
    h.AttrInts("code", std::move(code)).Attr("result", result);
    kiln_status_t s = h.Run();
    if (!s) return std::string("no error");
    std::string m = kiln_status_message(s);
    EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT) << m;
    EXPECT_EQ(m.rfind("kiln.elementwise at 'test': ", 0), 0u) << m;
    kiln_status_free(s);
    return m;
  };
  auto has = [](const std::string& m, const std::string& part) {
    EXPECT_NE(m.find(part), std::string::npos) << "'" << m << "' lacks '" << part << "'";
  };
  has(run({KILN_EW_NEG, 1, 0, -1, 20, 2, 1, -1}, 2),
      "instruction 1: unknown opcode 20 (expected 0 to 19)");
  has(run({-3, 1, 0, -1}, 1), "instruction 0: unknown opcode -3");
  has(run({KILN_EW_NEG, 2, 0, -1}, 2),
      "instruction 0 (neg): writes register 2, expected 1 (instruction i writes register 1 + i)");
  has(run({KILN_EW_NEG, 1, 0, -1, KILN_EW_ADD, 2, 1, 2}, 2),
      "instruction 1 (add): operand b reads register 2, which is not defined before it "
      "(registers 0 to 1 are)");
  has(run({KILN_EW_EXP, 1, -1, -1}, 1), "instruction 0 (exp): operand a reads register -1");
  has(run({KILN_EW_SQRT, 1, 0, 0}, 1),
      "instruction 0 (sqrt): the unused operand b must be -1, found 0");
  has(run({KILN_EW_CONST, 1, 0, -1}, 1),
      "instruction 0 (const): constant index 0 is out of range (0 constants)");
  has(run({KILN_EW_CONST, 1, 1, -1}, 1,
          [](KernelHarness& h) {
            h.In(Random(KILN_DTYPE_F32, {2}, 1)).Out(KILN_DTYPE_F32, {2});
            h.AttrFloats("constants", {2.5});
          }),
      "constant index 1 is out of range (1 constants)");
  has(run({KILN_EW_NEG, 1, 0, -1}, 2),
      "result register 2 is out of range: registers 0 to 1 are defined (1 inputs, 1 "
      "instructions)");
  has(run({}, -1), "result register -1 is out of range");
  has(run({KILN_EW_NEG, 1, 0, -1, 3}, 1),
      "attribute 'code' has 5 entries, which is not a multiple of 4");
  has(run({KILN_EW_ADD, 2, 0, 1}, 2,
          [](KernelHarness& h) {
            h.In(Random(KILN_DTYPE_F32, {2, 3}, 1))
                .In(Random(KILN_DTYPE_F32, {4}, 2))
                .Out(KILN_DTYPE_F32, {-1, -1});
          }),
      "operand shapes [2, 3], [4] are not broadcastable");
  has(run({}, 0,
          [](KernelHarness& h) {
            h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).Out(KILN_DTYPE_F32, {3});
          }),
      "operand #0 has shape [2, 3], of a higher rank than the declared result [3]");
  has(run({}, 0,
          [](KernelHarness& h) {
            h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).Out(KILN_DTYPE_F32, {2, 4});
          }),
      "result shape [2, 3], declared [2, 4]");
  has(run({KILN_EW_ADD, 2, 0, 1}, 2,
          [](KernelHarness& h) {
            h.In(Random(KILN_DTYPE_F32, {2}, 1))
                .In(Random(KILN_DTYPE_I64, {2}, 2))
                .Out(KILN_DTYPE_F32, {2});
          }),
      "operand #1 has element type i64 (expected f32, f16 or bf16)");
  has(run({}, 0,
          [](KernelHarness& h) {
            h.In(Random(KILN_DTYPE_F32, {2}, 1)).Out(KILN_DTYPE_I32, {2});
          }),
      "result element type i32 (expected f32, f16 or bf16)");
  has(run({}, 0,
          [](KernelHarness& h) {
            h.InQ(Random(KILN_DTYPE_I8, {4}, 1), Random(KILN_DTYPE_F32, {1}, 2), HostTensor(),
                  {4})
                .Out(KILN_DTYPE_F32, {4});
          }),
      "operand #0 is a quantized tensor");
  has(run({}, 0, [](KernelHarness& h) { h.Out(KILN_DTYPE_F32, {2}); }),
      "expected at least one operand");
  has(run({}, 0,
          [](KernelHarness& h) {
            h.In(Random(KILN_DTYPE_F32, {2}, 1)).Out(KILN_DTYPE_F32, {2});
            h.AttrS("constants", "1.5");
          }),
      "attribute 'constants' must be a list of numbers");
  {
    KernelHarness h("elementwise");
    h.In(Random(KILN_DTYPE_F32, {2}, 1)).Out(KILN_DTYPE_F32, {2}).AttrInts("code", {});
    has(h.RunMessage(), "attribute 'result' is missing");
  }
}

TEST(ElementwiseRegistry, EveryKernelIsRegistered) {
  for (const char* op : {"add", "sub", "mul", "div", "pow", "max", "min", "and", "or", "compare",
                         "select", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "reciprocal",
                         "tanh", "sin", "cos", "erf", "not", "activation", "cast", "trilu",
                         "cumsum", "reduce", "softmax", "elementwise"})
    EXPECT_NE(LookupCpuKernel(op), nullptr) << op;
}

}  // namespace
}  // namespace kiln::testing
