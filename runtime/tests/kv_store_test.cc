// The KV block allocator: reference counts, the free list, and a randomized
// stress test of sequences that grow, share prefixes (retain), fork and
// finish, checked against a model of the counts after every operation.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <vector>

#include "cpu/kv_codec.h"
#include "kv_store.h"

namespace kiln {
namespace {

TEST(BlockAllocator, HandsOutEveryBlockOnceThenRunsOut) {
  BlockAllocator a(4);
  std::set<int32_t> got;
  for (int i = 0; i < 4; ++i) {
    const int32_t b = a.Allocate();
    ASSERT_GE(b, 0);
    EXPECT_TRUE(got.insert(b).second) << "block " << b << " handed out twice";
    EXPECT_EQ(a.refcount(b), 1);
  }
  EXPECT_EQ(a.Allocate(), -1);
  EXPECT_EQ(a.free_count(), 0);
  EXPECT_EQ(a.used(), 4);
  EXPECT_EQ(a.Check(), "");
}

TEST(BlockAllocator, SharedBlocksAreFreedByTheLastRelease) {
  BlockAllocator a(2);
  const int32_t b = a.Allocate();
  EXPECT_TRUE(a.Retain(b));
  EXPECT_EQ(a.refcount(b), 2);
  EXPECT_EQ(a.Release(b), 1);
  EXPECT_EQ(a.free_count(), 1);
  EXPECT_EQ(a.Release(b), 0);
  EXPECT_EQ(a.free_count(), 2);
  EXPECT_EQ(a.Check(), "");
}

TEST(BlockAllocator, DoubleFreesAndBadIdsChangeNothing) {
  BlockAllocator a(3);
  const int32_t b = a.Allocate();
  EXPECT_EQ(a.Release(b), 0);
  EXPECT_EQ(a.Release(b), -1) << "double free";
  EXPECT_FALSE(a.Retain(b)) << "retain of a free block";
  EXPECT_EQ(a.Release(-1), -1);
  EXPECT_EQ(a.Release(3), -1);
  EXPECT_FALSE(a.Retain(7));
  EXPECT_EQ(a.free_count(), 3);
  EXPECT_EQ(a.Check(), "");
}

TEST(BlockAllocator, ResetFreesEverything) {
  BlockAllocator a(5);
  for (int i = 0; i < 5; ++i) a.Allocate();
  a.Reset(8);
  EXPECT_EQ(a.total(), 8);
  EXPECT_EQ(a.free_count(), 8);
  EXPECT_EQ(a.Check(), "");
}

TEST(BlockAllocator, RandomizedStressKeepsTheInvariants) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const int32_t total = 64;
    BlockAllocator a(total);
    // Sequences as lists of blocks; the model counts references per block.
    std::vector<std::vector<int32_t>> seqs;
    std::map<int32_t, int32_t> refs;
    auto release_seq = [&](size_t i) {
      for (int32_t b : seqs[i]) {
        const int32_t left = a.Release(b);
        ASSERT_EQ(left, --refs[b]) << "block " << b;
        if (left == 0) refs.erase(b);
      }
      seqs.erase(seqs.begin() + long(i));
    };
    for (int step = 0; step < 20000; ++step) {
      const int op = int(rng() % 10);
      if (op < 4 || seqs.empty()) {
        // A sequence grows by one block (a new one, or a fresh sequence).
        if (seqs.empty() || rng() % 4 == 0) seqs.emplace_back();
        const int32_t b = a.Allocate();
        if (b < 0) {
          EXPECT_EQ(int32_t(refs.size()), total) << "ran out with free blocks left";
          continue;
        }
        EXPECT_EQ(refs.count(b), 0u) << "block " << b << " was still held";
        refs[b] = 1;
        seqs[rng() % seqs.size()].push_back(b);
      } else if (op < 6) {
        // A new sequence shares a prefix of another (prefix reuse).
        const std::vector<int32_t>& from = seqs[rng() % seqs.size()];
        std::vector<int32_t> prefix(from.begin(), from.begin() + long(rng() % (from.size() + 1)));
        for (int32_t b : prefix) {
          ASSERT_TRUE(a.Retain(b));
          ++refs[b];
        }
        seqs.push_back(prefix);
      } else if (op < 9) {
        release_seq(rng() % seqs.size());  // a sequence finishes
      } else {
        // A double free is refused and changes nothing.
        if (a.free_count() > 0) {
          const int32_t b = a.Allocate();
          ASSERT_EQ(a.Release(b), 0);
          ASSERT_EQ(a.Release(b), -1);
        }
      }
      ASSERT_EQ(a.Check(), "") << "step " << step;
      ASSERT_EQ(a.used(), int32_t(refs.size())) << "step " << step;
      for (const auto& [b, n] : refs) ASSERT_EQ(a.refcount(b), n) << "block " << b;
    }
    while (!seqs.empty()) release_seq(seqs.size() - 1);
    EXPECT_EQ(a.free_count(), total) << "blocks leaked";
    EXPECT_EQ(a.Check(), "");
  }
}

// ---------------------------------------------------------------------------
// The session pool and its prefix cache.

/// A manifest with one paged f32 cache value of 2 heads x 4 dims.
Manifest OneLayer() {
  Manifest m;
  ValueDesc d;
  d.kind = ValueDesc::kKvCache;
  d.dtype = d.storage = KILN_DTYPE_F32;
  d.kv_heads = 2;
  d.head_dim = d.v_head_dim = 4;
  d.paged = true;
  d.block_size = 2;
  d.cache_input = true;
  m.values.push_back(d);
  return m;
}

TEST(PagedKvPool, GrowsKeepingEveryBlocksRows) {
  Manifest m = OneLayer();
  PagedKvPool pool;
  ASSERT_EQ(pool.Init(m, {0}, 2, 0), nullptr);
  EXPECT_EQ(pool.bytes_per_block(), uint64_t(2 * 2 * (4 + 4) * 4));
  // Fill the first blocks, then allocate until the pool has grown.
  std::vector<int32_t> held;
  for (int i = 0; i < 16; ++i) held.push_back(pool.Allocate());
  const KvCache before = pool.Layer(0);
  const int64_t rows = int64_t(held.size()) * 2 * 2;
  for (int64_t r = 0; r < rows; ++r) {
    float x[4] = {float(r), float(r) + 0.25f, -float(r), 1.f};
    KvStoreRow(before, KvRow(before, false, r), x);
  }
  for (int i = 0; i < 40; ++i) held.push_back(pool.Allocate());
  EXPECT_GE(pool.allocator().total(), 56);
  const KvCache after = pool.Layer(0);
  for (int64_t r = 0; r < rows; ++r) {
    float y[4];
    KvLoadRow(after, KvRow(after, false, r), y);
    ASSERT_EQ(y[0], float(r)) << "row " << r;
    ASSERT_EQ(y[1], float(r) + 0.25f) << "row " << r;
  }
  std::set<int32_t> unique(held.begin(), held.end());
  EXPECT_EQ(unique.size(), held.size()) << "a block was handed out twice";
}

TEST(PagedKvPool, PrefixCacheMatchesTokensAndParents) {
  Manifest m = OneLayer();
  PagedKvPool pool;
  ASSERT_EQ(pool.Init(m, {0}, 2, 8), nullptr);
  const int64_t a[4] = {5, 6, 7, 8}, b[4] = {5, 6, 9, 9};
  const int32_t b0 = pool.Allocate(), b1 = pool.Allocate();
  pool.Insert(0, a, b0);
  const uint64_t h0 = PagedKvPool::ChainHash(0, a, 2);
  pool.Insert(h0, a + 2, b1);
  EXPECT_EQ(pool.cached_blocks(), 2);
  EXPECT_EQ(pool.allocator().refcount(b0), 2) << "the cache holds a reference";
  EXPECT_EQ(pool.Lookup(0, a), b0);
  EXPECT_EQ(pool.Lookup(h0, a + 2), b1);
  EXPECT_EQ(pool.Lookup(0, a + 2), -1) << "the same tokens after another prefix";
  EXPECT_EQ(pool.Lookup(h0, b + 2), -1) << "other tokens after the same prefix";
  EXPECT_EQ(pool.Lookup(0, b), b0) << "the first block of b is a's";
  // Inserting a cached prefix again keeps the first block.
  const int32_t other = pool.Allocate();
  pool.Insert(0, a, other);
  EXPECT_EQ(pool.Lookup(0, a), b0);
  EXPECT_EQ(pool.allocator().refcount(other), 1);
  pool.Release(other);
  pool.Release(b0);
  pool.Release(b1);
  EXPECT_EQ(pool.allocator().used(), 2) << "cached blocks stay after their sequence";
  pool.ClearCache();
  EXPECT_EQ(pool.allocator().used(), 0);
  EXPECT_EQ(pool.allocator().Check(), "");
}

TEST(PagedKvPool, FixedPoolEvictsTheLeastRecentlyUsedCachedBlock) {
  Manifest m = OneLayer();
  PagedKvPool pool;
  ASSERT_EQ(pool.Init(m, {0}, 2, 3), nullptr);
  const int64_t t0[2] = {1, 2}, t1[2] = {3, 4}, t2[2] = {5, 6};
  const int32_t x = pool.Allocate(), y = pool.Allocate(), z = pool.Allocate();
  pool.Insert(0, t0, x);
  pool.Insert(0, t1, y);
  pool.Insert(0, t2, z);
  pool.Release(x);
  pool.Release(y);  // z stays held by a running sequence
  EXPECT_EQ(pool.Lookup(0, t0), x);  // x is now more recent than y
  const int32_t fresh = pool.Allocate();
  EXPECT_EQ(fresh, y) << "y was the least recently used block only the cache held";
  EXPECT_EQ(pool.evictions, 1u);
  EXPECT_EQ(pool.Lookup(0, t1), -1);
  EXPECT_EQ(pool.Allocate(), x);
  EXPECT_EQ(pool.Allocate(), -1) << "z is held by a sequence: nothing left to evict";
  EXPECT_EQ(pool.allocator().total(), 3) << "a fixed pool does not grow";
  EXPECT_EQ(pool.allocator().Check(), "");
}

}  // namespace
}  // namespace kiln
