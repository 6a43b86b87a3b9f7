// The KV block allocator: reference counts, the free list, and a randomized
// stress test of sequences that grow, share prefixes (retain), fork and
// finish, checked against a model of the counts after every operation.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <vector>

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

}  // namespace
}  // namespace kiln
