// The LLM kernels (matmul, gated_mlp, rms_norm, layer_norm, rope, attention,
// glu, embedding, dequantize, qtensor_data) against naive references written
// here (triple loops in f64; explicit scores / softmax / weighted sums for
// attention) on random data from fixed seeds.
//
// Tolerances, per result dtype (inputs are rounded to their dtype first and
// the reference uses the rounded values, so only the kernel's f32
// accumulation order and the final rounding differ):
//   f64: 1e-12 abs + 1e-12 rel.
//   f32: 1e-4 abs + 1e-4 rel (f32 sums of a few hundred terms of size ~1).
//   f16: 2e-3 abs + 2e-3 rel (f16 has an 11-bit significand: 4.9e-4 relative
//        per rounding, plus the f32 accumulation).
//   bf16: 2e-2 abs + 1.6e-2 rel (8-bit significand: 3.9e-3 per rounding; a
//        tie-adjacent value can round either way after f32 accumulation).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu/half.h"
#include "cpu/llm_util.h"
#include "kernel_harness.h"

namespace kiln::testing {
namespace {

// ---------------------------------------------------------------------------
// Helpers.

struct Tol {
  double atol, rtol;
};
Tol TolFor(kiln_dtype_t t) {
  switch (t) {
    case KILN_DTYPE_F64:
      return {1e-12, 1e-12};
    case KILN_DTYPE_F16:
      return {2e-3, 2e-3};
    case KILN_DTYPE_BF16:
      return {2e-2, 1.6e-2};
    default:
      return {1e-4, 1e-4};
  }
}

/// A float tensor of dtype `t` holding `v` rounded to `t`; `rounded` (if
/// given) receives the values actually stored.
HostTensor MakeFloat(kiln_dtype_t t, Dims shape, const std::vector<float>& v,
                     std::vector<float>* rounded = nullptr) {
  HostTensor h(t, shape);
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    switch (t) {
      case KILN_DTYPE_F32:
        h.as<float>()[i] = v[i];
        r[i] = v[i];
        break;
      case KILN_DTYPE_F64:
        h.as<double>()[i] = v[i];
        r[i] = v[i];
        break;
      case KILN_DTYPE_F16:
        h.as<uint16_t>()[i] = FloatToHalf(v[i]);
        r[i] = HalfToFloat(h.as<uint16_t>()[i]);
        break;
      case KILN_DTYPE_BF16:
        h.as<uint16_t>()[i] = FloatToBF16(v[i]);
        r[i] = BF16ToFloat(h.as<uint16_t>()[i]);
        break;
      default:
        ADD_FAILURE() << "not a float dtype";
    }
  }
  if (rounded) *rounded = r;
  return h;
}

/// Random values rounded to `t`: the tensor and the stored values.
HostTensor Random(kiln_dtype_t t, Dims shape, uint32_t seed,
                  std::vector<float>* values, float lo = -1.f, float hi = 1.f) {
  return MakeFloat(t, shape, RandomFloats(size_t(shape.numel()), seed, lo, hi),
                   values);
}

std::vector<double> Values(const HostTensor& h) {
  std::vector<double> out(size_t(h.shape.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    switch (h.dtype) {
      case KILN_DTYPE_F32:
        out[i] = h.as<float>()[i];
        break;
      case KILN_DTYPE_F64:
        out[i] = h.as<double>()[i];
        break;
      case KILN_DTYPE_F16:
        out[i] = HalfToFloat(h.as<uint16_t>()[i]);
        break;
      case KILN_DTYPE_BF16:
        out[i] = BF16ToFloat(h.as<uint16_t>()[i]);
        break;
      default:
        ADD_FAILURE() << "not a float dtype";
    }
  }
  return out;
}

void ExpectClose(const HostTensor& got_t, const std::vector<double>& want,
                 Tol tol, const std::string& what) {
  std::vector<double> got = Values(got_t);
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    if (!(err <= tol.atol + tol.rtol * std::fabs(want[i]))) {
      if (!bad) first = i;
      ++bad;
    }
    if (err > worst || std::isnan(err)) worst = err;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size()
                     << " values off; first at " << first << ": got "
                     << got[first] << ", want " << want[first]
                     << " (worst error " << worst << ")";
}

// ---------------------------------------------------------------------------
// Block quantization, written independently of the kernels' QView.

int QMin(kiln_dtype_t t) {
  return t == KILN_DTYPE_I4 ? -8 : t == KILN_DTYPE_I8 ? -128 : 0;
}
int QMax(kiln_dtype_t t) {
  return t == KILN_DTYPE_I4   ? 7
         : t == KILN_DTYPE_U4 ? 15
         : t == KILN_DTYPE_I8 ? 127
                              : 255;
}

struct Quant {
  HostTensor data, scales, zp;
  Dims block;
  std::vector<float> deq;  // the reference values, row-major over data's shape
};

/// Random block-quantized data of `shape` (scales in [0.01, 0.1], values
/// over the storage's whole range, zero points likewise when asked).
Quant MakeQuant(kiln_dtype_t st, Dims shape, Dims block, bool with_zp,
                uint32_t seed, kiln_dtype_t scale_dt = KILN_DTYPE_F32) {
  Quant q;
  q.block = block;
  const int rank = shape.rank;
  Dims ss;
  for (int d = 0; d < rank; ++d)
    ss.push_back(block[d] == 0 ? 1 : (shape[d] + block[d] - 1) / block[d]);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> qd(QMin(st), QMax(st));
  std::uniform_real_distribution<float> sd(0.01f, 0.1f), fd(-3.f, 3.f);
  const bool f8 = st == KILN_DTYPE_F8E4M3FN || st == KILN_DTYPE_F8E5M2;
  const bool nibbles = st == KILN_DTYPE_I4 || st == KILN_DTYPE_U4;

  std::vector<float> svals;
  q.scales = MakeFloat(scale_dt, ss,
                       RandomFloats(size_t(ss.numel()), seed + 1, 0.01f, 0.1f),
                       &svals);
  std::vector<int> zvals(size_t(ss.numel()), 0);
  const int64_t scols = rank ? ss.back() : 1;
  if (with_zp) {
    q.zp = HostTensor(st, ss);
    for (size_t i = 0; i < zvals.size(); ++i) {
      zvals[i] = qd(rng);
      if (nibbles) {
        const int64_t r = int64_t(i) / scols, c = int64_t(i) % scols;
        uint8_t& byte = q.zp.bytes[size_t(r * ((scols + 1) / 2) + c / 2)];
        byte |= uint8_t((zvals[i] & 15) << ((c & 1) * 4));
      } else {
        q.zp.bytes[i] = uint8_t(zvals[i]);
      }
    }
  } else {
    q.zp = HostTensor(st, Dims{0});
    q.zp.bytes.clear();
  }

  q.data = HostTensor(st, shape);
  const int64_t n = shape.numel(), cols = rank ? shape.back() : 1;
  q.deq.resize(size_t(n));
  const Dims sstr = StridesOf(ss);
  for (int64_t e = 0; e < n; ++e) {
    int64_t rem = e, sidx = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t idx = rem % shape[d];
      rem /= shape[d];
      if (block[d]) sidx += idx / block[d] * sstr[d];
    }
    float v;
    if (f8) {
      const float x = fd(rng);
      const uint8_t code =
          st == KILN_DTYPE_F8E4M3FN ? FloatToF8E4M3FN(x) : FloatToF8E5M2(x);
      q.data.bytes[size_t(e)] = code;
      v = st == KILN_DTYPE_F8E4M3FN ? F8E4M3FNToFloat(code)
                                    : F8E5M2ToFloat(code);
    } else {
      const int x = qd(rng);
      if (nibbles) {
        const int64_t r = e / cols, c = e % cols;
        q.data.bytes[size_t(r * ((cols + 1) / 2) + c / 2)] |=
            uint8_t((x & 15) << ((c & 1) * 4));
      } else {
        q.data.bytes[size_t(e)] = uint8_t(x);
      }
      v = float(x - zvals[size_t(sidx)]);
    }
    q.deq[size_t(e)] = v * svals[size_t(sidx)];
  }
  return q;
}

KernelHarness& InQuant(KernelHarness& h, const Quant& q,
                       kiln_dtype_t expressed = KILN_DTYPE_F32) {
  return h.InQ(q.data, q.scales, q.zp, q.block, expressed);
}

// ---------------------------------------------------------------------------
// References.

/// C[M, N] = A[M, K] @ B (+ bias), B stored [K, N] or (trans) [N, K].
std::vector<double> RefGemm(const float* a, const float* b, int64_t M,
                            int64_t K, int64_t N, bool trans,
                            const float* bias = nullptr) {
  std::vector<double> c(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = bias ? bias[n] : 0.0;
      for (int64_t k = 0; k < K; ++k)
        s += double(a[m * K + k]) * double(trans ? b[n * K + k] : b[k * N + n]);
      c[size_t(m * N + n)] = s;
    }
  return c;
}

// ---------------------------------------------------------------------------
// Matmul.

struct MatmulCase {
  int64_t M, K, N;
  bool trans, bias;
};

void RunMatmul(kiln_dtype_t dt, const MatmulCase& c, uint32_t seed,
               int threads = 4) {
  SCOPED_TRACE("matmul " + std::string(kiln_dtype_name(dt)) +
               " M=" + std::to_string(c.M) + " K=" + std::to_string(c.K) +
               " N=" + std::to_string(c.N) + (c.trans ? " transpose_b" : "") +
               " seed=" + std::to_string(seed));
  std::vector<float> a, b, bias;
  KernelHarness h("matmul", threads);
  h.In(Random(dt, {c.M, c.K}, seed, &a));
  h.In(Random(dt, c.trans ? Dims{c.N, c.K} : Dims{c.K, c.N}, seed + 1, &b));
  if (c.bias)
    h.In(Random(dt, {c.N}, seed + 2, &bias));
  else
    h.None();
  h.Out(dt, {-1, c.N});
  if (c.trans) h.Flag("transpose_b");
  ASSERT_EQ(h.RunMessage(), "");
  ExpectClose(h.Result(),
              RefGemm(a.data(), b.data(), c.M, c.K, c.N, c.trans,
                      c.bias ? bias.data() : nullptr),
              TolFor(dt), "matmul");
}

// Row counts straddle the GEMV / GEMM switch (6 rows for [K, N], 12 for
// [N, K]); sizes are odd and not multiples of any tile.
const MatmulCase kMatmulCases[] = {
    {1, 64, 48, true, false},    {1, 64, 48, false, true},
    {3, 33, 65, true, true},     {6, 33, 65, false, false},
    {7, 33, 65, false, false},   {12, 100, 37, true, false},
    {13, 100, 37, true, true},   {64, 300, 129, true, false},
    {64, 300, 129, false, true}, {130, 257, 70, true, true},
    {2, 1, 5, false, false},     {13, 513, 300, false, false},
};

TEST(LlmMatmul, F32Shapes) {
  uint32_t seed = 100;
  for (const MatmulCase& c : kMatmulCases) RunMatmul(KILN_DTYPE_F32, c, seed++);
}

TEST(LlmMatmul, EveryIsaVariant) {
  // The kernels run the widest vector ISA the CPU has; capping it runs the
  // narrower instantiations (SSE2 base, AVX2) on the same machine.
  for (int cap = 0; cap <= 2; ++cap) {
    SCOPED_TRACE("isa cap " + std::to_string(cap));
    SetLlmIsaCapForTesting(cap);
    uint32_t seed = 200;
    for (const MatmulCase& c : kMatmulCases)
      RunMatmul(KILN_DTYPE_F32, c, seed++);
    RunMatmul(KILN_DTYPE_F64, {9, 70, 33, false, true}, seed++);
    RunMatmul(KILN_DTYPE_F64, {2, 70, 33, true, true}, seed++);
  }
  SetLlmIsaCapForTesting(-1);
}

TEST(LlmMatmul, HalfAndDoubleTypes) {
  uint32_t seed = 300;
  for (kiln_dtype_t dt : {KILN_DTYPE_F16, KILN_DTYPE_BF16, KILN_DTYPE_F64})
    for (const MatmulCase& c :
         {MatmulCase{1, 96, 40, true, true}, MatmulCase{5, 77, 31, false, true},
          MatmulCase{70, 130, 90, true, false}})
      RunMatmul(dt, c, seed++);
}

TEST(LlmMatmul, SingleThread) {
  RunMatmul(KILN_DTYPE_F32, {33, 65, 47, true, true}, 400, 1);
  RunMatmul(KILN_DTYPE_F32, {1, 65, 47, true, false}, 401, 1);
}

TEST(LlmMatmul, BatchBroadcast) {
  struct Case {
    Dims a, b, out;
    bool trans;
  };
  const Case cases[] = {
      {{2, 3, 5, 17}, {3, 17, 9}, {2, 3, 5, 9}, false},
      {{4, 6, 8}, {1, 8, 10}, {4, 6, 10}, false},
      {{1, 5, 7}, {3, 7, 4}, {3, 5, 4}, false},
      {{2, 1, 4, 6}, {1, 3, 5, 6}, {2, 3, 4, 5}, true},
      {{3, 2, 16}, {3, 40, 16}, {3, 2, 40}, true},
  };
  uint32_t seed = 500;
  for (const Case& c : cases) {
    SCOPED_TRACE("a " + c.a.str() + " b " + c.b.str());
    std::vector<float> a, b;
    KernelHarness h("matmul", 4);
    h.In(Random(KILN_DTYPE_F32, c.a, seed++, &a));
    h.In(Random(KILN_DTYPE_F32, c.b, seed++, &b));
    h.None().Out(KILN_DTYPE_F32, c.out);
    if (c.trans) h.Flag("transpose_b");
    ASSERT_EQ(h.RunMessage(), "");
    const int64_t M = c.a.back(1), K = c.a.back(), N = c.out.back();
    // Batch index i of the result reads a and b at their broadcast indices.
    Dims batch = c.out;
    batch.rank -= 2;
    std::vector<double> want;
    for (int64_t i = 0; i < batch.numel(); ++i) {
      int64_t ai = 0, bi = 0, as = 1, bs = 1, rem = i;
      for (int d = batch.rank - 1; d >= 0; --d) {
        const int64_t idx = rem % batch[d];
        rem /= batch[d];
        const int ad = d - (batch.rank - (c.a.rank - 2)),
                  bd = d - (batch.rank - (c.b.rank - 2));
        if (ad >= 0) {
          ai += (c.a[ad] == 1 ? 0 : idx) * as;
          as *= c.a[ad];
        }
        if (bd >= 0) {
          bi += (c.b[bd] == 1 ? 0 : idx) * bs;
          bs *= c.b[bd];
        }
      }
      std::vector<double> part = RefGemm(
          a.data() + ai * M * K, b.data() + bi * K * N, M, K, N, c.trans);
      want.insert(want.end(), part.begin(), part.end());
    }
    ExpectClose(h.Result(), want, TolFor(KILN_DTYPE_F32), "batched matmul");
  }
}

TEST(LlmMatmul, Rank1OperandsFollowOnnx) {
  std::vector<float> a, b, b2;
  {
    KernelHarness h("matmul", 4);  // [K] @ [K, N] -> [N]
    h.In(Random(KILN_DTYPE_F32, {20}, 600, &a))
        .In(Random(KILN_DTYPE_F32, {20, 7}, 601, &b));
    h.None().Out(KILN_DTYPE_F32, {7});
    ASSERT_EQ(h.RunMessage(), "");
    ExpectClose(h.Result(), RefGemm(a.data(), b.data(), 1, 20, 7, false),
                TolFor(KILN_DTYPE_F32), "[K]@[K,N]");
  }
  {
    KernelHarness h("matmul", 4);  // [M, K] @ [K] -> [M]
    h.In(Random(KILN_DTYPE_F32, {6, 20}, 602, &a))
        .In(Random(KILN_DTYPE_F32, {20}, 603, &b));
    h.None().Out(KILN_DTYPE_F32, {6});
    ASSERT_EQ(h.RunMessage(), "");
    ExpectClose(h.Result(), RefGemm(a.data(), b.data(), 6, 20, 1, false),
                TolFor(KILN_DTYPE_F32), "[M,K]@[K]");
  }
  {
    KernelHarness h("matmul", 4);  // [K] @ [K] -> []
    h.In(Random(KILN_DTYPE_F32, {20}, 604, &a))
        .In(Random(KILN_DTYPE_F32, {20}, 605, &b));
    h.None().Out(KILN_DTYPE_F32, Dims{});
    ASSERT_EQ(h.RunMessage(), "");
    ExpectClose(h.Result(), RefGemm(a.data(), b.data(), 1, 20, 1, false),
                TolFor(KILN_DTYPE_F32), "[K]@[K]");
  }
  {
    KernelHarness h("matmul", 4);  // [K] @ [2, K, N] -> [2, N]
    h.In(Random(KILN_DTYPE_F32, {9}, 606, &a))
        .In(Random(KILN_DTYPE_F32, {2, 9, 5}, 607, &b2));
    h.None().Out(KILN_DTYPE_F32, {2, 5});
    ASSERT_EQ(h.RunMessage(), "");
    std::vector<double> want = RefGemm(a.data(), b2.data(), 1, 9, 5, false);
    std::vector<double> second =
        RefGemm(a.data(), b2.data() + 45, 1, 9, 5, false);
    want.insert(want.end(), second.begin(), second.end());
    ExpectClose(h.Result(), want, TolFor(KILN_DTYPE_F32), "[K]@[2,K,N]");
  }
}

struct QMatmulCase {
  kiln_dtype_t storage;
  bool zp, trans;
  int64_t M, K, N;
  Dims block;  // over b's stored shape
  kiln_dtype_t scale_dt;
};

void RunQuantMatmul(const QMatmulCase& c, uint32_t seed, int threads = 4) {
  SCOPED_TRACE(std::string("quantized matmul ") + kiln_dtype_name(c.storage) +
               (c.zp ? " zp" : "") + (c.trans ? " transpose_b" : "") +
               " M=" + std::to_string(c.M) + " K=" + std::to_string(c.K) +
               " N=" + std::to_string(c.N) + " block " + c.block.str() +
               " seed=" + std::to_string(seed));
  std::vector<float> a, bias;
  const Dims bshape = c.trans ? Dims{c.N, c.K} : Dims{c.K, c.N};
  Quant q = MakeQuant(c.storage, bshape, c.block, c.zp, seed + 1, c.scale_dt);
  KernelHarness h("matmul", threads);
  h.In(Random(KILN_DTYPE_F32, {c.M, c.K}, seed, &a));
  InQuant(h, q);
  h.In(Random(KILN_DTYPE_F32, {c.N}, seed + 2, &bias));
  h.Out(KILN_DTYPE_F32, {c.M, c.N});
  if (c.trans) h.Flag("transpose_b");
  ASSERT_EQ(h.RunMessage(), "");
  ExpectClose(
      h.Result(),
      RefGemm(a.data(), q.deq.data(), c.M, c.K, c.N, c.trans, bias.data()),
      TolFor(KILN_DTYPE_F32), "quantized matmul");
}

const QMatmulCase kQuantCases[] = {
    // MatMulNBits: [N, K] ui4 with zero points, 32-blocks along K; decode
    // (fused GEMV), a few rows (GEMV) and prefill (GEMM).
    {KILN_DTYPE_U4, true, true, 1, 256, 100, {1, 32}, KILN_DTYPE_F16},
    {KILN_DTYPE_U4, true, true, 5, 256, 100, {1, 32}, KILN_DTYPE_F32},
    {KILN_DTYPE_U4, true, true, 37, 256, 100, {1, 32}, KILN_DTYPE_F16},
    // A partial last block (K = 80) and an odd K the fused path cannot take.
    {KILN_DTYPE_U4, true, true, 1, 80, 33, {1, 32}, KILN_DTYPE_F32},
    {KILN_DTYPE_U4, true, true, 2, 75, 33, {1, 16}, KILN_DTYPE_F32},
    {KILN_DTYPE_U4, true, true, 20, 75, 33, {1, 16}, KILN_DTYPE_F32},
    // Symmetric i4 (no zero points), 64-blocks.
    {KILN_DTYPE_I4, false, true, 1, 192, 70, {1, 64}, KILN_DTYPE_F32},
    {KILN_DTYPE_I4, false, true, 40, 192, 70, {1, 64}, KILN_DTYPE_BF16},
    {KILN_DTYPE_I4, true, true, 1, 128, 20, {1, 32}, KILN_DTYPE_F32},
    // Fused GEMV over several row groups of four (7 and 16 rows).
    {KILN_DTYPE_U4, true, true, 16, 128, 40, {1, 32}, KILN_DTYPE_F32},
    {KILN_DTYPE_I4, false, true, 7, 96, 21, {1, 32}, KILN_DTYPE_F16},
    {KILN_DTYPE_I8, false, true, 7, 96, 33, {1, 32}, KILN_DTYPE_F32},
    {KILN_DTYPE_U8, true, true, 16, 64, 20, {1, 16}, KILN_DTYPE_F32},
    // 8-bit: block-wise and per output channel.
    {KILN_DTYPE_I8, false, true, 1, 160, 50, {1, 32}, KILN_DTYPE_F32},
    {KILN_DTYPE_I8, false, true, 12, 160, 50, {1, 32}, KILN_DTYPE_F32},
    {KILN_DTYPE_U8, true, true, 1, 96, 50, {1, 0}, KILN_DTYPE_F32},
    {KILN_DTYPE_U8, true, true, 3, 90, 50, {1, 0}, KILN_DTYPE_F16},
    // [K, N] weights with blocks along K.
    {KILN_DTYPE_U4, true, false, 1, 128, 45, {32, 1}, KILN_DTYPE_F32},
    {KILN_DTYPE_I8, false, false, 19, 100, 45, {32, 1}, KILN_DTYPE_F32},
    {KILN_DTYPE_I4, false, false, 9, 64, 45, {16, 0}, KILN_DTYPE_F32},
    // f8 per tensor.
    {KILN_DTYPE_F8E4M3FN, false, true, 1, 64, 30, {0, 0}, KILN_DTYPE_F16},
    {KILN_DTYPE_F8E5M2, false, false, 10, 64, 30, {0, 0}, KILN_DTYPE_F32},
};

TEST(LlmMatmul, QuantizedWeights) {
  uint32_t seed = 700;
  for (const QMatmulCase& c : kQuantCases) RunQuantMatmul(c, seed += 3);
}

TEST(LlmMatmul, QuantizedWeightsEveryIsaVariant) {
  for (int cap = 0; cap <= 2; ++cap) {
    SCOPED_TRACE("isa cap " + std::to_string(cap));
    SetLlmIsaCapForTesting(cap);
    uint32_t seed = 800;
    for (const QMatmulCase& c : kQuantCases) RunQuantMatmul(c, seed += 3, 2);
  }
  SetLlmIsaCapForTesting(-1);
}

TEST(LlmMatmul, LargeQuantizedDecodeMultithreaded) {
  RunQuantMatmul(
      {KILN_DTYPE_U4, true, true, 1, 1024, 777, {1, 32}, KILN_DTYPE_F16}, 900);
  RunQuantMatmul(
      {KILN_DTYPE_I4, false, true, 1, 1024, 777, {1, 128}, KILN_DTYPE_F32},
      901);
  RunQuantMatmul(
      {KILN_DTYPE_U4, true, true, 100, 512, 300, {1, 32}, KILN_DTYPE_F16}, 902);
}

TEST(LlmMatmul, QuantizedActivations) {
  std::vector<float> b;
  Quant qa = MakeQuant(KILN_DTYPE_I8, {6, 40}, {1, 0}, false, 950);
  KernelHarness h("matmul", 4);
  InQuant(h, qa).In(Random(KILN_DTYPE_F32, {40, 11}, 951, &b)).None();
  h.Out(KILN_DTYPE_F32, {6, 11});
  ASSERT_EQ(h.RunMessage(), "");
  ExpectClose(h.Result(), RefGemm(qa.deq.data(), b.data(), 6, 40, 11, false),
              TolFor(KILN_DTYPE_F32), "quantized a");
}

// kiln.hadamard against the explicit normalized Sylvester matrix (built
// by its recursion H_2n = [[H, H], [H, -H]] in f64), block by block along
// the last dimension; on f16/bf16 the kernel computes in f32 and rounds once.
TEST(LlmHadamard, MatchesTheSylvesterMatrix) {
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16}) {
    for (int64_t block : {1, 2, 32}) {
      SCOPED_TRACE(std::string(kiln_dtype_name(dt)) + " block " + std::to_string(block));
      const int64_t rows = 15, cols = 96;
      std::vector<float> unused;
      HostTensor x = Random(dt, {3, 5, cols}, 1200 + uint32_t(block), &unused);
      std::vector<double> xv = Values(x);
      std::vector<double> h(size_t(block * block), 1.0);
      for (int64_t n = 1; n < block; n *= 2)
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double v = h[size_t(i * block + j)];
            h[size_t(i * block + j + n)] = v;
            h[size_t((i + n) * block + j)] = v;
            h[size_t((i + n) * block + j + n)] = -v;
          }
      std::vector<double> want(xv.size(), 0.0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t b0 = 0; b0 < cols; b0 += block)
          for (int64_t i = 0; i < block; ++i) {
            double acc = 0;
            for (int64_t j = 0; j < block; ++j)
              acc += h[size_t(i * block + j)] * xv[size_t(r * cols + b0 + j)];
            want[size_t(r * cols + b0 + i)] = acc / std::sqrt(double(block));
          }
      KernelHarness k("hadamard", 3);
      k.In(x).Attr("block", block);
      k.Out(dt, {3, 5, cols});
      ASSERT_EQ(k.RunMessage(), "");
      ExpectClose(k.Result(), want, TolFor(dt), "hadamard");
    }
  }
}

// Orthonormal and symmetric: applying it twice gives the input back.
TEST(LlmHadamard, IsItsOwnInverse) {
  std::vector<float> unused;
  HostTensor x = Random(KILN_DTYPE_F32, {7, 256}, 1300, &unused);
  KernelHarness once("hadamard");
  once.In(x).Attr("block", 256);
  once.Out(KILN_DTYPE_F32, {7, 256});
  ASSERT_EQ(once.RunMessage(), "");
  KernelHarness twice("hadamard");
  twice.In(once.Result()).Attr("block", 256);
  twice.Out(KILN_DTYPE_F32, {7, 256});
  ASSERT_EQ(twice.RunMessage(), "");
  ExpectClose(twice.Result(), Values(x), Tol{1e-5, 1e-5}, "hadamard twice");
}

// kiln.rotate against a naive f64 product with the block-diagonal matrix,
// a random (not orthogonal: the kernel does not care) f32 or f16 matrix.
TEST(LlmRotate, MatchesTheBlockDiagonalProduct) {
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16}) {
    for (auto [rt, n] : {std::pair{KILN_DTYPE_F32, int64_t(24)}, std::pair{KILN_DTYPE_F16, int64_t(24)},
                         std::pair{KILN_DTYPE_F32, int64_t(72)}, std::pair{KILN_DTYPE_F32, int64_t(1)}}) {
      SCOPED_TRACE(std::string(kiln_dtype_name(dt)) + " by " + kiln_dtype_name(rt) + " " +
                   std::to_string(n) + "x" + std::to_string(n));
      const int64_t rows = 6, cols = 72;
      std::vector<float> unused;
      HostTensor x = Random(dt, {2, 3, cols}, 1500, &unused);
      HostTensor r = Random(rt, {n, n}, 1501, &unused);
      std::vector<double> xv = Values(x), rv = Values(r), want(xv.size(), 0.0);
      for (int64_t row = 0; row < rows; ++row)
        for (int64_t b0 = 0; b0 < cols; b0 += n)
          for (int64_t i = 0; i < n; ++i) {
            double acc = 0;
            for (int64_t j = 0; j < n; ++j)
              acc += xv[size_t(row * cols + b0 + j)] * rv[size_t(j * n + i)];
            want[size_t(row * cols + b0 + i)] = acc;
          }
      KernelHarness k("rotate", 3);
      k.In(x).In(r);
      k.Out(dt, {2, 3, cols});
      ASSERT_EQ(k.RunMessage(), "");
      ExpectClose(k.Result(), want, TolFor(dt), "rotate");
    }
  }
}

TEST(LlmRotate, RefusesAMatrixThatDoesNotTileTheRow) {
  std::vector<float> unused;
  KernelHarness k("rotate");
  k.In(Random(KILN_DTYPE_F32, {2, 48}, 1502, &unused))
      .In(Random(KILN_DTYPE_F32, {32, 32}, 1503, &unused));
  k.Out(KILN_DTYPE_F32, {2, 48});
  std::string m = k.RunMessage();
  EXPECT_NE(m.find("rotation [32, 32] is not a square matrix whose size divides the last "
                   "dimension of [2, 48]"),
            std::string::npos)
      << m;
}

TEST(LlmHadamard, RefusesABlockThatIsNotAPowerOfTwoDividingTheRow) {
  for (int64_t block : {24, 64}) {
    KernelHarness k("hadamard");
    std::vector<float> unused;
    k.In(Random(KILN_DTYPE_F32, {2, 48}, 1400, &unused)).Attr("block", block);
    k.Out(KILN_DTYPE_F32, {2, 48});
    std::string m = k.RunMessage();
    EXPECT_NE(m.find("block " + std::to_string(block) + " is not a power of two dividing"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("[2, 48]"), std::string::npos) << m;
  }
}

TEST(LlmMatmul, ShapeErrorsNameTheShapes) {
  std::vector<float> v;
  {
    KernelHarness h("matmul");
    h.In(Random(KILN_DTYPE_F32, {3, 5}, 1, &v))
        .In(Random(KILN_DTYPE_F32, {6, 4}, 2, &v))
        .None();
    h.Out(KILN_DTYPE_F32, {3, 4});
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("contraction dimensions differ"), std::string::npos) << m;
    EXPECT_NE(m.find("[3, 5]"), std::string::npos) << m;
    EXPECT_NE(m.find("[6, 4]"), std::string::npos) << m;
  }
  {
    KernelHarness h("matmul");
    h.In(Random(KILN_DTYPE_F32, {2, 3, 5}, 1, &v))
        .In(Random(KILN_DTYPE_F32, {3, 5, 4}, 2, &v))
        .None();
    h.Out(KILN_DTYPE_F32, {-1, 3, 4});
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("not broadcast-compatible"), std::string::npos) << m;
  }
  {
    KernelHarness h("matmul");
    h.In(Random(KILN_DTYPE_F32, {3, 5}, 1, &v))
        .In(Random(KILN_DTYPE_F32, {5, 4}, 2, &v));
    h.In(Random(KILN_DTYPE_F32, {5}, 3, &v)).Out(KILN_DTYPE_F32, {3, 4});
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("bias shape [5] does not match [4]"), std::string::npos)
        << m;
  }
  {
    // Scales that do not fit the data.
    Quant q = MakeQuant(KILN_DTYPE_U4, {8, 64}, {1, 32}, true, 3);
    q.block = Dims{1, 16};
    KernelHarness h("matmul");
    h.In(Random(KILN_DTYPE_F32, {1, 64}, 1, &v));
    InQuant(h, q).None().Out(KILN_DTYPE_F32, {1, 8}).Flag("transpose_b");
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("scales [8, 2] do not match data [8, 64]"),
              std::string::npos)
        << m;
  }
}

// ---------------------------------------------------------------------------
// Gated MLP.

struct MlpCase {
  bool fused, transposed, quantized;
  const char* act;
  int64_t rows, H, F;
  kiln_dtype_t dt;
};

double RefAct(const std::string& act, double x) {
  if (act == "relu") return x > 0 ? x : 0;
  if (act == "silu") return x / (1 + std::exp(-x));
  if (act == "gelu") return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
  if (act == "gelu_tanh")
    return 0.5 * x *
           (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) *
                          (x + 0.044715 * x * x * x)));
  return 1 / (1 + std::exp(-x));
}

void RunMlp(const MlpCase& c, uint32_t seed) {
  SCOPED_TRACE(
      std::string("gated_mlp ") + c.act + (c.fused ? " fused" : " split") +
      (c.transposed ? " transposed" : "") + (c.quantized ? " ui4" : "") + " " +
      kiln_dtype_name(c.dt) + " seed=" + std::to_string(seed));
  const int64_t H = c.H, F = c.F, R = c.rows;
  std::vector<float> x;
  KernelHarness h("gated_mlp", 4);
  h.In(Random(c.dt, {1, R, H}, seed, &x));
  // A weight of logical [in, out]: stored [out, in] when transposed.
  auto weight = [&](int64_t in, int64_t out, uint32_t s,
                    std::vector<float>* logical) {
    const Dims shape = c.transposed ? Dims{out, in} : Dims{in, out};
    std::vector<float> stored;
    if (c.quantized) {
      Quant q = MakeQuant(KILN_DTYPE_U4, shape,
                          c.transposed ? Dims{1, 16} : Dims{16, 1}, true, s);
      InQuant(h, q, c.dt);
      stored = q.deq;
    } else {
      h.In(Random(c.dt, shape, s, &stored, -0.3f, 0.3f));
    }
    logical->assign(size_t(in * out), 0.f);
    for (int64_t i = 0; i < in; ++i)
      for (int64_t o = 0; o < out; ++o)
        (*logical)[size_t(i * out + o)] =
            stored[size_t(c.transposed ? o * in + i : i * out + o)];
  };
  std::vector<float> wg, wu, wgu, wd;
  if (c.fused) {
    h.None().None();
    weight(H, 2 * F, seed + 1, &wgu);
    wg.resize(size_t(H * F));
    wu.resize(size_t(H * F));
    for (int64_t i = 0; i < H; ++i)
      for (int64_t o = 0; o < F; ++o) {
        wg[size_t(i * F + o)] = wgu[size_t(i * 2 * F + o)];
        wu[size_t(i * F + o)] = wgu[size_t(i * 2 * F + F + o)];
      }
  } else {
    weight(H, F, seed + 1, &wg);
    weight(H, F, seed + 2, &wu);
    h.None();
  }
  weight(F, H, seed + 3, &wd);
  h.Out(c.dt, {1, -1, H}).AttrS("activation", c.act);
  if (c.transposed) h.Flag("transpose_weights");
  ASSERT_EQ(h.RunMessage(), "");
  std::vector<double> g = RefGemm(x.data(), wg.data(), R, H, F, false);
  std::vector<double> u = RefGemm(x.data(), wu.data(), R, H, F, false);
  std::vector<float> hid(size_t(R * F));
  for (size_t i = 0; i < hid.size(); ++i)
    hid[i] = float(RefAct(c.act, g[i]) * u[i]);
  ExpectClose(h.Result(), RefGemm(hid.data(), wd.data(), R, F, H, false),
              TolFor(c.dt), "gated_mlp");
}

TEST(LlmGatedMlp, SplitFusedTransposedQuantized) {
  uint32_t seed = 1000;
  const MlpCase cases[] = {
      {false, false, false, "silu", 5, 32, 48, KILN_DTYPE_F32},
      {true, false, false, "gelu_tanh", 1, 40, 24, KILN_DTYPE_F32},
      {false, true, false, "gelu", 70, 64, 80, KILN_DTYPE_F32},
      {true, true, false, "relu", 3, 33, 17, KILN_DTYPE_F32},
      {false, true, true, "silu", 1, 64, 96, KILN_DTYPE_F32},
      {true, true, true, "sigmoid", 20, 64, 48, KILN_DTYPE_F32},
      {true, false, true, "silu", 6, 32, 32, KILN_DTYPE_F32},
      {false, true, false, "silu", 9, 48, 40, KILN_DTYPE_BF16},
      {true, true, false, "silu", 2, 48, 40, KILN_DTYPE_F16},
  };
  for (const MlpCase& c : cases) RunMlp(c, seed += 4);
}

TEST(LlmGatedMlp, Errors) {
  std::vector<float> v;
  KernelHarness h("gated_mlp");
  h.In(Random(KILN_DTYPE_F32, {2, 16}, 1, &v));
  h.In(Random(KILN_DTYPE_F32, {16, 8}, 2, &v))
      .In(Random(KILN_DTYPE_F32, {16, 9}, 3, &v))
      .None();
  h.In(Random(KILN_DTYPE_F32, {8, 16}, 4, &v));
  h.Out(KILN_DTYPE_F32, {2, 16}).AttrS("activation", "silu");
  std::string m = h.RunMessage();
  EXPECT_NE(m.find("gate [16, 8] and up [16, 9] widths differ"),
            std::string::npos)
      << m;
}

// ---------------------------------------------------------------------------
// Norms.

std::vector<double> RefNorm(const std::vector<float>& x, int64_t rows,
                            int64_t n, const std::vector<float>& w,
                            const std::vector<float>* b, double eps,
                            bool layer) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * n;
    double mean = 0;
    if (layer) {
      for (int64_t i = 0; i < n; ++i) mean += xr[i];
      mean /= double(n);
    }
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += (xr[i] - mean) * (xr[i] - mean);
    const double inv = 1 / std::sqrt(ss / double(n) + eps);
    for (int64_t i = 0; i < n; ++i)
      y[size_t(r * n + i)] =
          (xr[i] - mean) * inv * w[size_t(i)] + (b ? (*b)[size_t(i)] : 0.0);
  }
  return y;
}

TEST(LlmNorm, RmsNormAxesAndTypes) {
  uint32_t seed = 1100;
  struct Case {
    Dims x;
    int64_t axis;
    Dims w;
    kiln_dtype_t dt;
    int threads;
  };
  const Case cases[] = {
      {{3, 5, 64}, -1, {64}, KILN_DTYPE_F32, 4},
      {{2, 7, 33}, 2, {33}, KILN_DTYPE_F32, 1},
      {{4, 5, 16}, 1, {5, 16}, KILN_DTYPE_F32, 4},
      {{4, 5, 16}, -2, {16}, KILN_DTYPE_F32, 4},  // weight broadcast over the 5
      {{64, 256}, -1, {256}, KILN_DTYPE_F32, 4},
      {{3, 130}, -1, {130}, KILN_DTYPE_F16, 4},
      {{3, 130}, -1, {130}, KILN_DTYPE_BF16, 4},
      {{3, 130}, -1, {130}, KILN_DTYPE_F64, 2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("rms_norm " + c.x.str() + " axis " + std::to_string(c.axis) +
                 " " + kiln_dtype_name(c.dt));
    std::vector<float> x, w;
    KernelHarness h("rms_norm", c.threads);
    h.In(Random(c.dt, c.x, seed++, &x, -2.f, 2.f));
    h.In(Random(c.dt, c.w, seed++, &w, 0.5f, 1.5f));
    h.Out(c.dt, c.x).AttrF("epsilon", 1e-6).Attr("axis", c.axis);
    ASSERT_EQ(h.RunMessage(), "");
    const int axis = int(c.axis < 0 ? c.axis + c.x.rank : c.axis);
    int64_t n = 1;
    for (int d = axis; d < c.x.rank; ++d) n *= c.x[d];
    std::vector<float> wfull(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      wfull[size_t(i)] = w[size_t(i % c.w.numel())];
    ExpectClose(h.Result(),
                RefNorm(x, c.x.numel() / n, n, wfull, nullptr, 1e-6, false),
                TolFor(c.dt), "rms_norm");
  }
}

TEST(LlmNorm, AddRmsNormGivesTheSumAndItsNorm) {
  uint32_t seed = 1150;
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_BF16, KILN_DTYPE_F16}) {
    SCOPED_TRACE(std::string("add_rms_norm ") + kiln_dtype_name(dt));
    const Dims shape{3, 7, 96};
    std::vector<float> x, r, w;
    KernelHarness h("add_rms_norm", 4);
    h.In(Random(dt, shape, seed++, &x, -2.f, 2.f));
    h.In(Random(dt, shape, seed++, &r, -2.f, 2.f));
    h.In(Random(dt, {96}, seed++, &w, 0.5f, 1.5f));
    h.Out(dt, shape).Out(dt, shape).AttrF("epsilon", 1e-6);
    ASSERT_EQ(h.RunMessage(), "");
    // The reference normalizes the sum as stored in the result type.
    std::vector<float> exact(x.size()), sum;
    for (size_t i = 0; i < x.size(); ++i) exact[i] = x[i] + r[i];
    MakeFloat(dt, shape, exact, &sum);
    ExpectClose(h.Result(0), std::vector<double>(sum.begin(), sum.end()), TolFor(dt), "sum");
    ExpectClose(h.Result(1), RefNorm(sum, 21, 96, w, nullptr, 1e-6, false),
                TolFor(dt), "add_rms_norm");
  }
  std::vector<float> v;
  KernelHarness h("add_rms_norm");
  h.In(Random(KILN_DTYPE_F32, {3, 8}, 1, &v))
      .In(Random(KILN_DTYPE_F32, {3, 7}, 2, &v))
      .In(Random(KILN_DTYPE_F32, {8}, 3, &v));
  h.Out(KILN_DTYPE_F32, {3, 8}).Out(KILN_DTYPE_F32, {3, 8}).AttrF("epsilon", 1e-6);
  std::string m = h.RunMessage();
  EXPECT_NE(m.find("residual shape [3, 7] does not match input [3, 8]"), std::string::npos) << m;
}

TEST(LlmNorm, LayerNormWithAndWithoutBias) {
  uint32_t seed = 1200;
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_BF16, KILN_DTYPE_F16})
    for (bool bias : {false, true}) {
      SCOPED_TRACE(std::string("layer_norm ") + kiln_dtype_name(dt) +
                   (bias ? " bias" : ""));
      std::vector<float> x, w, b;
      KernelHarness h("layer_norm", 4);
      h.In(Random(dt, {9, 2, 100}, seed++, &x, -1.f, 3.f));
      h.In(Random(dt, {100}, seed++, &w));
      if (bias)
        h.In(Random(dt, {100}, seed++, &b));
      else
        h.None();
      h.Out(dt, {9, 2, 100}).AttrF("epsilon", 1e-5);
      ASSERT_EQ(h.RunMessage(), "");
      ExpectClose(h.Result(),
                  RefNorm(x, 18, 100, w, bias ? &b : nullptr, 1e-5, true),
                  TolFor(dt), "layer_norm");
    }
}

TEST(LlmNorm, Errors) {
  std::vector<float> v;
  {
    KernelHarness h("rms_norm");
    h.In(Random(KILN_DTYPE_F32, {3, 8}, 1, &v))
        .In(Random(KILN_DTYPE_F32, {7}, 2, &v));
    h.Out(KILN_DTYPE_F32, {3, 8}).AttrF("epsilon", 1e-6);
    std::string m = h.RunMessage();
    EXPECT_NE(
        m.find("weight shape [7] does not match the normalized dimensions [8]"),
        std::string::npos)
        << m;
  }
  {
    KernelHarness h("layer_norm");
    h.In(Random(KILN_DTYPE_F32, {3, 8}, 1, &v))
        .In(Random(KILN_DTYPE_F32, {8}, 2, &v))
        .None();
    h.Out(KILN_DTYPE_F32, {3, 8}).AttrF("epsilon", 1e-6).Attr("axis", 2);
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("axis 2 is out of range for input [3, 8]"),
              std::string::npos)
        << m;
  }
}

// ---------------------------------------------------------------------------
// RoPE.

struct RopeCase {
  int64_t B, S, H, D, rot;
  bool interleaved, positions;
  kiln_dtype_t dt, pos_dt;
};

void RunRope(const RopeCase& c, uint32_t seed) {
  SCOPED_TRACE("rope B=" + std::to_string(c.B) + " S=" + std::to_string(c.S) +
               " D=" + std::to_string(c.D) + " rot=" + std::to_string(c.rot) +
               (c.interleaved ? " interleaved" : "") +
               (c.positions ? " positions" : "") + " " + kiln_dtype_name(c.dt));
  const int64_t rot = c.rot ? c.rot : c.D, half = rot / 2, P = 40;
  std::vector<float> x;
  KernelHarness h("rope", 4);
  h.In(Random(c.dt, {c.B, c.S, c.H, c.D}, seed, &x));
  std::vector<int64_t> pos(size_t(c.B * c.S));
  std::mt19937 rng(seed + 1);
  for (auto& p : pos) p = std::uniform_int_distribution<int64_t>(0, P - 1)(rng);
  // Angles as a real model's (theta = 10000); the gathered form uses them at
  // `pos`.
  auto angle = [&](int64_t p, int64_t i) {
    return double(p) * std::pow(10000.0, -2.0 * double(i) / double(rot));
  };
  std::vector<float> cosv, sinv;
  const int64_t rows = c.positions ? P : c.B * c.S;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < half; ++i) {
      const int64_t p = c.positions ? r : pos[size_t(r)];
      cosv.push_back(float(std::cos(angle(p, i))));
      sinv.push_back(float(std::sin(angle(p, i))));
    }
  const Dims cs = c.positions ? Dims{P, half} : Dims{c.B, c.S, half};
  std::vector<float> cr, sr;
  h.In(MakeFloat(c.dt, cs, cosv, &cr)).In(MakeFloat(c.dt, cs, sinv, &sr));
  if (c.positions) {
    if (c.pos_dt == KILN_DTYPE_I64) {
      h.In(HostTensor::Of<int64_t>(KILN_DTYPE_I64, {c.B, c.S}, pos));
    } else {
      std::vector<int32_t> p32(pos.begin(), pos.end());
      h.In(HostTensor::Of<int32_t>(KILN_DTYPE_I32, {c.B, c.S}, p32));
    }
  } else {
    h.None();
  }
  h.Out(c.dt, {c.B, c.S, c.H, c.D}).Attr("rotary_dim", c.rot);
  if (c.interleaved) h.Flag("interleaved");
  ASSERT_EQ(h.RunMessage(), "");
  std::vector<double> want(x.begin(), x.end());
  for (int64_t bs = 0; bs < c.B * c.S; ++bs) {
    const int64_t row = c.positions ? pos[size_t(bs)] : bs;
    for (int64_t hh = 0; hh < c.H; ++hh) {
      const int64_t off = (bs * c.H + hh) * c.D;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t i1 = c.interleaved ? 2 * i : i,
                      i2 = c.interleaved ? 2 * i + 1 : i + half;
        const double co = cr[size_t(row * half + i)],
                     si = sr[size_t(row * half + i)];
        const double x1 = x[size_t(off + i1)], x2 = x[size_t(off + i2)];
        want[size_t(off + i1)] = x1 * co - x2 * si;
        want[size_t(off + i2)] = x1 * si + x2 * co;
      }
    }
  }
  ExpectClose(h.Result(), want, TolFor(c.dt), "rope");
}

TEST(LlmRope, LayoutsPositionsAndTypes) {
  uint32_t seed = 1300;
  const RopeCase cases[] = {
      {2, 5, 3, 64, 0, false, true, KILN_DTYPE_F32, KILN_DTYPE_I64},
      {2, 5, 3, 64, 0, true, true, KILN_DTYPE_F32, KILN_DTYPE_I32},
      {1, 7, 4, 64, 32, false, true, KILN_DTYPE_F32, KILN_DTYPE_I64},
      {1, 7, 4, 64, 16, true, true, KILN_DTYPE_F32, KILN_DTYPE_I64},
      {3, 4, 2, 32, 0, false, false, KILN_DTYPE_F32, KILN_DTYPE_I64},
      {3, 4, 2, 32, 24, true, false, KILN_DTYPE_F32, KILN_DTYPE_I64},
      {2, 33, 8, 128, 0, false, true, KILN_DTYPE_F16, KILN_DTYPE_I64},
      {2, 9, 8, 64, 0, false, true, KILN_DTYPE_BF16, KILN_DTYPE_I32},
  };
  for (const RopeCase& c : cases) RunRope(c, seed += 2);
}

TEST(LlmRope, PositionOutsideTheCacheIsAnError) {
  std::vector<float> v;
  KernelHarness h("rope");
  h.In(Random(KILN_DTYPE_F32, {1, 3, 2, 8}, 1, &v));
  h.In(Random(KILN_DTYPE_F32, {20, 4}, 2, &v))
      .In(Random(KILN_DTYPE_F32, {20, 4}, 3, &v));
  h.In(HostTensor::Of<int64_t>(KILN_DTYPE_I64, {1, 3}, {0, 25, 1}));
  h.Out(KILN_DTYPE_F32, {1, 3, 2, 8});
  std::string m = h.RunMessage();
  EXPECT_NE(m.find("position 25 at [0, 1]"), std::string::npos) << m;
  EXPECT_NE(m.find("cache of 20 positions"), std::string::npos) << m;

  KernelHarness neg("rope");
  neg.In(Random(KILN_DTYPE_F32, {1, 3, 2, 8}, 1, &v));
  neg.In(Random(KILN_DTYPE_F32, {20, 4}, 2, &v))
      .In(Random(KILN_DTYPE_F32, {20, 4}, 3, &v));
  neg.In(HostTensor::Of<int32_t>(KILN_DTYPE_I32, {1, 3}, {0, 1, -1}));
  neg.Out(KILN_DTYPE_F32, {1, 3, 2, 8});
  m = neg.RunMessage();
  EXPECT_NE(m.find("position -1 at [0, 2]"), std::string::npos) << m;
}

// ---------------------------------------------------------------------------
// Attention.

struct AttnCase {
  std::string name;
  int64_t B, Sq, Skv, Hq, Hkv, D, Dv;
  std::string mask = "none";
  int64_t window = 0, sink = 0;
  double scale = 0;  // 0: default 1/sqrt(D)
  double softcap = 0;
  int attn_mask = 0;  // 0 none, 1 bool [B, 1, Sq, Skv], 2 additive f32 [Sq,
                      // Skv], 3 additive [B, 1, 1, Skv]
  int tree = 0;       // 0 none, 2: [Sq, Sq], 3: [B, Sq, Sq]
  kiln_dtype_t dt = KILN_DTYPE_F32;
  bool quant_kv = false;
  int threads = 4;
};

void RunAttention(const AttnCase& c, uint32_t seed) {
  SCOPED_TRACE("attention " + c.name + " seed=" + std::to_string(seed));
  const int64_t B = c.B, Sq = c.Sq, Skv = c.Skv, Hq = c.Hq, Hkv = c.Hkv,
                D = c.D, Dv = c.Dv;
  std::vector<float> q, k, v;
  KernelHarness h("attention", c.threads);
  h.In(Random(c.dt, {B, Sq, Hq, D}, seed, &q, -2.f, 2.f));
  if (c.quant_kv) {
    Quant qk = MakeQuant(KILN_DTYPE_I8, {B, Skv, Hkv, D}, {1, 1, 1, 0}, false,
                         seed + 1);
    Quant qv = MakeQuant(KILN_DTYPE_U8, {B, Skv, Hkv, Dv}, {1, 1, 1, 16}, true,
                         seed + 2);
    InQuant(h, qk);
    InQuant(h, qv);
    k = qk.deq;
    v = qv.deq;
  } else {
    h.In(Random(c.dt, {B, Skv, Hkv, D}, seed + 1, &k, -2.f, 2.f));
    h.In(Random(c.dt, {B, Skv, Hkv, Dv}, seed + 2, &v));
  }
  h.None();  // cache
  // Additive mask values per (b, i, j), broadcast over heads.
  std::vector<double> add(size_t(B * Sq * Skv), 0.0);
  std::mt19937 rng(seed + 3);
  if (c.attn_mask == 1) {
    HostTensor m(KILN_DTYPE_I1, {B, 1, Sq, Skv});
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Sq; ++i)
        for (int64_t j = 0; j < Skv; ++j) {
          // Row i = 1 of batch 0 sees nothing: its output must be zeros.
          const bool vis = !(b == 0 && i == 1) && (rng() % 3 != 0);
          m.bytes[size_t((b * Sq + i) * Skv + j)] = vis;
          add[size_t((b * Sq + i) * Skv + j)] = vis ? 0 : -INFINITY;
        }
    h.In(m);
  } else if (c.attn_mask == 2) {
    std::vector<float> mv(size_t(Sq * Skv));
    for (int64_t i = 0; i < Sq; ++i)
      for (int64_t j = 0; j < Skv; ++j) {
        const float val =
            rng() % 4 == 0 ? -INFINITY : float(int(rng() % 200) - 100) / 50.f;
        mv[size_t(i * Skv + j)] = val;
        for (int64_t b = 0; b < B; ++b)
          add[size_t((b * Sq + i) * Skv + j)] = val;
      }
    h.In(HostTensor::Of<float>(KILN_DTYPE_F32, {Sq, Skv}, mv));
  } else if (c.attn_mask == 3) {
    // Padding: batch b hides its first b keys (a large negative, as exporters
    // write).
    std::vector<float> mv(size_t(B * Skv));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < Skv; ++j) {
        mv[size_t(b * Skv + j)] = j < b ? -3.4e38f : 0.f;
        for (int64_t i = 0; i < Sq; ++i)
          add[size_t((b * Sq + i) * Skv + j)] = mv[size_t(b * Skv + j)];
      }
    h.In(HostTensor::Of<float>(KILN_DTYPE_F32, {B, 1, 1, Skv}, mv));
  } else {
    h.None();
  }
  std::vector<uint8_t> tree(size_t(B * Sq * Sq), 0);
  if (c.tree) {
    // A token tree: each new token sees itself and a random earlier ancestor
    // chain.
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Sq; ++i)
        for (int64_t t = 0; t <= i; ++t)
          tree[size_t((b * Sq + i) * Sq + t)] =
              (t == i || t == 0 || rng() % 2) ? 1 : 0;
    if (c.tree == 2)
      for (int64_t b = 1; b < B; ++b)
        std::copy(tree.begin(), tree.begin() + Sq * Sq,
                  tree.begin() + b * Sq * Sq);
    HostTensor t(KILN_DTYPE_I1, c.tree == 2 ? Dims{Sq, Sq} : Dims{B, Sq, Sq});
    std::copy(tree.begin(), tree.begin() + int64_t(t.bytes.size()),
              t.bytes.begin());
    h.In(t);
  } else {
    h.None();
  }
  h.Out(c.dt, {B, Sq, Hq, Dv}).AttrS("mask", c.mask);
  if (c.mask == "sliding_window")
    h.Attr("mask_window", c.window).Attr("mask_sink", c.sink);
  if (c.scale) h.AttrF("scale", c.scale);
  if (c.softcap) h.AttrF("softcap", c.softcap);
  ASSERT_EQ(h.RunMessage(), "");

  const double scale = c.scale ? c.scale : 1 / std::sqrt(double(D));
  std::vector<double> want(size_t(B * Sq * Hq * Dv), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t hh = 0; hh < Hq; ++hh) {
      const int64_t kh = hh / (Hq / Hkv);
      for (int64_t i = 0; i < Sq; ++i) {
        const int64_t pos = Skv - Sq + i;
        std::vector<double> s(size_t(Skv), -INFINITY);
        for (int64_t j = 0; j < Skv; ++j) {
          bool vis = true;
          if (c.mask == "causal") vis = j <= pos;
          if (c.mask == "sliding_window")
            vis = j <= pos && (pos - j < c.window || j < c.sink);
          if (c.mask == "tree" && j >= Skv - Sq)
            vis = tree[size_t((b * Sq + i) * Sq + j - (Skv - Sq))];
          if (!vis) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += double(q[size_t(((b * Sq + i) * Hq + hh) * D + d)]) *
                   k[size_t(((b * Skv + j) * Hkv + kh) * D + d)];
          double x = dot * scale;
          if (c.softcap) x = c.softcap * std::tanh(x / c.softcap);
          s[size_t(j)] = x + add[size_t((b * Sq + i) * Skv + j)];
        }
        double mx = -INFINITY;
        for (double x : s) mx = std::max(mx, x);
        if (mx == -INFINITY) continue;  // nothing visible: zeros
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        for (int64_t d = 0; d < Dv; ++d) {
          double o = 0;
          for (int64_t j = 0; j < Skv; ++j)
            o += s[size_t(j)] * v[size_t(((b * Skv + j) * Hkv + kh) * Dv + d)];
          want[size_t(((b * Sq + i) * Hq + hh) * Dv + d)] = o / sum;
        }
      }
    }
  ExpectClose(h.Result(), want, TolFor(c.dt), "attention");
}

TEST(LlmAttention, MasksGqaAndShapes) {
  std::vector<AttnCase> cases;
  cases.push_back({"none mha", 1, 7, 7, 4, 4, 16, 16});
  cases.push_back(
      {"causal prefill gqa4 dv", 2, 33, 33, 8, 2, 64, 32, "causal"});
  cases.push_back({"causal decode gqa2", 2, 1, 50, 4, 2, 32, 32, "causal"});
  cases.push_back({"causal chunk", 1, 5, 20, 2, 1, 24, 24, "causal"});
  cases.push_back({"causal sq > skv", 1, 6, 4, 2, 2, 8, 8, "causal"});
  AttnCase sw{"sliding window + sink", 1, 24, 24, 4, 2, 16, 16,
              "sliding_window",        4, 2};
  cases.push_back(sw);
  AttnCase swd{"sliding window decode", 2, 1, 40, 4, 4, 16, 16,
               "sliding_window",        8, 3};
  cases.push_back(swd);
  AttnCase swn{"sliding window no sink", 1, 10, 30, 2, 1, 16, 16,
               "sliding_window",         5, 0};
  cases.push_back(swn);
  AttnCase tr{"tree [q, q]", 2, 6, 16, 4, 2, 16, 16, "tree"};
  tr.tree = 2;
  cases.push_back(tr);
  AttnCase tr3{"tree [b, q, q]", 2, 5, 12, 2, 1, 8, 8, "tree"};
  tr3.tree = 3;
  cases.push_back(tr3);
  AttnCase mb{
      "bool attn_mask with an empty row", 2, 6, 9, 4, 2, 16, 16, "none"};
  mb.attn_mask = 1;
  cases.push_back(mb);
  AttnCase ma{"additive attn_mask + causal", 1, 8, 8, 2, 2, 16, 16, "causal"};
  ma.attn_mask = 2;
  cases.push_back(ma);
  AttnCase mp{"padding mask", 3, 4, 10, 4, 1, 32, 32, "causal"};
  mp.attn_mask = 3;
  cases.push_back(mp);
  AttnCase sc{"softcap + scale", 1, 9, 9, 4, 2, 16, 16, "causal"};
  sc.scale = 0.5;
  sc.softcap = 5.0;
  cases.push_back(sc);
  AttnCase big{"multithreaded prefill", 2, 64, 64, 8, 2, 64, 64, "causal"};
  cases.push_back(big);
  AttnCase one{"single thread", 1, 17, 17, 4, 1, 40, 24, "causal"};
  one.threads = 1;
  cases.push_back(one);
  // Several 64-key blocks: the online softmax rescales partial outputs.
  cases.push_back({"long causal chunk", 1, 70, 200, 8, 2, 64, 48, "causal", 0,
                   0, 0, 0, 0, 0, KILN_DTYPE_F32, false, 2});
  cases.push_back({"long decode, grouped heads", 2, 1, 300, 8, 2, 32, 32,
                   "causal", 0, 0, 0, 0, 0, 0, KILN_DTYPE_F32, false, 1});
  cases.push_back({"long none, split heads", 1, 3, 150, 4, 1, 16, 16, "none", 0,
                   0, 0, 0, 0, 0, KILN_DTYPE_F32, false, 4});
  AttnCase gap{"sliding window skipping blocks",
               1,
               100,
               300,
               4,
               2,
               16,
               16,
               "sliding_window",
               20,
               4};
  cases.push_back(gap);
  AttnCase lb{"bool mask over blocks", 2, 6, 140, 4, 2, 16, 16, "none"};
  lb.attn_mask = 1;
  cases.push_back(lb);
  AttnCase la{"additive mask over blocks + softcap",
              1,
              20,
              130,
              2,
              1,
              16,
              16,
              "causal"};
  la.attn_mask = 2;
  la.softcap = 3.0;
  cases.push_back(la);
  uint32_t seed = 1400;
  for (const AttnCase& c : cases) RunAttention(c, seed += 4);
}

TEST(LlmAttention, EveryIsaVariant) {
  for (int cap = 0; cap <= 2; ++cap) {
    SCOPED_TRACE("isa cap " + std::to_string(cap));
    SetLlmIsaCapForTesting(cap);
    AttnCase c{"causal gqa2", 1, 19, 23, 4, 2, 40, 24, "causal"};
    RunAttention(c, 1500 + uint32_t(cap));
  }
  SetLlmIsaCapForTesting(-1);
}

TEST(LlmAttention, HalfTypesAndQuantizedKv) {
  uint32_t seed = 1600;
  AttnCase f16{"f16", 2, 5, 12, 4, 2, 32, 32, "causal"};
  f16.dt = KILN_DTYPE_F16;
  RunAttention(f16, seed++);
  AttnCase bf16{"bf16", 1, 12, 12, 4, 1, 64, 64, "causal"};
  bf16.dt = KILN_DTYPE_BF16;
  RunAttention(bf16, seed++);
  AttnCase qkv{"int8 kv", 2, 3, 10, 4, 2, 32, 32, "causal"};
  qkv.quant_kv = true;
  RunAttention(qkv, seed++);
}

TEST(LlmAttention, ErrorsAndUnimplemented) {
  std::vector<float> v;
  auto base = [&](KernelHarness& h, int64_t hkv) {
    h.In(Random(KILN_DTYPE_F32, {1, 2, 4, 8}, 1, &v));
    h.In(Random(KILN_DTYPE_F32, {1, 3, hkv, 8}, 2, &v));
    h.In(Random(KILN_DTYPE_F32, {1, 3, hkv, 8}, 3, &v));
  };
  {
    KernelHarness h("attention");
    base(h, 3);
    h.None()
        .None()
        .None()
        .Out(KILN_DTYPE_F32, {1, 2, 4, 8})
        .AttrS("mask", "causal");
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("query heads 4 are not a multiple of kv heads 3"),
              std::string::npos)
        << m;
  }
  {
    KernelHarness h("attention");
    base(h, 2);
    h.None()
        .None()
        .None()
        .Out(KILN_DTYPE_F32, {1, 2, 4, 8})
        .AttrS("mask", "tree");
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("mask kind tree needs a tree_mask operand"),
              std::string::npos)
        << m;
  }
  {
    KernelHarness h("attention");
    base(h, 2);
    h.None().In(Random(KILN_DTYPE_F32, {1, 4, 3, 3}, 4, &v)).None();
    h.Out(KILN_DTYPE_F32, {1, 2, 4, 8}).AttrS("mask", "none");
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("attn_mask shape [1, 4, 3, 3] does not broadcast"),
              std::string::npos)
        << m;
  }
  {
    // A plain tensor where the cache goes. (Cache operands proper are
    // tested in kernels_kv_cache_test.cc.)
    KernelHarness h("attention");
    h.In(Random(KILN_DTYPE_F32, {1, 2, 4, 8}, 1, &v)).None().None();
    h.In(Random(KILN_DTYPE_F32, {4}, 2, &v)).None().None();
    h.Out(KILN_DTYPE_F32, {1, 2, 4, 8}).AttrS("mask", "causal");
    kiln_status_t s = h.Run();
    EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_status_message(s))
                  .find("the cache(...) operand is not a !kiln.kv_cache"),
              std::string::npos)
        << kiln_status_message(s);
    kiln_status_free(s);
  }
  {
    KernelHarness h("attention");
    base(h, 2);
    h.None().None().None();
    h.In(HostTensor::Of<int32_t>(KILN_DTYPE_I32, {1, 4, 1, 1}, {0, 0, 0, 0}));
    h.Out(KILN_DTYPE_F32, {1, 2, 4, 8})
        .AttrS("mask", "sparse")
        .AttrS("sparsity", "block_sparse");
    kiln_status_t s = h.Run();
    EXPECT_EQ(kiln_status_code(s), KILN_STATUS_UNIMPLEMENTED);
    EXPECT_NE(std::string(kiln_status_message(s)).find("sparse"),
              std::string::npos);
    kiln_status_free(s);
  }
}

// ---------------------------------------------------------------------------
// GLU.

TEST(LlmGlu, ActivationsSplitAndFused) {
  uint32_t seed = 1700;
  for (const char* act : {"relu", "silu", "gelu", "gelu_tanh", "sigmoid"})
    for (bool fused : {false, true})
      for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_F16}) {
        SCOPED_TRACE(std::string("glu ") + act + (fused ? " fused " : " ") +
                     kiln_dtype_name(dt));
        const int64_t R = 37, F = 45;
        std::vector<float> g, u, gu;
        KernelHarness h("glu", 4);
        if (fused) {
          h.In(Random(dt, {R, 2 * F}, seed++, &gu, -4.f, 4.f)).None();
          g.resize(size_t(R * F));
          u.resize(size_t(R * F));
          for (int64_t r = 0; r < R; ++r)
            for (int64_t i = 0; i < F; ++i) {
              g[size_t(r * F + i)] = gu[size_t(r * 2 * F + i)];
              u[size_t(r * F + i)] = gu[size_t(r * 2 * F + F + i)];
            }
        } else {
          h.In(Random(dt, {R, F}, seed++, &g, -4.f, 4.f));
          h.In(Random(dt, {R, F}, seed++, &u));
        }
        h.Out(dt, {R, F}).AttrS("activation", act);
        ASSERT_EQ(h.RunMessage(), "");
        std::vector<double> want(g.size());
        for (size_t i = 0; i < g.size(); ++i)
          want[i] = RefAct(act, g[i]) * u[i];
        ExpectClose(h.Result(), want, TolFor(dt), "glu");
      }
}

// ---------------------------------------------------------------------------
// Embedding.

TEST(LlmEmbedding, PlainAndQuantizedTables) {
  std::vector<float> table;
  const std::vector<int64_t> ids = {3, 0, 49, 17, 17, 8};
  {
    KernelHarness h("embedding", 4);
    h.In(Random(KILN_DTYPE_F32, {50, 16}, 1800, &table));
    h.In(HostTensor::Of<int64_t>(KILN_DTYPE_I64, {2, 3}, ids))
        .Out(KILN_DTYPE_F32, {2, 3, 16});
    ASSERT_EQ(h.RunMessage(), "");
    std::vector<double> want;
    for (int64_t id : ids)
      want.insert(want.end(), table.begin() + id * 16,
                  table.begin() + id * 16 + 16);
    ExpectClose(h.Result(), want, {0, 0}, "f32 embedding");
  }
  {
    KernelHarness h("embedding", 4);
    h.In(Random(KILN_DTYPE_BF16, {50, 24}, 1801, &table));
    std::vector<int32_t> ids32(ids.begin(), ids.end());
    h.In(HostTensor::Of<int32_t>(KILN_DTYPE_I32, {6}, ids32))
        .Out(KILN_DTYPE_BF16, {6, 24});
    ASSERT_EQ(h.RunMessage(), "");
    std::vector<double> want;
    for (int64_t id : ids)
      want.insert(want.end(), table.begin() + id * 24,
                  table.begin() + id * 24 + 24);
    ExpectClose(h.Result(), want, {0, 0}, "bf16 embedding");
  }
  {
    Quant q =
        MakeQuant(KILN_DTYPE_U4, {50, 20}, {1, 8}, true, 1802, KILN_DTYPE_F16);
    KernelHarness h("embedding", 4);
    InQuant(h, q, KILN_DTYPE_F16);
    h.In(HostTensor::Of<int64_t>(KILN_DTYPE_I64, {6}, ids))
        .Out(KILN_DTYPE_F16, {6, 20});
    ASSERT_EQ(h.RunMessage(), "");
    std::vector<double> want;
    for (int64_t id : ids)
      want.insert(want.end(), q.deq.begin() + id * 20,
                  q.deq.begin() + id * 20 + 20);
    ExpectClose(h.Result(), want, TolFor(KILN_DTYPE_F16), "ui4 embedding");
  }
}

TEST(LlmEmbedding, IdOutOfRangeNamesIdPositionAndVocab) {
  std::vector<float> table;
  KernelHarness h("embedding");
  h.In(Random(KILN_DTYPE_F32, {50, 4}, 1, &table));
  h.In(HostTensor::Of<int64_t>(KILN_DTYPE_I64, {2, 3}, {1, 2, 3, 4, 50, 6}));
  h.Out(KILN_DTYPE_F32, {2, 3, 4});
  std::string m = h.RunMessage();
  EXPECT_NE(m.find("id 50 at position [1, 1]"), std::string::npos) << m;
  EXPECT_NE(m.find("[0, 50)"), std::string::npos) << m;

  KernelHarness neg("embedding");
  neg.In(Random(KILN_DTYPE_F32, {50, 4}, 1, &table));
  neg.In(HostTensor::Of<int32_t>(KILN_DTYPE_I32, {3}, {1, -2, 3}))
      .Out(KILN_DTYPE_F32, {3, 4});
  m = neg.RunMessage();
  EXPECT_NE(m.find("id -2 at position [1]"), std::string::npos) << m;
}

// ---------------------------------------------------------------------------
// Dequantize / qtensor_data.

TEST(LlmQuant, DequantizeBlockLayouts) {
  struct Case {
    kiln_dtype_t st;
    Dims shape, block;
    bool zp;
    kiln_dtype_t scale_dt, out;
  };
  const Case cases[] = {
      {KILN_DTYPE_U4,
       {3, 5, 9},
       {2, 1, 4},
       true,
       KILN_DTYPE_F32,
       KILN_DTYPE_F32},
      {KILN_DTYPE_I4, {4, 7}, {0, 3}, true, KILN_DTYPE_F16, KILN_DTYPE_F16},
      {KILN_DTYPE_I8,
       {2, 3, 8},
       {0, 0, 0},
       false,
       KILN_DTYPE_F32,
       KILN_DTYPE_F32},
      {KILN_DTYPE_U8, {6, 10}, {4, 0}, true, KILN_DTYPE_BF16, KILN_DTYPE_BF16},
      {KILN_DTYPE_F8E4M3FN,
       {5, 16},
       {1, 0},
       false,
       KILN_DTYPE_F32,
       KILN_DTYPE_F32},
      {KILN_DTYPE_F8E5M2,
       {5, 16},
       {0, 8},
       false,
       KILN_DTYPE_F16,
       KILN_DTYPE_F32},
      {KILN_DTYPE_U4,
       {300, 64},
       {1, 32},
       false,
       KILN_DTYPE_F32,
       KILN_DTYPE_F32},
  };
  uint32_t seed = 1900;
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string("dequantize ") + kiln_dtype_name(c.st) + " " +
                 c.shape.str() + " block " + c.block.str());
    Quant q = MakeQuant(c.st, c.shape, c.block, c.zp, seed++, c.scale_dt);
    KernelHarness h("dequantize", 4);
    InQuant(h, q, c.out).Out(c.out, c.shape);
    ASSERT_EQ(h.RunMessage(), "");
    std::vector<double> want(q.deq.begin(), q.deq.end());
    // The reference is the exact product in f32; the result rounds it once.
    ExpectClose(h.Result(), want,
                c.out == KILN_DTYPE_F32 ? Tol{1e-7, 1e-6} : TolFor(c.out),
                "dequantize");
  }
}

TEST(LlmQuant, QTensorDataReturnsStoredValues) {
  Quant q = MakeQuant(KILN_DTYPE_U4, {3, 7}, {1, 0}, true, 2000);
  KernelHarness h("qtensor_data");
  InQuant(h, q).Out(KILN_DTYPE_U4, {3, 7});
  ASSERT_EQ(h.RunMessage(), "");
  EXPECT_EQ(h.Result().bytes, q.data.bytes);

  KernelHarness wrong("qtensor_data");
  InQuant(wrong, q).Out(KILN_DTYPE_I8, {3, 7});
  std::string m = wrong.RunMessage();
  EXPECT_NE(m.find("not the storage type ui4"), std::string::npos) << m;
}

// kiln.quantize: results are the stored values (and, dynamic, the scales and
// zero points). Integer storage must equal the naive formula exactly
// (round half to even, saturate); dynamic schemes must round-trip within
// half a quantization step.
TEST(LlmQuant, QuantizeStaticPerTensorUint8MatchesFormula) {
  std::vector<float> x = RandomFloats(6 * 10, 91, -3.f, 3.f);
  x[3] = 0.5f * 0.02f;  // a tie: rounds to even
  x[4] = 1e6f;          // saturates
  KernelHarness h("quantize");
  h.In(HostTensor::Of(KILN_DTYPE_F32, {6, 10}, x))
      .In(HostTensor::Of(KILN_DTYPE_F32, {1, 1}, std::vector<float>{0.02f}))
      .In(HostTensor::Of(KILN_DTYPE_U8, {1, 1}, std::vector<uint8_t>{128}))
      .Out(KILN_DTYPE_U8, {6, 10})
      .AttrInts("block", {0, 0});
  ASSERT_EQ(h.RunMessage(), "");
  std::vector<uint8_t> got = h.Result().values<uint8_t>();
  for (size_t i = 0; i < x.size(); ++i) {
    float q = std::nearbyint(x[i] / 0.02f) + 128.f;
    q = std::min(255.f, std::max(0.f, q));
    ASSERT_EQ(int(got[i]), int(q)) << i << " x=" << x[i];
  }
}

TEST(LlmQuant, QuantizeBlockedInt4Symmetric) {
  const int64_t rows = 5, cols = 67, blk = 32, nb = 3;  // a ragged last block
  std::vector<float> x = RandomFloats(size_t(rows * cols), 92, -1.f, 1.f);
  std::vector<float> sc = RandomFloats(size_t(rows * nb), 93, 0.05f, 0.2f);
  KernelHarness h("quantize");
  h.In(HostTensor::Of(KILN_DTYPE_F32, {rows, cols}, x))
      .In(HostTensor::Of(KILN_DTYPE_F32, {rows, nb}, sc))
      .None()
      .Out(KILN_DTYPE_I4, {rows, cols})
      .AttrInts("block", {1, blk});
  ASSERT_EQ(h.RunMessage(), "");
  const HostTensor& r = h.Result();
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      float q = std::nearbyint(x[size_t(i * cols + j)] / sc[size_t(i * nb + j / blk)]);
      q = std::min(7.f, std::max(-8.f, q));
      uint8_t byte = r.as<uint8_t>()[i * ((cols + 1) / 2) + j / 2];
      int v = (j % 2) ? byte >> 4 : byte & 0xF;
      if (v >= 8) v -= 16;
      ASSERT_EQ(v, int(q)) << i << "," << j;
    }
}

TEST(LlmQuant, QuantizeDynamicPerRowRoundTrips) {
  const int64_t rows = 7, cols = 50;
  std::vector<float> x = RandomFloats(size_t(rows * cols), 94, -4.f, 2.f);
  for (bool asym : {false, true}) {
    KernelHarness h("quantize", 4);
    h.In(HostTensor::Of(KILN_DTYPE_F32, {rows, cols}, x)).None().None()
        .Out(asym ? KILN_DTYPE_U8 : KILN_DTYPE_I8, {rows, cols})
        .Out(KILN_DTYPE_F32, {rows, 1});
    if (asym) h.Out(KILN_DTYPE_U8, {rows, 1});
    h.AttrInts("block", {1, 0});
    ASSERT_EQ(h.RunMessage(), "") << asym;
    std::vector<float> scale = h.Result(1).values<float>();
    for (int64_t i = 0; i < rows; ++i) {
      float lo = 0, hi = 0;
      for (int64_t j = 0; j < cols; ++j) {
        lo = std::min(lo, x[size_t(i * cols + j)]);
        hi = std::max(hi, x[size_t(i * cols + j)]);
      }
      float want = asym ? (hi - lo) / 255.f : std::max(-lo, hi) / 127.f;
      EXPECT_NEAR(scale[size_t(i)], want, 1e-6f * want) << i;
      int zp = asym ? h.Result(2).as<uint8_t>()[i] : 0;
      for (int64_t j = 0; j < cols; ++j) {
        int q = asym ? int(h.Result().as<uint8_t>()[i * cols + j])
                     : int(h.Result().as<int8_t>()[i * cols + j]);
        float back = float(q - zp) * scale[size_t(i)];
        ASSERT_NEAR(back, x[size_t(i * cols + j)], 0.5001f * scale[size_t(i)] + 1e-6f)
            << asym << " " << i << "," << j;
      }
    }
  }
}

TEST(LlmQuant, QuantizeFloat8Saturates) {
  std::vector<float> x = {0.f, 1.f, -2.5f, 1000.f, -1e9f, 0.3f};
  KernelHarness h("quantize");
  h.In(HostTensor::Of(KILN_DTYPE_F32, {6}, x))
      .In(HostTensor::Of(KILN_DTYPE_F32, {1}, std::vector<float>{2.f}))
      .None()
      .Out(KILN_DTYPE_F8E4M3FN, {6})
      .AttrInts("block", {0});
  ASSERT_EQ(h.RunMessage(), "");
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_EQ(h.Result().as<uint8_t>()[i], FloatToF8E4M3FN(x[i] / 2.f)) << i;
  EXPECT_EQ(F8E4M3FNToFloat(h.Result().as<uint8_t>()[3]), 448.f);
}

TEST(LlmQuant, QuantizeRejectsMismatchedScales) {
  KernelHarness h("quantize");
  h.In(HostTensor::Of(KILN_DTYPE_F32, {4, 64}, RandomFloats(256, 95)))
      .In(HostTensor::Of(KILN_DTYPE_F32, {4, 3}, RandomFloats(12, 96, 0.1f, 0.2f)))
      .None()
      .Out(KILN_DTYPE_I8, {4, 64})
      .AttrInts("block", {1, 32});
  std::string m = h.RunMessage();
  EXPECT_NE(m.find("scales are [4, 3]; input [4, 64] with block [1, 32] needs [4, 2]"),
            std::string::npos) << m;
}

TEST(LlmUtil, BranchlessHalfConversionIsExact) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = HalfToFloat(uint16_t(h)),
                got = HalfToFloatFast(uint16_t(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(FloatBits(got), FloatBits(want)) << h;
    }
  }
}

}  // namespace
}  // namespace kiln::testing
