// KV caches in every layout and storage type: paged (a shuffled block table,
// block sizes down to 1) and quantized (i8, f8E4M3FN, i4 packed; per token
// and head or group-wise scales; f16 or f32 scales), through the append,
// read and attention kernels, on fresh random data from fixed seeds
// (kernel_test_util.h's Random: never zero, |x| in [0.25, 2]).
//
// Paged caches hold the same bytes as contiguous ones, so appends, reads and
// attention over them must be bit-identical to the contiguous cache's.
// Quantized rows must read back within the scheme's bound (kv_codec.h):
//   i8, i4: |x - x'| <= s / 2 + amax * 2^-10, s = amax / qmax (qmax 127, 7),
//   f8E4M3FN: |x - x'| <= |x| * 2^-4 + s * 2^-10 + amax * 2^-10 (s = amax/448),
// where the amax * 2^-10 term covers the f16 rounding of the scale. Attention
// over a quantized cache must equal attention over kv tensors holding the
// dequantized rows (1e-5: the same numbers, summed in another order), and
// stay within a stated distance of attention over the unquantized rows
// (relative to the value scale 2): i8 2e-2, f8 1e-1, i4 2.5e-1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu/half.h"
#include "cpu/kv_codec.h"
#include "kernel_test_util.h"

namespace kiln::testing {
namespace {

/// Storage for a KV cache of any layout and type. The block table of a
/// paged cache is a fixed-seed shuffle of the pool, so neighbouring tokens
/// of a sequence live in unrelated blocks.
struct Storage {
  std::vector<uint8_t> key, value, key_scale, value_scale;
  std::vector<int32_t> table;
  KvCache view;
};

struct Layout {
  kiln_dtype_t storage;      // == dtype: unquantized
  kiln_dtype_t scale_dtype;  // quantized only
  int64_t group;             // 0: one scale per row
  int64_t block_size;        // 0: contiguous
  std::string Name(kiln_dtype_t dtype) const {
    std::string s = kiln_dtype_name(storage == KILN_DTYPE_INVALID ? dtype : storage);
    if (storage != KILN_DTYPE_INVALID && storage != dtype)
      s += std::string(" scale ") + kiln_dtype_name(scale_dtype) + " group " +
           std::to_string(group);
    return s + (block_size ? " paged<" + std::to_string(block_size) + ">" : " contiguous");
  }
};

std::shared_ptr<Storage> MakeStorage(kiln_dtype_t dtype, const Layout& l, int64_t B,
                                     int64_t H, int64_t D, int64_t Dv, int64_t capacity,
                                     int64_t length, uint32_t seed) {
  auto s = std::make_shared<Storage>();
  KvCache& c = s->view;
  c.dtype = dtype;
  c.storage = l.storage == KILN_DTYPE_INVALID ? dtype : l.storage;
  c.scale_dtype = l.scale_dtype;
  c.group = l.group;
  c.batch = B;
  c.kv_heads = H;
  c.head_dim = D;
  c.v_head_dim = Dv;
  c.length = length;
  int64_t rows;
  if (l.block_size > 0) {
    c.block_size = l.block_size;
    c.blocks_per_seq = (capacity + l.block_size - 1) / l.block_size;
    c.capacity = c.blocks_per_seq * l.block_size;
    // A pool with spare blocks, handed out in shuffled order.
    const int64_t pool = B * c.blocks_per_seq + 3;
    std::vector<int32_t> ids(static_cast<size_t>(pool));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
    s->table.assign(ids.begin(), ids.begin() + B * c.blocks_per_seq);
    c.block_table = s->table.data();
    rows = pool * H * l.block_size;
  } else {
    c.capacity = capacity;
    rows = B * H * capacity;
  }
  s->key.assign(size_t(rows * KvRowBytes(c, D)), 0xA5);
  s->value.assign(size_t(rows * KvRowBytes(c, Dv)), 0xA5);
  c.key = s->key.data();
  c.value = s->value.data();
  if (c.quantized()) {
    s->key_scale.assign(size_t(rows * KvScaleBytes(c, D)), 0xA5);
    s->value_scale.assign(size_t(rows * KvScaleBytes(c, Dv)), 0xA5);
    c.key_scale = s->key_scale.data();
    c.value_scale = s->value_scale.data();
  }
  return s;
}

/// A harness cache over `s` (the storage must outlive the harness).
HostCache Wrap(const Storage& s) {
  HostCache h;
  h.view = s.view;
  h.growable = false;
  return h;
}

/// Appends k / v ([B, S, H, D]) to `cache`; returns the result cache.
HostCache Append(const HostCache& cache, const HostTensor& k, const HostTensor& v) {
  KernelHarness a("kv_cache_append");
  a.InCache(cache).In(k).In(v).None().None().OutCache();
  EXPECT_EQ(a.RunMessage(), "");
  return a.ResultCache();
}

/// kv_cache_read of `cache`: {key, value} as [B, T, H, D] of its dtype.
std::pair<HostTensor, HostTensor> Read(const HostCache& cache) {
  KernelHarness h("kv_cache_read");
  const KvCache& c = cache.view;
  h.InCache(cache)
      .Out(c.dtype, {c.batch, -1, c.kv_heads, c.head_dim})
      .Out(c.dtype, {c.batch, -1, c.kv_heads, c.v_head_dim});
  EXPECT_EQ(h.RunMessage(), "");
  return {h.Result(0), h.Result(1)};
}

HostTensor Attend(const HostTensor& q, const HostCache* cache, const HostTensor* k,
                  const HostTensor* v, int64_t Dv) {
  KernelHarness h("attention");
  h.In(q);
  if (cache)
    h.None().None().InCache(*cache);
  else
    h.In(*k).In(*v).None();
  h.None().None().Out(q.dtype, {q.shape[0], q.shape[1], q.shape[2], Dv}).AttrS("mask", "causal");
  EXPECT_EQ(h.RunMessage(), "");
  return h.Result();
}

void ExpectBitwiseEqual(const HostTensor& a, const HostTensor& b, const std::string& what) {
  ASSERT_EQ(Str(a.shape), Str(b.shape)) << what;
  ASSERT_EQ(a.bytes.size(), b.bytes.size()) << what;
  EXPECT_TRUE(std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0) << what;
}

const Layout kPaged[] = {{KILN_DTYPE_INVALID, KILN_DTYPE_INVALID, 0, 1},
                         {KILN_DTYPE_INVALID, KILN_DTYPE_INVALID, 0, 3},
                         {KILN_DTYPE_INVALID, KILN_DTYPE_INVALID, 0, 16}};

// ---------------------------------------------------------------------------
// The row codec.

double Bound(kiln_dtype_t storage, double x, double amax) {
  const double qmax = KvQmax(storage), s = amax / qmax;
  const double slack = amax * std::ldexp(1.0, -10);
  if (storage == KILN_DTYPE_F8E4M3FN)
    return std::fabs(x) * std::ldexp(1.0, -4) + s * std::ldexp(1.0, -10) + slack;
  return s / 2 + slack;
}

TEST(KvCodec, QuantizedRowsReadBackWithinTheBound) {
  uint32_t seed = 9000;
  for (kiln_dtype_t st : {KILN_DTYPE_I8, KILN_DTYPE_F8E4M3FN, KILN_DTYPE_I4})
    for (kiln_dtype_t sc : {KILN_DTYPE_F16, KILN_DTYPE_F32})
      for (int64_t group : {0, 8, 32}) {
        const int64_t dim = 64;
        auto s = MakeStorage(KILN_DTYPE_F32, {st, sc, group, 0}, 1, 1, dim, dim, 40, 0, seed);
        const KvCache& c = s->view;
        SCOPED_TRACE((Layout{st, sc, group, 0}.Name(KILN_DTYPE_F32)));
        // Rows of different magnitudes, down to tiny ones.
        for (int64_t t = 0; t < 40; ++t) {
          const double mag = std::ldexp(1.0, int(t % 20) - 12);
          HostTensor x = Random(KILN_DTYPE_F32, {dim}, seed++, 2.0 * mag);
          const float* src = x.as<float>();
          KvStoreRow(c, KvRow(c, false, t), src);
          std::vector<float> back(static_cast<size_t>(dim));
          KvLoadRow(c, KvRow(c, false, t), back.data());
          const int64_t gs = group ? group : dim;
          int bad = 0;
          for (int64_t i = 0; i < dim; ++i) {
            double amax = 0;
            for (int64_t j = i / gs * gs; j < (i / gs + 1) * gs; ++j)
              amax = std::max(amax, std::fabs(double(src[j])));
            const double err = std::fabs(double(back[size_t(i)]) - src[i]);
            if (!(err <= Bound(st, src[i], amax)) && ++bad <= 3)
              ADD_FAILURE() << "row " << t << " element " << i << ": " << src[i] << " reads back as "
                            << back[size_t(i)] << " (bound " << Bound(st, src[i], amax) << ")";
          }
          EXPECT_EQ(bad, 0) << "row " << t;
        }
      }
}

TEST(KvCodec, ZeroRowsReadBackAsZeros) {
  for (kiln_dtype_t st : {KILN_DTYPE_I8, KILN_DTYPE_F8E4M3FN, KILN_DTYPE_I4}) {
    auto s = MakeStorage(KILN_DTYPE_F32, {st, KILN_DTYPE_F16, 0, 0}, 1, 1, 16, 16, 1, 0, 1);
    std::vector<float> zero(16, 0.f), back(16, 1.f);
    KvStoreRow(s->view, KvRow(s->view, true, 0), zero.data());
    KvLoadRow(s->view, KvRow(s->view, true, 0), back.data());
    EXPECT_EQ(back, zero) << kiln_dtype_name(st);
  }
}

TEST(KvCodec, Int4PacksTwoPerByteLowNibbleFirst) {
  // amax 7 gives scale 1: the stored values are the inputs themselves.
  auto s = MakeStorage(KILN_DTYPE_F32, {KILN_DTYPE_I4, KILN_DTYPE_F32, 0, 0}, 1, 1, 8, 8, 1, 0, 1);
  const float row[8] = {7, -7, 1, -1, 0, 3, -4, 2};
  KvStoreRow(s->view, KvRow(s->view, false, 0), row);
  const uint8_t want[4] = {0x97, 0xF1, 0x30, 0x2C};
  EXPECT_EQ(std::vector<uint8_t>(s->key.begin(), s->key.begin() + 4),
            std::vector<uint8_t>(want, want + 4));
  EXPECT_EQ(*reinterpret_cast<const float*>(s->key_scale.data()), 1.f);
  float back[8];
  KvLoadRow(s->view, KvRow(s->view, false, 0), back);
  EXPECT_EQ(std::vector<float>(back, back + 8), std::vector<float>(row, row + 8));
}

TEST(KvCodec, Int8RoundsToNearestAndKeepsTheScale) {
  auto s = MakeStorage(KILN_DTYPE_F32, {KILN_DTYPE_I8, KILN_DTYPE_F32, 0, 0}, 1, 1, 4, 4, 1, 0, 1);
  const float row[4] = {127.f, -63.4f, 0.6f, -127.f};
  KvStoreRow(s->view, KvRow(s->view, false, 0), row);
  const int8_t* q = reinterpret_cast<const int8_t*>(s->key.data());
  EXPECT_EQ(std::vector<int>(q, q + 4), (std::vector<int>{127, -63, 1, -127}));
}

// ---------------------------------------------------------------------------
// Paged caches equal contiguous ones exactly.

TEST(KvLayoutPaged, AppendsAndReadsEqualTheContiguousCache) {
  uint32_t seed = 9100;
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16})
    for (const Layout& l : kPaged) {
      SCOPED_TRACE(l.Name(dt));
      const int64_t B = 2, H = 2, D = 16, Dv = 8, cap = 40;
      auto contiguous = MakeStorage(dt, {KILN_DTYPE_INVALID, KILN_DTYPE_INVALID, 0, 0}, B, H, D,
                                    Dv, cap, 0, seed);
      auto paged = MakeStorage(dt, l, B, H, D, Dv, cap, 0, seed + 1);
      HostCache c = Wrap(*contiguous), p = Wrap(*paged);
      const size_t esize = kiln_dtype_bit_width(dt) / 8;
      // A prefill chunk, a second chunk, then single-token decode steps.
      for (int64_t S : {7, 5, 1, 1, 1, 4}) {
        HostTensor k = Random(dt, {B, S, H, D}, seed++), v = Random(dt, {B, S, H, Dv}, seed++);
        const int64_t start = p.view.length;
        c = Append(c, k, v);
        p = Append(p, k, v);
        // Each key row went to its block of the table, slot t % block_size
        // (computed here independently of KvCache::Row).
        for (int64_t b = 0; b < B; ++b)
          for (int64_t h = 0; h < H; ++h)
            for (int64_t s = 0; s < S; ++s) {
              const int64_t t = start + s;
              const int64_t blk = paged->table[size_t(b * p.view.blocks_per_seq + t / l.block_size)];
              const int64_t row = (blk * H + h) * l.block_size + t % l.block_size;
              ASSERT_EQ(std::memcmp(paged->key.data() + size_t(row * D) * esize,
                                    k.bytes.data() + size_t(((b * S + s) * H + h) * D) * esize,
                                    size_t(D) * esize),
                        0)
                  << "key of sequence " << b << " head " << h << " token " << t
                  << " is not in block " << blk;
            }
        ASSERT_EQ(p.view.length, c.view.length);
        auto [ck, cv] = Read(c);
        auto [pk, pv] = Read(p);
        ExpectBitwiseEqual(pk, ck, "paged key after " + std::to_string(p.view.length));
        ExpectBitwiseEqual(pv, cv, "paged value after " + std::to_string(p.view.length));
      }
      // The pool's spare blocks (in no table) were never written.
      std::vector<bool> in_table(paged->key.size() / size_t(H * l.block_size * D * esize), false);
      for (int32_t blk : paged->table) in_table[size_t(blk)] = true;
      for (size_t blk = 0; blk < in_table.size(); ++blk) {
        if (in_table[blk]) continue;
        const size_t bytes = size_t(H * l.block_size * D) * esize;
        EXPECT_TRUE(std::all_of(paged->key.begin() + long(blk * bytes),
                                paged->key.begin() + long((blk + 1) * bytes),
                                [](uint8_t x) { return x == 0xA5; }))
            << "spare block " << blk << " was written";
      }
    }
}

TEST(KvLayoutPaged, AttentionIsBitIdentical) {
  uint32_t seed = 9200;
  for (kiln_dtype_t dt : {KILN_DTYPE_F32, KILN_DTYPE_BF16})
    for (const Layout& l : kPaged)
      for (int64_t Sq : {1, 6}) {
        SCOPED_TRACE(l.Name(dt) + " Sq " + std::to_string(Sq));
        // 150 keys: several of attention's 64-key blocks.
        const int64_t B = 2, Hq = 8, H = 2, D = 32, Dv = 16, T = 150;
        auto contiguous = MakeStorage(dt, {KILN_DTYPE_INVALID, KILN_DTYPE_INVALID, 0, 0}, B, H, D,
                                      Dv, T + 10, 0, seed);
        auto paged = MakeStorage(dt, l, B, H, D, Dv, T, 0, seed + 1);
        HostTensor k = Random(dt, {B, T, H, D}, seed++), v = Random(dt, {B, T, H, Dv}, seed++);
        HostCache c = Append(Wrap(*contiguous), k, v), p = Append(Wrap(*paged), k, v);
        HostTensor q = Random(dt, {B, Sq, Hq, D}, seed++);
        ExpectBitwiseEqual(Attend(q, &p, nullptr, nullptr, Dv), Attend(q, &c, nullptr, nullptr, Dv),
                           "attention");
      }
}

TEST(KvLayoutPaged, FullBoundCacheIsResourceExhausted) {
  auto s = MakeStorage(KILN_DTYPE_F32, kPaged[2], 1, 2, 8, 8, 16, 14, 1);
  KernelHarness a("kv_cache_append");
  a.InCache(Wrap(*s))
      .In(Random(KILN_DTYPE_F32, {1, 3, 2, 8}, 1))
      .In(Random(KILN_DTYPE_F32, {1, 3, 2, 8}, 2))
      .None()
      .None()
      .OutCache();
  kiln_status_t st = a.Run();
  EXPECT_EQ(kiln_status_code(st), KILN_STATUS_RESOURCE_EXHAUSTED);
  kiln_status_free(st);
}

// ---------------------------------------------------------------------------
// Quantized caches.

double QuantTol(kiln_dtype_t st) {
  switch (st) {
    case KILN_DTYPE_I8:
      return 2e-2;
    case KILN_DTYPE_F8E4M3FN:
      return 1e-1;
    default:
      return 2.5e-1;
  }
}

TEST(KvLayoutQuantized, AppendQuantizesEachRowAndReadDequantizes) {
  uint32_t seed = 9300;
  for (kiln_dtype_t st : {KILN_DTYPE_I8, KILN_DTYPE_F8E4M3FN, KILN_DTYPE_I4})
    for (int64_t block : {0, 4}) {
      const Layout l{st, KILN_DTYPE_F16, st == KILN_DTYPE_I4 ? 8 : 0, block};
      SCOPED_TRACE(l.Name(KILN_DTYPE_F32));
      const int64_t B = 2, H = 3, D = 16, Dv = 16;
      auto s = MakeStorage(KILN_DTYPE_F32, l, B, H, D, Dv, 24, 0, seed);
      HostCache c = Wrap(*s);
      HostTensor k = Random(KILN_DTYPE_F32, {B, 9, H, D}, seed++);
      HostTensor v = Random(KILN_DTYPE_F32, {B, 9, H, Dv}, seed++);
      c = Append(c, k, v);
      auto [rk, rv] = Read(c);
      // Each row's bound, from its own (group's) largest magnitude.
      for (const auto& [in, out] : {std::pair<const HostTensor*, const HostTensor*>{&k, &rk},
                                    {&v, &rv}}) {
        const int64_t dim = in->shape[3], gs = l.group ? l.group : dim;
        int bad = 0;
        for (int64_t i = 0; i < in->shape.numel(); ++i) {
          const int64_t g0 = i / gs * gs;
          double amax = 0;
          for (int64_t j = g0; j < g0 + gs; ++j) amax = std::max(amax, std::fabs(GetD(*in, j)));
          const double x = GetD(*in, i), err = std::fabs(GetD(*out, i) - x);
          if (!(err <= Bound(st, x, amax)) && ++bad <= 3)
            ADD_FAILURE() << "element " << i << ": " << x << " reads back as " << GetD(*out, i);
        }
        EXPECT_EQ(bad, 0);
      }
      EXPECT_EQ(s->key.size(), size_t(B * H * 24 * KvRowBytes(s->view, D) +
                                      (block ? 3 * H * block * KvRowBytes(s->view, D) : 0)))
          << "storage holds " << kiln_dtype_bit_width(st) << " bits per element";
    }
}

TEST(KvLayoutQuantized, AttentionDequantizesInsideAndStaysClose) {
  uint32_t seed = 9400;
  for (kiln_dtype_t st : {KILN_DTYPE_I8, KILN_DTYPE_F8E4M3FN, KILN_DTYPE_I4})
    for (int64_t block : {0, 16})
      for (int64_t Sq : {1, 5}) {
        const Layout l{st, KILN_DTYPE_F16, st == KILN_DTYPE_I4 ? 32 : 0, block};
        SCOPED_TRACE(l.Name(KILN_DTYPE_F32) + " Sq " + std::to_string(Sq));
        const int64_t B = 2, Hq = 4, H = 2, D = 64, Dv = 64, T = 100;
        auto s = MakeStorage(KILN_DTYPE_F32, l, B, H, D, Dv, T, 0, seed);
        HostTensor k = Random(KILN_DTYPE_F32, {B, T, H, D}, seed++);
        HostTensor v = Random(KILN_DTYPE_F32, {B, T, H, Dv}, seed++);
        HostTensor q = Random(KILN_DTYPE_F32, {B, Sq, Hq, D}, seed++, 0.5);
        HostCache c = Append(Wrap(*s), k, v);
        HostTensor got = Attend(q, &c, nullptr, nullptr, Dv);
        // The dequantized rows as tensors: the same numbers.
        auto [dk, dv] = Read(c);
        ExpectClose(got, ToD(Attend(q, nullptr, &dk, &dv, Dv)), 1e-5, 1e-5 * 2,
                    "vs attention over the dequantized rows");
        // The unquantized rows: within the scheme's tolerance.
        ExpectClose(got, ToD(Attend(q, nullptr, &k, &v, Dv)), 0, QuantTol(st) * 2,
                    "vs attention over the f32 rows");
      }
}

TEST(KvLayoutQuantized, Bf16ModelsQuantizeFromBf16) {
  uint32_t seed = 9500;
  const Layout l{KILN_DTYPE_I8, KILN_DTYPE_F32, 0, 8};
  const int64_t B = 1, H = 2, D = 32;
  auto s = MakeStorage(KILN_DTYPE_BF16, l, B, H, D, D, 16, 0, seed);
  HostTensor k = Random(KILN_DTYPE_BF16, {B, 10, H, D}, seed++);
  HostTensor v = Random(KILN_DTYPE_BF16, {B, 10, H, D}, seed++);
  HostCache c = Append(Wrap(*s), k, v);
  auto [rk, rv] = Read(c);
  EXPECT_EQ(rk.dtype, KILN_DTYPE_BF16);
  // bf16 rounding of the read-back adds 2^-8 relative.
  ExpectClose(rk, ToD(k), 1.0 / 128, 2.0 / 254 + 2.0 / 1024, "bf16 key");
  ExpectClose(rv, ToD(v), 1.0 / 128, 2.0 / 254 + 2.0 / 1024, "bf16 value");
}

// ---------------------------------------------------------------------------
// Ragged batches: sequences of different lengths with different numbers of
// new tokens, flattened into one [1, N] step.

/// Rows [from, from + n) of a [1, T, H, D] tensor (or [B, T, ...] row b).
HostTensor TokenRows(const HostTensor& t, int64_t b, int64_t from, int64_t n) {
  const int64_t T = t.shape[1], row = t.shape[2] * t.shape[3];
  const size_t esize = kiln_dtype_bit_width(t.dtype) / 8;
  HostTensor out(t.dtype, {1, n, t.shape[2], t.shape[3]});
  std::memcpy(out.bytes.data(), t.bytes.data() + size_t((b * T + from) * row) * esize,
              size_t(n * row) * esize);
  return out;
}

/// The tokens of every sequence at `offsets`, flattened: sequence b's
/// [start_b, start_b + q_b) of `all` ([n, T, H, D]).
HostTensor Flatten(const HostTensor& all, const std::vector<int64_t>& start,
                   const std::vector<int64_t>& q) {
  int64_t N = 0;
  for (int64_t x : q) N += x;
  HostTensor out(all.dtype, {1, N, all.shape[2], all.shape[3]});
  const int64_t row = all.shape[2] * all.shape[3];
  const size_t esize = kiln_dtype_bit_width(all.dtype) / 8;
  int64_t at = 0;
  for (size_t b = 0; b < q.size(); ++b) {
    std::memcpy(out.bytes.data() + size_t(at * row) * esize,
                all.bytes.data() + size_t((int64_t(b) * all.shape[1] + start[b]) * row) * esize,
                size_t(q[b] * row) * esize);
    at += q[b];
  }
  return out;
}

HostTensor AttendMask(const HostTensor& q, const HostCache* cache, const HostTensor* k,
                      const HostTensor* v, int64_t Dv, int64_t window) {
  KernelHarness h("attention");
  h.In(q);
  if (cache)
    h.None().None().InCache(*cache);
  else
    h.In(*k).In(*v).None();
  h.None().None().Out(q.dtype, {q.shape[0], q.shape[1], q.shape[2], Dv});
  if (window > 0)
    h.AttrS("mask", "sliding_window").Attr("mask_window", window).Attr("mask_sink", 1);
  else
    h.AttrS("mask", "causal");
  EXPECT_EQ(h.RunMessage(), "");
  return h.Result();
}

TEST(KvLayoutRagged, AppendAndAttentionEqualEachSequenceAlone) {
  uint32_t seed = 9600;
  const Layout layouts[] = {kPaged[0], kPaged[1], {KILN_DTYPE_I8, KILN_DTYPE_F16, 0, 4}};
  for (const Layout& l : layouts)
    for (int64_t window : {0, 6}) {
      SCOPED_TRACE(l.Name(KILN_DTYPE_F32) + (window ? " sliding window" : " causal"));
      // Four sequences: a fresh prefill chunk, a decode token, a second
      // chunk after cached tokens, and one idle this step.
      const std::vector<int64_t> ctx = {0, 9, 17, 3}, q = {7, 1, 5, 0};
      const int64_t n = 4, Hq = 4, H = 2, D = 16, Dv = 16, T = 40;
      auto s = MakeStorage(KILN_DTYPE_F32, l, n, H, D, Dv, T, 0, seed);
      HostTensor k = Random(KILN_DTYPE_F32, {n, T, H, D}, seed++);
      HostTensor v = Random(KILN_DTYPE_F32, {n, T, H, Dv}, seed++);
      HostTensor qs = Random(KILN_DTYPE_F32, {n, T, Hq, D}, seed++, 0.5);
      // Step 1 appends each sequence's cached tokens, step 2 the new ones,
      // both as ragged batches.
      std::vector<int64_t> zero(size_t(n), 0), off1(size_t(n + 1), 0), off2(size_t(n + 1), 0);
      for (int64_t b = 0; b < n; ++b) {
        off1[size_t(b + 1)] = off1[size_t(b)] + ctx[size_t(b)];
        off2[size_t(b + 1)] = off2[size_t(b)] + q[size_t(b)];
      }
      HostCache c = Wrap(*s);
      c.lengths = std::make_shared<std::vector<int64_t>>(zero);
      c.view.seq_lengths = c.lengths->data();
      c.view.q_offsets = off1.data();
      c = Append(c, Flatten(k, zero, ctx), Flatten(v, zero, ctx));
      c.view.q_offsets = off2.data();
      c = Append(c, Flatten(k, ctx, q), Flatten(v, ctx, q));
      for (int64_t b = 0; b < n; ++b)
        ASSERT_EQ(c.view.seq_lengths[b], ctx[size_t(b)] + q[size_t(b)]);
      HostTensor got = AttendMask(Flatten(qs, ctx, q), &c, nullptr, nullptr, Dv, window);
      ASSERT_EQ(got.shape[1], off2[size_t(n)]);
      for (int64_t b = 0; b < n; ++b) {
        if (q[size_t(b)] == 0) continue;
        SCOPED_TRACE("sequence " + std::to_string(b));
        const int64_t len = ctx[size_t(b)] + q[size_t(b)];
        HostTensor mine = TokenRows(got, 0, off2[size_t(b)], q[size_t(b)]);
        HostTensor qb = TokenRows(qs, b, ctx[size_t(b)], q[size_t(b)]);
        // The same sequence alone, through its own rows of the table.
        HostCache alone = Wrap(*s);
        alone.view.batch = 1;
        alone.view.length = len;
        if (alone.view.block_table) alone.view.block_table += b * alone.view.blocks_per_seq;
        else alone.view.key = nullptr;  // contiguous layouts are not used here
        ExpectBitwiseEqual(mine, AttendMask(qb, &alone, nullptr, nullptr, Dv, window),
                           "ragged vs the sequence alone");
        // And against kv tensors of its rows (the unquantized ones for f32).
        if (!s->view.quantized()) {
          HostTensor kb = TokenRows(k, b, 0, len), vb = TokenRows(v, b, 0, len);
          ExpectClose(mine, ToD(AttendMask(qb, nullptr, &kb, &vb, Dv, window)), 1e-5, 2e-5,
                      "ragged vs attention over kv tensors");
        }
      }
    }
}

TEST(KvLayoutRagged, Errors) {
  auto s = MakeStorage(KILN_DTYPE_F32, kPaged[2], 2, 2, 8, 8, 16, 0, 1);
  std::vector<int64_t> lens = {4, 2}, off = {0, 1, 3};
  HostCache c = Wrap(*s);
  c.view.seq_lengths = lens.data();
  c.view.q_offsets = off.data();
  c.view.length = 4;
  {
    // The query must be [1, N] with N the offsets' total.
    KernelHarness h("attention");
    h.In(Random(KILN_DTYPE_F32, {1, 4, 4, 8}, 1)).None().None().InCache(c).None().None();
    h.Out(KILN_DTYPE_F32, {1, -1, 4, 8}).AttrS("mask", "causal");
    EXPECT_NE(h.RunMessage().find("a ragged batch of 2 sequences needs query [1, N"),
              std::string::npos);
  }
  {
    KernelHarness h("attention");
    h.In(Random(KILN_DTYPE_F32, {1, 3, 4, 8}, 1)).None().None().InCache(c);
    h.In(Random(KILN_DTYPE_F32, {1, 1, 3, 4}, 2)).None();
    h.Out(KILN_DTYPE_F32, {1, -1, 4, 8}).AttrS("mask", "causal");
    EXPECT_NE(h.RunMessage().find("a ragged batch takes no attn_mask"), std::string::npos);
  }
  {
    KernelHarness h("kv_cache_append");
    h.InCache(c)
        .In(Random(KILN_DTYPE_F32, {1, 5, 2, 8}, 1))
        .In(Random(KILN_DTYPE_F32, {1, 5, 2, 8}, 2))
        .None()
        .None()
        .OutCache();
    EXPECT_NE(h.RunMessage().find("appends key [1, N, kv_heads, head_dim] with N its offsets' total"),
              std::string::npos);
  }
  {
    KernelHarness h("kv_cache_read");
    h.InCache(c).Out(KILN_DTYPE_F32, {2, -1, 2, 8}).Out(KILN_DTYPE_F32, {2, -1, 2, 8});
    EXPECT_NE(h.RunMessage().find("a ragged batch's sequences have different lengths"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace kiln::testing
