// The KV-cache kernels (kv_cache_append, kv_cache_read, shape_of of a cache)
// and kiln.attention reading a cache(...) operand, on random data from fixed
// seeds (kernel_test_util.h's Random: never zero, |x| in [0.25, 2]).
//
// Attention over a cache is checked against attention over the same rows
// given as kv(key, value) tensors (whose kernel kernels_llm_test.cc checks
// against a naive reference). Both paths see the same values converted
// exactly to f32, so they differ at most by the rounding of the result;
// tolerances are relative to the data scale (values up to 2):
//   f32: 1e-5, f16: 2e-3, bf16: 1.6e-2 (abs = tol * 2, rel = tol).
// Appends and reads move bytes: they must be exact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "cpu/llm_util.h"
#include "kernel_test_util.h"

namespace kiln::testing {
namespace {

constexpr double kDataScale = 2.0;  // |x| <= 2 for Random's default

double AttnTol(kiln_dtype_t t) {
  switch (t) {
    case KILN_DTYPE_F16:
      return 2e-3;
    case KILN_DTYPE_BF16:
      return 1.6e-2;
    default:
      return 1e-5;
  }
}

std::string Name(kiln_dtype_t t) { return kiln_dtype_name(t); }

// ---------------------------------------------------------------------------
// Helpers on caches and BSHD tensors.

double KeyAt(const HostCache& c, int64_t b, int64_t h, int64_t t, int64_t d) {
  return GetD(*c.key, c.view.KeyOffset(b, h, t) + d);
}
double ValueAt(const HostCache& c, int64_t b, int64_t h, int64_t t, int64_t d) {
  return GetD(*c.value, c.view.ValueOffset(b, h, t) + d);
}

/// Writes BSHD key [B, S, Hkv, D] / value [B, S, Hkv, Dv] into rows
/// [start, start + S) of `c` (the test's own copy, independent of the
/// kernels).
void WriteRows(HostCache& c, const HostTensor& k, const HostTensor& v,
               int64_t start) {
  const KvCache& cv = c.view;
  const int64_t S = k.shape[1];
  for (int64_t b = 0; b < cv.batch; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < cv.kv_heads; ++h) {
        for (int64_t d = 0; d < cv.head_dim; ++d)
          SetD(*c.key, cv.KeyOffset(b, h, start + s) + d,
               GetD(k, ((b * S + s) * cv.kv_heads + h) * cv.head_dim + d));
        for (int64_t d = 0; d < cv.v_head_dim; ++d)
          SetD(*c.value, cv.ValueOffset(b, h, start + s) + d,
               GetD(v, ((b * S + s) * cv.kv_heads + h) * cv.v_head_dim + d));
      }
}

/// Fills rows [length, capacity) with NaN, so that a kernel reading past the
/// live rows shows in its results.
void PoisonTail(HostCache& c) {
  const KvCache& cv = c.view;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t b = 0; b < cv.batch; ++b)
    for (int64_t h = 0; h < cv.kv_heads; ++h)
      for (int64_t t = cv.length; t < cv.capacity; ++t) {
        for (int64_t d = 0; d < cv.head_dim; ++d)
          SetD(*c.key, cv.KeyOffset(b, h, t) + d, nan);
        for (int64_t d = 0; d < cv.v_head_dim; ++d)
          SetD(*c.value, cv.ValueOffset(b, h, t) + d, nan);
      }
}

/// a and b concatenated along the token axis (BSHD, same dtype).
HostTensor ConcatTokens(const HostTensor& a, const HostTensor& b) {
  const int64_t B = a.shape[0], Sa = a.shape[1], Sb = b.shape[1];
  const int64_t row = a.shape[2] * a.shape[3];
  const size_t esize = kiln_dtype_bit_width(a.dtype) / 8;
  HostTensor out(a.dtype, {B, Sa + Sb, a.shape[2], a.shape[3]});
  for (int64_t n = 0; n < B; ++n) {
    std::memcpy(out.bytes.data() + size_t(n * (Sa + Sb) * row) * esize,
                a.bytes.data() + size_t(n * Sa * row) * esize,
                size_t(Sa * row) * esize);
    std::memcpy(out.bytes.data() + size_t((n * (Sa + Sb) + Sa) * row) * esize,
                b.bytes.data() + size_t(n * Sb * row) * esize,
                size_t(Sb * row) * esize);
  }
  return out;
}

/// Checks that the cache's rows [0, T) hold `k` / `v` ([B, T, Hkv, D / Dv])
/// exactly.
void ExpectRows(const HostCache& c, const HostTensor& k, const HostTensor& v,
                const std::string& what) {
  const KvCache& cv = c.view;
  const int64_t T = k.shape[1];
  ASSERT_EQ(cv.length, T) << what;
  int bad = 0;
  for (int64_t b = 0; b < cv.batch; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < cv.kv_heads; ++h) {
        for (int64_t d = 0; d < cv.head_dim; ++d) {
          const double want =
              GetD(k, ((b * T + t) * cv.kv_heads + h) * cv.head_dim + d);
          if (KeyAt(c, b, h, t, d) != want && ++bad <= 5)
            ADD_FAILURE() << what << ": key (b " << b << ", h " << h << ", t "
                          << t << ", d " << d << ") is " << KeyAt(c, b, h, t, d)
                          << ", expected " << want;
        }
        for (int64_t d = 0; d < cv.v_head_dim; ++d) {
          const double want =
              GetD(v, ((b * T + t) * cv.kv_heads + h) * cv.v_head_dim + d);
          if (ValueAt(c, b, h, t, d) != want && ++bad <= 5)
            ADD_FAILURE() << what << ": value (b " << b << ", h " << h
                          << ", t " << t << ", d " << d << ") is "
                          << ValueAt(c, b, h, t, d) << ", expected " << want;
        }
      }
  EXPECT_EQ(bad, 0) << what;
}

/// The bytes of rows [begin, end) of every (sequence, head), keys then
/// values, to check that an append leaves rows it does not own alone.
std::vector<uint8_t> RowBytes(const HostCache& c, int64_t begin, int64_t end) {
  const KvCache& cv = c.view;
  const size_t esize = kiln_dtype_bit_width(cv.dtype) / 8;
  std::vector<uint8_t> out;
  for (int64_t bh = 0; bh < cv.batch * cv.kv_heads; ++bh)
    for (int64_t t = begin; t < end; ++t) {
      const uint8_t* k =
          c.key->bytes.data() + size_t((bh * cv.capacity + t) * cv.head_dim) * esize;
      const uint8_t* v = c.value->bytes.data() +
                         size_t((bh * cv.capacity + t) * cv.v_head_dim) * esize;
      out.insert(out.end(), k, k + size_t(cv.head_dim) * esize);
      out.insert(out.end(), v, v + size_t(cv.v_head_dim) * esize);
    }
  return out;
}

/// A kv_cache_append launch of `k` / `v` onto `cache`.
void SetUpAppend(KernelHarness& h, const HostCache& cache, const HostTensor& k,
                 const HostTensor& v) {
  h.InCache(cache).In(k).In(v).None().None().OutCache();
}

/// kv_cache_read of `cache` into [B, T, Hkv, D] / [B, T, Hkv, Dv].
void ExpectReadGives(const HostCache& cache, const HostTensor& k,
                     const HostTensor& v, const std::string& what) {
  KernelHarness h("kv_cache_read");
  const KvCache& c = cache.view;
  h.InCache(cache)
      .Out(c.dtype, {c.batch, -1, c.kv_heads, c.head_dim})
      .Out(c.dtype, {c.batch, -1, c.kv_heads, c.v_head_dim});
  ASSERT_EQ(h.RunMessage(), "") << what;
  EXPECT_EQ(Str(h.Result(0).shape), Str(k.shape)) << what;
  EXPECT_EQ(Str(h.Result(1).shape), Str(v.shape)) << what;
  ExpectExact(h.Result(0), ToD(k), what + " read key");
  ExpectExact(h.Result(1), ToD(v), what + " read value");
}

// ---------------------------------------------------------------------------
// Attention over a cache vs over kv tensors.

struct CacheAttnCase {
  std::string name;
  kiln_dtype_t dt;
  int64_t B, Sq, T, Hq, Hkv, D, Dv, capacity;
  std::string mask = "none";
  int64_t window = 0, sink = 0;
  bool padding = false;  // a boolean [B, 1, 1, T] attn_mask
  bool tree = false;     // mask kind tree with a [Sq, Sq] tree_mask
  double softcap = 0;
};

std::string Describe(const CacheAttnCase& c) {
  return c.name + " " + Name(c.dt) + " B=" + std::to_string(c.B) +
         " Sq=" + std::to_string(c.Sq) + " T=" + std::to_string(c.T) +
         " Hq=" + std::to_string(c.Hq) + " Hkv=" + std::to_string(c.Hkv) +
         " cap=" + std::to_string(c.capacity) + " mask=" + c.mask +
         (c.padding ? " +padding" : "");
}

/// Adds the operands after K/V (attn_mask, tree_mask), the result and the
/// attributes of case `c`.
void FinishAttention(KernelHarness& h, const CacheAttnCase& c,
                     const HostTensor& pad, const HostTensor& tree) {
  if (c.padding) h.In(pad);
  else h.None();
  if (c.tree) h.In(tree);
  else h.None();
  h.Out(c.dt, {c.B, c.Sq, c.Hq, c.Dv}).AttrS("mask", c.tree ? "tree" : c.mask);
  if (c.mask == "sliding_window")
    h.Attr("mask_window", c.window).Attr("mask_sink", c.sink);
  if (c.softcap) h.AttrF("softcap", c.softcap);
}

void RunCacheVsKv(const CacheAttnCase& c, uint32_t seed) {
  SCOPED_TRACE(Describe(c) + " seed=" + std::to_string(seed));
  HostTensor q = Random(c.dt, {c.B, c.Sq, c.Hq, c.D}, seed);
  HostTensor k = Random(c.dt, {c.B, c.T, c.Hkv, c.D}, seed + 1);
  HostTensor v = Random(c.dt, {c.B, c.T, c.Hkv, c.Dv}, seed + 2);
  // Padding: sequence b hides its first b keys.
  HostTensor pad(KILN_DTYPE_I1, {c.B, 1, 1, c.T});
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.T; ++j) pad.bytes[size_t(b * c.T + j)] = j >= b;
  // A token tree over the new tokens: each sees itself, the root and every
  // other earlier one.
  HostTensor tree(KILN_DTYPE_I1, {c.Sq, c.Sq});
  for (int64_t i = 0; i < c.Sq; ++i)
    for (int64_t j = 0; j <= i; ++j)
      tree.bytes[size_t(i * c.Sq + j)] = j == i || j == 0 || (i + j) % 2 == 0;

  KernelHarness ref("attention");
  ref.In(q).In(k).In(v).None();
  FinishAttention(ref, c, pad, tree);
  ASSERT_EQ(ref.RunMessage(), "");

  KernelHarness h("attention");
  h.In(q).None().None().InCache(c.dt, c.B, c.Hkv, c.D, c.Dv, c.capacity, c.T);
  WriteRows(h.CacheOperand(3), k, v, 0);
  PoisonTail(h.CacheOperand(3));
  FinishAttention(h, c, pad, tree);
  ASSERT_EQ(h.RunMessage(), "");
  const double tol = AttnTol(c.dt);
  ExpectClose(h.Result(), ToD(ref.Result()), tol, tol * kDataScale,
              "attention over the cache");
}

TEST(KvCacheAttention, EqualsAttentionOverKvTensors) {
  uint32_t seed = 3000;
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16})
    for (int64_t hkv : {2, 4})
      for (const char* mask : {"none", "causal", "sliding_window"})
        for (int64_t sq : {1, 5})
          for (bool padding : {false, true}) {
            CacheAttnCase c{"gqa", dt, 2, sq, 13, 4, hkv, 16, 8, 20, mask};
            if (c.mask == "sliding_window") {
              c.window = 4;
              c.sink = 1;
            }
            c.padding = padding;
            RunCacheVsKv(c, seed += 3);
          }
}

TEST(KvCacheAttention, LongCachesTreesAndSoftcap) {
  uint32_t seed = 3500;
  // Several 64-key blocks: the block offsets go through the cache strides.
  RunCacheVsKv({"long decode", KILN_DTYPE_F32, 2, 1, 150, 8, 2, 32, 32, 256,
                "causal"},
               seed++);
  RunCacheVsKv({"long chunk", KILN_DTYPE_BF16, 1, 7, 140, 4, 1, 16, 24, 141,
                "causal"},
               seed++);
  CacheAttnCase sw{"window skipping blocks", KILN_DTYPE_F32, 1, 3, 200, 4, 2,
                   16, 16, 300, "sliding_window"};
  sw.window = 20;
  sw.sink = 4;
  RunCacheVsKv(sw, seed++);
  // A cache filled to capacity: no spare rows.
  RunCacheVsKv({"full cache", KILN_DTYPE_F16, 2, 5, 12, 4, 2, 16, 16, 12,
                "causal"},
               seed++);
  CacheAttnCase tree{"tree", KILN_DTYPE_F32, 2, 5, 12, 4, 2, 16, 16, 16};
  tree.tree = true;
  RunCacheVsKv(tree, seed++);
  CacheAttnCase cap{"softcap", KILN_DTYPE_F32, 2, 5, 12, 4, 2, 16, 16, 16,
                    "causal"};
  cap.softcap = 2.0;
  cap.padding = true;
  RunCacheVsKv(cap, seed++);
}

TEST(KvCacheAttention, EveryIsaVariant) {
  for (int isa = 0; isa <= 2; ++isa) {
    SCOPED_TRACE("isa cap " + std::to_string(isa));
    SetLlmIsaCapForTesting(isa);
    RunCacheVsKv({"isa", KILN_DTYPE_F32, 2, 5, 70, 4, 2, 40, 24, 80, "causal"},
                 3600 + uint32_t(isa));
  }
  SetLlmIsaCapForTesting(-1);
}

TEST(KvCacheAttention, Errors) {
  const HostTensor q = Random(KILN_DTYPE_F32, {2, 1, 4, 8}, 1);
  auto run = [&](KernelHarness& h) {
    h.None().None().Out(KILN_DTYPE_F32, {2, 1, 4, 8}).AttrS("mask", "causal");
    kiln_status_t s = h.Run();
    std::pair<kiln_status_code_t, std::string> r{
        kiln_status_code(s), s ? kiln_status_message(s) : ""};
    kiln_status_free(s);
    return r;
  };
  {
    KernelHarness h("attention");
    h.In(q).In(Random(KILN_DTYPE_F32, {2, 3, 2, 8}, 2))
        .In(Random(KILN_DTYPE_F32, {2, 3, 2, 8}, 3))
        .InCache(KILN_DTYPE_F32, 2, 2, 8, 8, 4, 3);
    auto [code, m] = run(h);
    EXPECT_EQ(code, KILN_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(m.find("from kv(key, value) or from cache(...), not both"),
              std::string::npos)
        << m;
  }
  {
    KernelHarness h("attention");
    // The element type (what attention reads) must be a float type.
    h.In(q).None().None().InCache(KILN_DTYPE_I8, 2, 2, 8, 8, 4, 3);
    auto [code, m] = run(h);
    EXPECT_EQ(code, KILN_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(m.find("KV cache element type i8 is not f32, f16 or bf16"),
              std::string::npos)
        << m;
  }
  {
    KernelHarness h("attention");
    h.In(q).None().None().InCache(KILN_DTYPE_F32, 3, 2, 8, 8, 4, 3);
    auto [code, m] = run(h);
    EXPECT_EQ(code, KILN_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(m.find("cache [batch, tokens, kv_heads, head_dim] [3, 3, 2, 8] "
                     "does not match query [2, 1, 4, 8] (batch, head_dim)"),
              std::string::npos)
        << m;
  }
  {
    KernelHarness h("attention");
    h.In(q).None().None().InCache(KILN_DTYPE_F32, 2, 3, 8, 8, 4, 3);
    auto [code, m] = run(h);
    EXPECT_EQ(code, KILN_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(m.find("query heads 4 are not a multiple of kv heads 3"),
              std::string::npos)
        << m;
  }
}

// ---------------------------------------------------------------------------
// kv_cache_append and kv_cache_read.

TEST(KvCacheAppend, WritesAfterTheCachedRowsAndReadsBack) {
  uint32_t seed = 4000;
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16}) {
    SCOPED_TRACE(Name(dt));
    const int64_t B = 2, H = 3, D = 8, Dv = 4, cap = 12;
    // Three cached tokens, then appends of four and two.
    HostTensor k0 = Random(dt, {B, 3, H, D}, seed++),
               v0 = Random(dt, {B, 3, H, Dv}, seed++);
    HostTensor k1 = Random(dt, {B, 4, H, D}, seed++),
               v1 = Random(dt, {B, 4, H, Dv}, seed++);
    HostTensor k2 = Random(dt, {B, 2, H, D}, seed++),
               v2 = Random(dt, {B, 2, H, Dv}, seed++);
    HostCache cache(dt, B, H, D, Dv, cap, 3, /*grows=*/false);
    WriteRows(cache, k0, v0, 0);
    const std::vector<uint8_t> tail = RowBytes(cache, 9, cap);

    KernelHarness a("kv_cache_append");
    SetUpAppend(a, cache, k1, v1);
    ASSERT_EQ(a.RunMessage(), "");
    const HostCache& r1 = a.ResultCache();
    EXPECT_EQ(r1.view.length, 7);
    EXPECT_EQ(r1.view.capacity, cap);
    EXPECT_EQ(r1.view.key, cache.view.key) << "updated in place";
    EXPECT_EQ(r1.view.value, cache.view.value) << "updated in place";
    const HostTensor k01 = ConcatTokens(k0, k1), v01 = ConcatTokens(v0, v1);
    ExpectRows(r1, k01, v01, "first append");
    ExpectReadGives(r1, k01, v01, "first append");

    KernelHarness a2("kv_cache_append");
    SetUpAppend(a2, r1, k2, v2);
    ASSERT_EQ(a2.RunMessage(), "");
    const HostCache& r2 = a2.ResultCache();
    EXPECT_EQ(r2.view.length, 9);
    const HostTensor k012 = ConcatTokens(k01, k2), v012 = ConcatTokens(v01, v2);
    ExpectRows(r2, k012, v012, "second append");
    ExpectReadGives(r2, k012, v012, "second append");
    EXPECT_EQ(RowBytes(r2, 9, cap), tail) << "rows past the length changed";
  }
}

TEST(KvCacheAppend, GrowableCacheKeepsEveryHeadsRows) {
  uint32_t seed = 4100;
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_BF16}) {
    SCOPED_TRACE(Name(dt));
    const int64_t B = 2, H = 2, D = 8, Dv = 16;
    HostTensor k0 = Random(dt, {B, 3, H, D}, seed++),
               v0 = Random(dt, {B, 3, H, Dv}, seed++);
    HostTensor k1 = Random(dt, {B, 3, H, D}, seed++),
               v1 = Random(dt, {B, 3, H, Dv}, seed++);
    HostCache cache(dt, B, H, D, Dv, 4, 3, /*grows=*/true);
    WriteRows(cache, k0, v0, 0);
    KernelHarness a("kv_cache_append");
    SetUpAppend(a, cache, k1, v1);
    ASSERT_EQ(a.RunMessage(), "");
    const HostCache& r = a.ResultCache();
    EXPECT_EQ(r.view.length, 6);
    EXPECT_GE(r.view.capacity, 6);
    const HostTensor k01 = ConcatTokens(k0, k1), v01 = ConcatTokens(v0, v1);
    ExpectRows(r, k01, v01, "grown");
    ExpectReadGives(r, k01, v01, "grown");
  }
}

TEST(KvCacheAppend, ZeroTokensAndEmptyCache) {
  const kiln_dtype_t dt = KILN_DTYPE_F16;
  HostCache empty(dt, 2, 2, 8, 8, 4, 0, false);
  ExpectReadGives(empty, HostTensor(dt, {2, 0, 2, 8}), HostTensor(dt, {2, 0, 2, 8}),
                  "empty cache");
  KernelHarness a("kv_cache_append");
  SetUpAppend(a, empty, HostTensor(dt, {2, 0, 2, 8}), HostTensor(dt, {2, 0, 2, 8}));
  ASSERT_EQ(a.RunMessage(), "");
  EXPECT_EQ(a.ResultCache().view.length, 0);
}

TEST(KvCacheAppend, FixedCapacityTooSmallIsResourceExhausted) {
  const kiln_dtype_t dt = KILN_DTYPE_F32;
  HostCache cache(dt, 2, 2, 8, 8, 4, 3, /*grows=*/false);
  WriteRows(cache, Random(dt, {2, 3, 2, 8}, 1), Random(dt, {2, 3, 2, 8}, 2), 0);
  const std::vector<uint8_t> before = RowBytes(cache, 0, 4);
  KernelHarness a("kv_cache_append");
  SetUpAppend(a, cache, Random(dt, {2, 2, 2, 8}, 3), Random(dt, {2, 2, 2, 8}, 4));
  kiln_status_t s = a.Run();
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_RESOURCE_EXHAUSTED);
  const std::string m = s ? kiln_status_message(s) : "";
  kiln_status_free(s);
  EXPECT_NE(m.find("capacity of 4 tokens but 5 are needed"), std::string::npos) << m;
  EXPECT_EQ(RowBytes(cache, 0, 4), before) << "a failed append wrote rows";
}

TEST(KvCacheAppend, MismatchesAreInvalidArguments) {
  const kiln_dtype_t f32 = KILN_DTYPE_F32;
  struct Case {
    HostTensor k, v;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({Random(f32, {3, 1, 2, 8}, 1), Random(f32, {3, 1, 2, 4}, 2),
                   "key [3, 1, 2, 8] has batch 3 but the KV cache has 2"});
  cases.push_back({Random(f32, {2, 1, 3, 8}, 1), Random(f32, {2, 1, 3, 4}, 2),
                   "key [2, 1, 3, 8] has kv_heads 3 but the KV cache has 2"});
  cases.push_back({Random(f32, {2, 1, 2, 4}, 1), Random(f32, {2, 1, 2, 4}, 2),
                   "key [2, 1, 2, 4] has head_dim 4 but the KV cache has 8"});
  cases.push_back({Random(f32, {2, 1, 2, 8}, 1), Random(f32, {2, 1, 2, 8}, 2),
                   "value [2, 1, 2, 8] has v_head_dim 8 but the KV cache has 4"});
  cases.push_back({Random(KILN_DTYPE_F16, {2, 1, 2, 8}, 1),
                   Random(KILN_DTYPE_F16, {2, 1, 2, 4}, 2),
                   "key element type f16 does not match the KV cache's f32"});
  cases.push_back({Random(f32, {2, 2, 2, 8}, 1), Random(f32, {2, 1, 2, 4}, 2),
                   "key [2, 2, 2, 8] and value [2, 1, 2, 4] hold different "
                   "numbers of tokens"});
  cases.push_back({Random(f32, {2, 2, 8}, 1), Random(f32, {2, 1, 2, 4}, 2),
                   "key [2, 2, 8] must be [batch, tokens, kv_heads, head_dim]"});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    HostCache cache(f32, 2, 2, 8, 4, 8, 2, false);
    KernelHarness a("kv_cache_append");
    SetUpAppend(a, cache, c.k, c.v);
    kiln_status_t s = a.Run();
    EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
    const std::string m = s ? kiln_status_message(s) : "";
    kiln_status_free(s);
    EXPECT_NE(m.find(c.message), std::string::npos) << m;
  }
}

TEST(KvCacheAppend, StaticScalesAreUnimplemented) {
  // scales(...) operands (static per-head scales): not on the CPU yet.
  // Quantized caches with per-token scales: kernels_kv_layout_test.cc.
  HostCache cache(KILN_DTYPE_F32, 1, 2, 8, 8, 8, 2, false);
  KernelHarness a("kv_cache_append");
  a.InCache(cache)
      .In(Random(KILN_DTYPE_F32, {1, 1, 2, 8}, 1))
      .In(Random(KILN_DTYPE_F32, {1, 1, 2, 8}, 2))
      .In(Random(KILN_DTYPE_F32, {2, 1}, 3, 2.0, true))
      .In(Random(KILN_DTYPE_F32, {2, 1}, 4, 2.0, true))
      .OutCache();
  kiln_status_t s = a.Run();
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_UNIMPLEMENTED);
  const std::string m = s ? kiln_status_message(s) : "";
  kiln_status_free(s);
  EXPECT_NE(m.find("static KV scales (scales(...) operands) are not supported"),
            std::string::npos)
      << m;
}

TEST(KvCacheRead, ResultTypeMustBeTheCachesType) {
  KernelHarness h("kv_cache_read");
  h.InCache(KILN_DTYPE_BF16, 1, 2, 8, 8, 8, 2)
      .Out(KILN_DTYPE_BF16, {1, -1, 2, 8})
      .Out(KILN_DTYPE_F32, {1, -1, 2, 8});
  const std::string m = h.RunMessage();
  EXPECT_NE(m.find("value result element type f32 does not match the KV "
                   "cache's bf16"),
            std::string::npos)
      << m;
}

// ---------------------------------------------------------------------------
// shape_of.

TEST(KvCacheShapeOf, IsTheKeysLogicalShape) {
  KernelHarness h("shape_of");
  h.InCache(KILN_DTYPE_F16, 2, 3, 8, 4, 16, 5).Out(KILN_DTYPE_I64, {4});
  ASSERT_EQ(h.RunMessage(), "");
  EXPECT_EQ(h.Result().values<int64_t>(), (std::vector<int64_t>{2, 5, 3, 8}));

  KernelHarness bad("shape_of");
  bad.InCache(KILN_DTYPE_F16, 2, 3, 8, 4, 16, 5).Out(KILN_DTYPE_I64, {3});
  EXPECT_NE(bad.RunMessage().find("declared [3]"), std::string::npos);
}

// ---------------------------------------------------------------------------
// In place vs concatenation: the decode loop at kernel level.

/// Runs a prefill of 5 tokens and three decode steps, appending each step's
/// keys and values to one cache and attending over it, against attention
/// over the concatenation of every step's keys and values so far (what the
/// graph computed before caches were updated in place).
void RunDecodeLoop(kiln_dtype_t dt, int64_t capacity, bool growable,
                   uint32_t seed) {
  SCOPED_TRACE(Name(dt) + " capacity " + std::to_string(capacity) +
               (growable ? " growable" : " fixed"));
  const int64_t B = 2, Hq = 4, Hkv = 2, D = 16, Dv = 8;
  HostCache cache(dt, B, Hkv, D, Dv, capacity, 0, growable);
  HostTensor all_k, all_v;
  const double tol = AttnTol(dt);
  for (int64_t step = 0, S = 5; step < 4; ++step, S = 1) {
    SCOPED_TRACE("step " + std::to_string(step));
    HostTensor q = Random(dt, {B, S, Hq, D}, seed++);
    HostTensor k = Random(dt, {B, S, Hkv, D}, seed++);
    HostTensor v = Random(dt, {B, S, Hkv, Dv}, seed++);
    all_k = step == 0 ? k : ConcatTokens(all_k, k);
    all_v = step == 0 ? v : ConcatTokens(all_v, v);

    KernelHarness a("kv_cache_append");
    SetUpAppend(a, cache, k, v);
    ASSERT_EQ(a.RunMessage(), "");
    cache = a.ResultCache();
    ASSERT_EQ(cache.view.length, all_k.shape[1]);

    KernelHarness in_place("attention");
    in_place.In(q).None().None().InCache(cache).None().None();
    in_place.Out(dt, {B, S, Hq, Dv}).AttrS("mask", "causal");
    ASSERT_EQ(in_place.RunMessage(), "");
    KernelHarness concat("attention");
    concat.In(q).In(all_k).In(all_v).None().None().None();
    concat.Out(dt, {B, S, Hq, Dv}).AttrS("mask", "causal");
    ASSERT_EQ(concat.RunMessage(), "");
    ExpectClose(in_place.Result(), ToD(concat.Result()), tol, tol * kDataScale,
                "in place vs concatenated");
  }
  ExpectReadGives(cache, all_k, all_v, "after the loop");
}

TEST(KvCacheDecode, AppendThenAttentionEqualsConcatenation) {
  uint32_t seed = 4500;
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16}) {
    RunDecodeLoop(dt, 16, false, seed += 20);
    RunDecodeLoop(dt, 3, true, seed += 20);  // grows on the prefill and later
  }
}

}  // namespace
}  // namespace kiln::testing
