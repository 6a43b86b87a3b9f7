#include "kv_store.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "cpu/kv_codec.h"

namespace kiln {

void BlockAllocator::Reset(int32_t total) {
  total = std::max<int32_t>(total, 0);
  refs_.assign(size_t(total), 0);
  free_.resize(size_t(total));
  // Handed out in increasing order: the stack's top is block 0.
  for (int32_t i = 0; i < total; ++i) free_[size_t(i)] = total - 1 - i;
}

void BlockAllocator::Grow(int32_t total) {
  const int32_t old = this->total();
  if (total <= old) return;
  refs_.resize(size_t(total), 0);
  // New blocks go below the free ones already listed, so those are handed
  // out first and then the new ones in increasing order.
  std::vector<int32_t> fresh;
  for (int32_t i = total - 1; i >= old; --i) fresh.push_back(i);
  free_.insert(free_.begin(), fresh.begin(), fresh.end());
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

kiln_status_t PagedKvPool::Init(const Manifest& m, const std::vector<int>& layers,
                                int64_t block_size, int64_t fixed_blocks) {
  geometry_.clear();
  storage_.clear();
  cache_.clear();
  block_size_ = block_size;
  fixed_ = fixed_blocks > 0;
  peak_used_ = 0;
  bytes_per_block_ = 0;
  for (int v : layers) {
    KvCache c;
    KvGeometryFrom(m.values[size_t(v)], c);
    c.block_size = block_size;
    geometry_.push_back(c);
    bytes_per_block_ += uint64_t(block_size * KvBytesPerToken(c));
  }
  storage_ = std::vector<KvStorage>(geometry_.size());
  alloc_.Reset(0);
  const int32_t initial = fixed_ ? int32_t(std::min<int64_t>(fixed_blocks, INT32_MAX)) : 0;
  if (initial > 0 && !Grow(initial))
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                            "out of memory for a KV pool of %d blocks (%llu bytes each)", initial,
                            (unsigned long long)bytes_per_block_);
  return nullptr;
}

bool PagedKvPool::Grow(int32_t total) {
  const int32_t old = alloc_.total();
  if (total <= old) return true;
  // Blocks are the outermost dimension of every buffer, so the old pool is
  // a prefix of the new one: copy it over and point at the new storage.
  for (size_t l = 0; l < geometry_.size(); ++l) {
    KvCache& c = geometry_[l];
    KvStorage grown;
    KvCache g = c;
    if (!grown.Reserve(g, int64_t(total) * c.kv_heads * block_size_)) return false;
    const int64_t rows = int64_t(old) * c.kv_heads * block_size_;
    auto copy = [](void* dst, const void* src, int64_t bytes) {
      if (bytes > 0) std::memcpy(dst, src, size_t(bytes));
    };
    copy(g.key, c.key, rows * KvRowBytes(c, c.head_dim));
    copy(g.value, c.value, rows * KvRowBytes(c, c.v_head_dim));
    if (c.quantized()) {
      copy(g.key_scale, c.key_scale, rows * KvScaleBytes(c, c.head_dim));
      copy(g.value_scale, c.value_scale, rows * KvScaleBytes(c, c.v_head_dim));
    }
    std::swap(storage_[l], grown);
    c = g;
  }
  alloc_.Grow(total);
  return true;
}

int32_t PagedKvPool::Allocate() {
  int32_t b = alloc_.Allocate();
  if (b < 0 && !cache_.empty()) {
    // Evict the least recently used block that only the cache holds.
    auto victim = cache_.end();
    for (auto it = cache_.begin(); it != cache_.end(); ++it)
      if (alloc_.refcount(it->second.block) == 1 &&
          (victim == cache_.end() || it->second.last_use < victim->second.last_use))
        victim = it;
    if (victim != cache_.end()) {
      alloc_.Release(victim->second.block);
      cache_.erase(victim);
      ++evictions;
      b = alloc_.Allocate();
    }
  }
  if (b < 0 && !fixed_) {
    const int32_t total = alloc_.total();
    if (Grow(std::max<int32_t>(16, total + total / 2))) b = alloc_.Allocate();
  }
  peak_used_ = std::max(peak_used_, alloc_.used());
  return b;
}

KvCache PagedKvPool::Layer(size_t l) const { return geometry_[l]; }

int32_t PagedKvPool::available() const {
  if (!fixed_) return INT32_MAX;
  int32_t n = alloc_.free_count();
  for (const auto& [h, e] : cache_) n += alloc_.refcount(e.block) == 1;
  return n;
}

uint64_t PagedKvPool::ChainHash(uint64_t parent, const int64_t* tokens, int64_t n) {
  // FNV-1a over the parent hash and the token ids, then a final mix.
  uint64_t h = 1469598103934665603ull ^ parent;
  auto mix = [&](uint64_t x) {
    for (int i = 0; i < 8; ++i) {
      h ^= (x >> (8 * i)) & 0xFF;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (int64_t i = 0; i < n; ++i) mix(uint64_t(tokens[i]));
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h | 1;  // never 0, the root's parent
}

int32_t PagedKvPool::Lookup(uint64_t parent, const int64_t* tokens) {
  auto it = cache_.find(ChainHash(parent, tokens, block_size_));
  if (it == cache_.end() || it->second.parent != parent ||
      !std::equal(it->second.tokens.begin(), it->second.tokens.end(), tokens))
    return -1;
  it->second.last_use = ++tick_;
  return it->second.block;
}

void PagedKvPool::Insert(uint64_t parent, const int64_t* tokens, int32_t block) {
  const uint64_t h = ChainHash(parent, tokens, block_size_);
  if (cache_.count(h)) return;
  if (!alloc_.Retain(block)) return;
  cache_[h] = Entry{parent, std::vector<int64_t>(tokens, tokens + block_size_), block, ++tick_};
}

void PagedKvPool::ClearCache() {
  for (auto& [h, e] : cache_) alloc_.Release(e.block);
  cache_.clear();
}

uint64_t PagedKvPool::bytes() const {
  uint64_t n = 0;
  for (const KvStorage& s : storage_) n += s.bytes();
  return n;
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
