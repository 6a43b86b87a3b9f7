// KV-cache storage shared by the executor and generation: a reference-
// counted allocator of fixed-size blocks, and the buffers that hold one
// layer's rows (keys, values and, when quantized, their scales).
#ifndef KILN_RUNTIME_KV_STORE_H_
#define KILN_RUNTIME_KV_STORE_H_

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "buffer.h"
#include "cpu/tensor.h"
#include "manifest.h"

namespace kiln {

/// Hands out block ids [0, total) of a KV block pool. Block n is the same
/// token range in every layer's storage, so one block table serves all the
/// layers of a sequence. A block is free or held by one or more references
/// (sequences sharing it); it is free again when the last is dropped.
/// Not thread-safe: one scheduler owns it.
class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t total = 0) { Reset(total); }
  /// Frees every block and sets the pool size.
  void Reset(int32_t total);
  /// Adds free blocks up to `total` (held blocks keep their ids).
  void Grow(int32_t total);
  int32_t total() const { return int32_t(refs_.size()); }
  int32_t free_count() const { return int32_t(free_.size()); }
  int32_t used() const { return total() - free_count(); }
  /// Takes a free block with one reference; -1 when none is left.
  int32_t Allocate();
  /// Adds a reference to held block `block`; false when it is free or out
  /// of range.
  bool Retain(int32_t block);
  /// Drops one reference to `block`: its remaining count, or -1 when it was
  /// free or out of range (a double free, which changes nothing).
  int32_t Release(int32_t block);
  int32_t refcount(int32_t block) const {
    return block >= 0 && block < total() ? refs_[size_t(block)] : 0;
  }
  /// "" when the free list and the counts agree (each free block listed
  /// once with count 0, every other block with count > 0); else what is
  /// wrong.
  std::string Check() const;

 private:
  std::vector<int32_t> refs_;  // per block
  std::vector<int32_t> free_;  // a stack: the next block handed out is last
};

/// The buffers behind one layer's KV rows, of a KvCache's geometry.
struct KvStorage {
  AlignedBuffer key, value, key_scale, value_scale;
  /// Ensures room for `rows` rows (KvCache::Row indices) of `c`'s geometry
  /// and points c's key, value and scale pointers at it; earlier contents
  /// are not kept. False when memory runs out.
  bool Reserve(KvCache& c, int64_t rows);
  /// Bytes reserved.
  uint64_t bytes() const {
    return key.capacity() + value.capacity() + key_scale.capacity() + value_scale.capacity();
  }
};

/// A session's paged KV storage for generation: one block pool per layer
/// (block n is the same token range in every layer), the allocator, and the
/// prefix cache, which keeps full blocks of prompt tokens after their
/// sequences finish so that later sequences with the same prefix reuse them
/// instead of recomputing them.
///
/// A cached block is named by its chain hash: the hash of the previous
/// block's chain hash and its own token ids, so equal hashes mean equal
/// prefixes (each entry also keeps its tokens and parent hash, which a
/// lookup compares). The cache holds one reference per block; a block only
/// the cache holds is evicted, least recently used first, when the pool has
/// no free block. Not thread-safe (one session's generation owns it).
class PagedKvPool {
 public:
  /// Sets up storage for the paged cache values `layers` (one per layer,
  /// all with block size `block_size`). `fixed_blocks` > 0 fixes the pool
  /// size; 0 lets it grow as sequences need blocks.
  kiln_status_t Init(const Manifest& m, const std::vector<int>& layers, int64_t block_size,
                     int64_t fixed_blocks);
  bool ready() const { return !geometry_.empty(); }
  int64_t block_size() const { return block_size_; }
  /// A free block (one reference), evicting an unused cached block when
  /// none is free and growing the pool when it may; -1 when the pool is
  /// full.
  int32_t Allocate();
  void Retain(int32_t block) { alloc_.Retain(block); }
  /// Drops a reference (a sequence's).
  void Release(int32_t block) { alloc_.Release(block); }
  /// Layer l's cache geometry and storage (batch, table, capacity and
  /// length are the caller's).
  KvCache Layer(size_t l) const;

  /// The chain hash of a block of `tokens` after a prefix whose chain hash
  /// is `parent` (0 for the first block).
  static uint64_t ChainHash(uint64_t parent, const int64_t* tokens, int64_t n);
  /// The cached block holding `tokens` after `parent`, or -1.
  int32_t Lookup(uint64_t parent, const int64_t* tokens);
  /// Caches `block` (full, holding `tokens` after `parent`); the cache takes
  /// a reference. A prefix cached already keeps its block.
  void Insert(uint64_t parent, const int64_t* tokens, int32_t block);
  /// Drops every cached block the cache alone holds.
  void ClearCache();

  /// Blocks Allocate can still hand out: free ones and cached ones only the
  /// cache holds (INT32_MAX when the pool may grow).
  int32_t available() const;
  bool fixed() const { return fixed_; }
  const BlockAllocator& allocator() const { return alloc_; }
  int32_t cached_blocks() const { return int32_t(cache_.size()); }
  int32_t peak_used() const { return peak_used_; }
  uint64_t bytes() const;
  uint64_t bytes_per_block() const { return bytes_per_block_; }
  /// Counters since the session started.
  uint64_t reused_tokens = 0, evictions = 0, preemptions = 0;

 private:
  bool Grow(int32_t total);
  struct Entry {
    uint64_t parent;
    std::vector<int64_t> tokens;
    int32_t block;
    uint64_t last_use;
  };
  std::vector<KvCache> geometry_;    // per layer
  std::vector<KvStorage> storage_;   // per layer
  BlockAllocator alloc_;
  int64_t block_size_ = 0;
  bool fixed_ = false;
  int32_t peak_used_ = 0;
  uint64_t bytes_per_block_ = 0;
  uint64_t tick_ = 0;
  std::unordered_map<uint64_t, Entry> cache_;  // by chain hash
};

/// Fills `c`'s element types and geometry from its manifest descriptor
/// (batch, capacity, length and storage pointers are left as they are).
void KvGeometryFrom(const ValueDesc& d, KvCache& c);

}  // namespace kiln

#endif  // KILN_RUNTIME_KV_STORE_H_
