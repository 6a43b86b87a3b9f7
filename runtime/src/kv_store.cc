#include "kv_store.h"

#include <algorithm>

#include "cpu/kv_codec.h"

namespace kiln {

void BlockAllocator::Reset(int32_t total) {
  total = std::max<int32_t>(total, 0);
  refs_.assign(size_t(total), 0);
  free_.resize(size_t(total));
  // Handed out in increasing order: the stack's top is block 0.
  for (int32_t i = 0; i < total; ++i) free_[size_t(i)] = total - 1 - i;
}

int32_t BlockAllocator::Allocate() {
  if (free_.empty()) return -1;
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

bool BlockAllocator::Retain(int32_t block) {
  if (block < 0 || block >= total() || refs_[size_t(block)] == 0) return false;
  ++refs_[size_t(block)];
  return true;
}

int32_t BlockAllocator::Release(int32_t block) {
  if (block < 0 || block >= total() || refs_[size_t(block)] == 0) return -1;
  const int32_t left = --refs_[size_t(block)];
  if (left == 0) free_.push_back(block);
  return left;
}

std::string BlockAllocator::Check() const {
  std::vector<char> listed(refs_.size(), 0);
  for (int32_t b : free_) {
    if (b < 0 || b >= total()) return "free list holds block " + std::to_string(b) + " out of range";
    if (listed[size_t(b)]) return "block " + std::to_string(b) + " is on the free list twice";
    if (refs_[size_t(b)] != 0)
      return "free block " + std::to_string(b) + " has " + std::to_string(refs_[size_t(b)]) +
             " references";
    listed[size_t(b)] = 1;
  }
  for (size_t b = 0; b < refs_.size(); ++b) {
    if (refs_[b] < 0) return "block " + std::to_string(b) + " has a negative count";
    if (refs_[b] == 0 && !listed[b])
      return "block " + std::to_string(b) + " has no reference but is not free (leaked)";
  }
  return "";
}

bool KvStorage::Reserve(KvCache& c, int64_t rows) {
  rows = std::max<int64_t>(rows, 0);
  const uint64_t r = uint64_t(rows);
  // One spare vector's worth past the end: kernels may load whole vectors.
  if (!key.Reserve(r * uint64_t(KvRowBytes(c, c.head_dim)) + 64) ||
      !value.Reserve(r * uint64_t(KvRowBytes(c, c.v_head_dim)) + 64))
    return false;
  c.key = key.data();
  c.value = value.data();
  c.key_scale = c.value_scale = nullptr;
  if (c.quantized()) {
    if (!key_scale.Reserve(r * uint64_t(KvScaleBytes(c, c.head_dim)) + 64) ||
        !value_scale.Reserve(r * uint64_t(KvScaleBytes(c, c.v_head_dim)) + 64))
      return false;
    c.key_scale = key_scale.data();
    c.value_scale = value_scale.data();
  }
  return true;
}

void KvGeometryFrom(const ValueDesc& d, KvCache& c) {
  c.dtype = d.dtype;
  c.storage = d.storage == KILN_DTYPE_INVALID ? d.dtype : d.storage;
  c.scale_dtype = d.scale_dtype;
  c.group = d.group;
  c.kv_heads = d.kv_heads;
  c.head_dim = d.head_dim;
  c.v_head_dim = d.v_head_dim;
}

}  // namespace kiln
