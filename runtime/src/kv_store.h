// KV-cache storage shared by the executor and generation: a reference-
// counted allocator of fixed-size blocks, and the buffers that hold one
// layer's rows (keys, values and, when quantized, their scales).
#ifndef KILN_RUNTIME_KV_STORE_H_
#define KILN_RUNTIME_KV_STORE_H_

#include <cstdint>
#include <string>
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

/// Fills `c`'s element types and geometry from its manifest descriptor
/// (batch, capacity, length and storage pointers are left as they are).
void KvGeometryFrom(const ValueDesc& d, KvCache& c);

}  // namespace kiln

#endif  // KILN_RUNTIME_KV_STORE_H_
