// The CPU executor: binds inputs and weights, walks the launches in order,
// and places each result where the compile-time memory plan says (a fixed
// arena offset, a reusable slot, or a view of its source). Also the session
// half of the C API.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <map>
#include <new>
#include <string>

#include "cpu/kv_codec.h"
#include "model.h"

namespace kiln {

bool AlignedBuffer::Reserve(uint64_t bytes) {
  if (bytes <= capacity_) return true;
  // Grow geometrically so a KV cache that gains one token per step is not
  // reallocated every step.
  uint64_t want = std::max<uint64_t>(bytes, capacity_ + capacity_ / 2);
  want = (want + 63) / 64 * 64;
  void* p = nullptr;
  if (posix_memalign(&p, 64, want) != 0) return false;
  std::free(data_);
  data_ = static_cast<uint8_t*>(p);
  capacity_ = want;
  return true;
}

Executor::Executor(const kiln_model_s* model, int threads, bool profile,
                   std::unique_ptr<Accelerator> accelerator)
    : model_(model),
      m_(model->manifest),
      pool_(threads),
      accelerator_(std::move(accelerator)),
      profile_(profile) {
  if (profile_) {
    launch_ns_.assign(m_.launches.size(), 0);
    launch_calls_.assign(m_.launches.size(), 0);
  }
  slots_ = std::vector<AlignedBuffer>(size_t(m_.slots));
  vals_.resize(m_.values.size());
  qvals_.resize(m_.values.size());
  caches_.resize(m_.values.size());
  ragged_lengths_.resize(m_.values.size());
  stores_.resize(m_.values.size());
  bound_.assign(m_.values.size(), nullptr);
  // Each appended cache shares the storage of the cache input it grew from
  // (the manifest guarantees every append reads a cache and yields one).
  cache_root_.assign(m_.values.size(), -1);
  for (size_t v = 0; v < m_.values.size(); ++v)
    if (m_.values[v].cache_input) cache_root_[v] = int(v);
  for (const LaunchDesc& l : m_.launches)
    if (!l.out.empty() && m_.values[size_t(l.out[0])].kind == ValueDesc::kKvCache)
      cache_root_[size_t(l.out[0])] = cache_root_[size_t(l.in[0])];
  // Weights are bound once: they never change between runs.
  for (size_t v = 0; v < m_.values.size(); ++v) {
    const ValueDesc& d = m_.values[v];
    if (d.kind != ValueDesc::kWeight) continue;
    vals_[v].dtype = d.dtype;
    vals_[v].shape = d.shape;
    vals_[v].data = const_cast<void*>(model->weight_data[size_t(d.weight)]);
  }
}

kiln_status_t Executor::CheckDeclared(size_t i, const Dims& shape) const {
  const Dims& d = declared_output_shape(i);
  bool ok = d.rank == shape.rank;
  for (int k = 0; ok && k < d.rank; ++k) ok = shape[k] >= 0 && (d[k] < 0 || d[k] == shape[k]);
  if (!ok)
    return KernelError(*this, KILN_STATUS_INVALID_ARGUMENT,
                       "result %zu has shape %s at run time; the compiled type is %s", i,
                       shape.str().c_str(), d.str().c_str());
  return nullptr;
}

kiln_status_t Executor::allocate_output(size_t i, const Dims& shape, Tensor** out) {
  KILN_RETURN_IF_ERROR(CheckDeclared(i, shape));
  int v = launch_->out[i];
  const ValueDesc& d = m_.values[size_t(v)];
  uint64_t bytes = StorageBytes(d.dtype, shape);
  uint8_t* p;
  if (d.offset >= 0) {
    p = arena_.data() + d.offset;
  } else if (d.slot >= 0) {
    if (!slots_[size_t(d.slot)].Reserve(bytes))
      return KernelError(*this, KILN_STATUS_RESOURCE_EXHAUSTED,
                         "out of memory allocating %llu bytes for result %zu",
                         (unsigned long long)bytes, i);
    p = slots_[size_t(d.slot)].data();
  } else {
    // A planned view whose kernel chose to copy: give it its own memory for
    // this run.
    auto buf = std::unique_ptr<AlignedBuffer>(new (std::nothrow) AlignedBuffer);
    if (!buf || !buf->Reserve(bytes))
      return KernelError(*this, KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    p = buf->data();
    overflow_.push_back(std::move(buf));
  }
  Tensor& t = vals_[size_t(v)];
  t.dtype = d.dtype;
  t.shape = shape;
  t.data = p;
  *out = &t;
  return nullptr;
}

bool Executor::can_alias(size_t out, size_t in) const {
  for (const auto& [o, i] : launch_->alias)
    if (size_t(o) == out && size_t(i) == in)
      return m_.values[size_t(launch_->out[out])].view_of >= 0;
  return false;
}

kiln_status_t Executor::alias_output(size_t out, const Dims& shape, size_t in,
                                     Tensor** result) {
  if (!can_alias(out, in))
    return KernelError(*this, KILN_STATUS_INTERNAL, "result %zu may not alias operand %zu", out,
                       in);
  KILN_RETURN_IF_ERROR(CheckDeclared(out, shape));
  const Tensor& src = input(in);
  Tensor& t = vals_[size_t(launch_->out[out])];
  t.dtype = output_dtype(out);
  t.shape = shape;
  if (StorageBytes(t.dtype, shape) != src.bytes())
    return KernelError(*this, KILN_STATUS_INVALID_ARGUMENT,
                       "a view of %s %s as %s %s changes the byte size",
                       kiln_dtype_name(src.dtype), src.shape.str().c_str(),
                       kiln_dtype_name(t.dtype), shape.str().c_str());
  t.data = src.data;
  *result = &t;
  return nullptr;
}

kiln_status_t Executor::BindCache(int value, KvCache* cache) {
  if (value < 0 || size_t(value) >= m_.values.size() || !m_.values[size_t(value)].cache_input)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "value %d is not a KV-cache input",
                            value);
  const ValueDesc& d = m_.values[size_t(value)];
  if (cache) {
    KvCache want;
    KvGeometryFrom(d, want);
    const bool empty = cache->batch * cache->capacity == 0;
    const bool paged_ok =
        d.paged ? cache->block_size == d.block_size && cache->block_table &&
                      cache->capacity <= cache->blocks_per_seq * cache->block_size
                : cache->block_size == 0;
    if (cache->dtype != want.dtype || cache->storage != want.storage ||
        (want.quantized() &&
         (cache->scale_dtype != want.scale_dtype || cache->group != want.group ||
          (!empty && (!cache->key_scale || !cache->value_scale)))) ||
        cache->kv_heads != d.kv_heads || cache->head_dim != d.head_dim ||
        cache->v_head_dim != d.v_head_dim || cache->batch < 0 || cache->capacity < 0 ||
        cache->length < 0 || cache->length > cache->capacity ||
        (!empty && (!cache->key || !cache->value)) || !paged_ok)
      return KILN_MAKE_STATUS(
          KILN_STATUS_INVALID_ARGUMENT,
          "a KV cache bound to value %d must be %s stored as %s, %s (block size %lld), with "
          "%lld kv heads, head dims %lld/%lld and 0 <= length <= capacity; found %s stored as "
          "%s, block size %lld, %lld heads, %lld/%lld, length %lld of %lld",
          value, kiln_dtype_name(d.dtype), kiln_dtype_name(want.storage),
          d.paged ? "paged" : "contiguous", (long long)d.block_size, (long long)d.kv_heads,
          (long long)d.head_dim, (long long)d.v_head_dim, kiln_dtype_name(cache->dtype),
          kiln_dtype_name(cache->storage), (long long)cache->block_size,
          (long long)cache->kv_heads, (long long)cache->head_dim, (long long)cache->v_head_dim,
          (long long)cache->length, (long long)cache->capacity);
  }
  bound_[size_t(value)] = cache;
  return nullptr;
}

/// Whether the descriptor's storage is the past tensors' own layout
/// ([batch][kv_heads][tokens][dim] of the element type), so a run can read
/// them in place.
static bool InPlaceLayout(const ValueDesc& d) {
  return !d.paged && (d.storage == KILN_DTYPE_INVALID || d.storage == d.dtype);
}

kiln_status_t Executor::GrowStore(int root, const KvCache& from, int64_t tokens,
                                  KvCache* grown) {
  const ValueDesc& d = m_.values[size_t(root)];
  KvCache c = from;
  c.length = from.length;
  if (d.paged) {
    // The executor's own pool: sequence b holds blocks [b * n, (b + 1) * n).
    c.block_size = d.block_size;
    c.blocks_per_seq = std::max<int64_t>(1, (tokens + d.block_size - 1) / d.block_size);
    c.capacity = c.blocks_per_seq * c.block_size;
  } else {
    c.block_size = 0;
    c.blocks_per_seq = 0;
    c.capacity = tokens;
  }
  auto st = std::unique_ptr<CacheStore>(new (std::nothrow) CacheStore);
  const int64_t rows = c.batch * c.kv_heads * c.capacity;
  if (!st || !st->storage.Reserve(c, rows))
    return KernelError(*this, KILN_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory for a KV cache of %lld tokens", (long long)tokens);
  if (d.paged) {
    st->table.resize(size_t(c.batch * c.blocks_per_seq));
    for (size_t i = 0; i < st->table.size(); ++i) st->table[i] = int32_t(i);
    c.block_table = st->table.data();
  }
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.kv_heads; ++h)
      for (int64_t t = 0; t < from.length; ++t)
        KvCopyRow(from, from.Row(b, h, t), c, c.Row(b, h, t));
  // The previous storage stays alive until the run ends (earlier cache
  // values may still point at it).
  if (stores_[size_t(root)]) old_stores_.push_back(std::move(stores_[size_t(root)]));
  stores_[size_t(root)] = std::move(st);
  *grown = c;
  return nullptr;
}

kiln_status_t Executor::BindCacheInputs(const Tensor* inputs) {
  // The key and value tensors of each unbound cache input, by value.
  std::map<int, std::pair<const Tensor*, const Tensor*>> parts;
  for (size_t i = 0; i < m_.inputs.size(); ++i) {
    const IoDesc& io = m_.inputs[i];
    if (io.part == IoDesc::kTensor || bound_[size_t(io.value)]) continue;
    auto& p = parts[io.value];
    (io.part == IoDesc::kKey ? p.first : p.second) = &inputs[i];
  }
  for (size_t v = 0; v < m_.values.size(); ++v) {
    const ValueDesc& d = m_.values[v];
    if (!d.cache_input) continue;
    if (KvCache* b = bound_[v]) {
      caches_[v] = *b;
      continue;
    }
    const Tensor& k = *parts[int(v)].first;
    const Tensor& val = *parts[int(v)].second;
    if (k.shape[0] != val.shape[0] || k.shape[2] != val.shape[2] ||
        k.shape[1] != d.kv_heads || val.shape[1] != d.kv_heads || k.shape[3] != d.head_dim ||
        val.shape[3] != d.v_head_dim)
      return KILN_MAKE_STATUS(
          KILN_STATUS_INVALID_ARGUMENT,
          "past key %s and value %s of one KV cache must be [batch, %lld, tokens, %lld] and "
          "[batch, %lld, tokens, %lld] with the same batch and tokens",
          k.shape.str().c_str(), val.shape.str().c_str(), (long long)d.kv_heads,
          (long long)d.head_dim, (long long)d.kv_heads, (long long)d.v_head_dim);
    KvCache& c = caches_[v];
    c = KvCache{};
    KvGeometryFrom(d, c);
    c.batch = k.shape[0];
    const int64_t T = k.shape[2];
    // A dense view of the past tensors, read in place when the cache's
    // layout is theirs; otherwise copied (quantized) into the executor's
    // own storage.
    KvCache dense = c;
    dense.storage = d.dtype;
    dense.capacity = dense.length = T;
    dense.key = k.data;
    dense.value = val.data;
    if (InPlaceLayout(d)) {
      c = dense;
      stores_[v].reset();
      continue;
    }
    c.length = 0;
    KILN_RETURN_IF_ERROR(GrowStore(int(v), c, T, &c));
    c.length = T;
    std::vector<float> row(size_t(std::max(d.head_dim, d.v_head_dim)));
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t h = 0; h < c.kv_heads; ++h)
        for (int64_t t = 0; t < T; ++t)
          for (bool value : {false, true}) {
            KvLoadRow(dense, KvRow(dense, value, dense.Row(b, h, t)), row.data());
            KvStoreRow(c, KvRow(c, value, c.Row(b, h, t)), row.data());
          }
  }
  return nullptr;
}

kiln_status_t Executor::append_cache(size_t out, size_t in, int64_t tokens, KvCache** result) {
  const int iv = has_input(in) ? launch_->in[in] : -1;
  const int ov = out < launch_->out.size() ? launch_->out[out] : -1;
  if (iv < 0 || ov < 0 || m_.values[size_t(ov)].kind != ValueDesc::kKvCache ||
      cache_root_[size_t(ov)] != cache_root_[size_t(iv)] || tokens < 0)
    return KernelError(*this, KILN_STATUS_INTERNAL,
                       "result %zu is not an append of cache operand %zu", out, in);
  const int root = cache_root_[size_t(ov)];
  const KvCache& c = caches_[size_t(iv)];
  const int64_t need = c.length + tokens;
  KvCache grown = c;
  if (c.ragged()) {
    // Each sequence grows by its share of the flattened tokens; the caller
    // (the scheduler) gave every sequence the blocks for it.
    if (!bound_[size_t(root)] || !c.q_offsets || c.q_offsets[c.batch] != tokens)
      return KernelError(*this, KILN_STATUS_INTERNAL,
                         "a ragged append of %lld tokens to a cache not bound for them",
                         (long long)tokens);
    std::vector<int64_t>& after = ragged_lengths_[size_t(ov)];
    after.resize(size_t(c.batch));
    int64_t longest = 0;
    for (int64_t b = 0; b < c.batch; ++b) {
      after[size_t(b)] = c.seq_lengths[b] + c.q_offsets[b + 1] - c.q_offsets[b];
      if (after[size_t(b)] > c.capacity)
        return KernelError(*this, KILN_STATUS_RESOURCE_EXHAUSTED,
                           "sequence %lld of the ragged batch needs %lld rows; the bound "
                           "cache holds %lld",
                           (long long)b, (long long)after[size_t(b)], (long long)c.capacity);
      longest = std::max(longest, after[size_t(b)]);
    }
    grown.seq_lengths = after.data();
    grown.length = longest;
    caches_[size_t(ov)] = grown;
    *result = &caches_[size_t(ov)];
    return nullptr;
  }
  if (KvCache* b = bound_[size_t(root)]) {
    if (need > c.capacity)
      return KernelError(*this, KILN_STATUS_RESOURCE_EXHAUSTED,
                         "the bound KV cache holds %lld tokens per sequence; appending %lld to "
                         "%lld needs %lld",
                         (long long)c.capacity, (long long)tokens, (long long)c.length,
                         (long long)need);
    b->length = need;
  } else if (!stores_[size_t(root)] || need > c.capacity) {
    // Contiguous storage of exactly `need` rows, so the presents are dense
    // views of it (paged: whole blocks).
    KILN_RETURN_IF_ERROR(GrowStore(root, c, need, &grown));
  }
  grown.length = need;
  caches_[size_t(ov)] = grown;
  *result = &caches_[size_t(ov)];
  return nullptr;
}

kiln_status_t Executor::CollectOutputs() {
  outputs_.resize(m_.outputs.size());
  present_.resize(m_.outputs.size());
  std::vector<float> row;
  for (size_t i = 0; i < m_.outputs.size(); ++i) {
    const IoDesc& io = m_.outputs[i];
    if (io.part == IoDesc::kTensor) {
      outputs_[i] = vals_[size_t(io.value)];
      continue;
    }
    Tensor& t = outputs_[i];
    t = Tensor{};
    if (bound_[size_t(cache_root_[size_t(io.value)])]) continue;  // in the caller's cache
    const KvCache& c = caches_[size_t(io.value)];
    const bool key = io.part == IoDesc::kKey;
    const int64_t dim = key ? c.head_dim : c.v_head_dim;
    t.dtype = c.dtype;
    t.shape = Dims{c.batch, c.kv_heads, c.length, dim};
    if (!c.paged() && !c.quantized() && c.capacity == c.length) {
      t.data = key ? c.key : c.value;
      continue;
    }
    if (!present_[i].Reserve(t.bytes()))
      return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory for output '%s'",
                              io.name.c_str());
    // A dense copy of the live rows (dequantized).
    KvCache dense = c;
    dense.storage = c.dtype;
    dense.block_size = 0;
    dense.block_table = nullptr;
    dense.capacity = c.length;
    (key ? dense.key : dense.value) = present_[i].data();
    row.resize(size_t(dim));
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t h = 0; h < c.kv_heads; ++h)
        for (int64_t r = 0; r < c.length; ++r) {
          KvLoadRow(c, KvRow(c, !key, c.Row(b, h, r)), row.data());
          KvStoreRow(dense, KvRow(dense, !key, dense.Row(b, h, r)), row.data());
        }
    t.data = present_[i].data();
  }
  return nullptr;
}

kiln_status_t Executor::Run(const Tensor* inputs, size_t count) {
  has_run_ = false;
  overflow_.clear();
  old_stores_.clear();
  for (size_t v = 0; v < m_.values.size(); ++v) {
    if (m_.values[v].kind == ValueDesc::kTemp) vals_[v] = Tensor{};
    if (m_.values[v].kind == ValueDesc::kKvCache) caches_[v] = KvCache{};
  }
  if (count != m_.inputs.size())
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "the model takes %zu inputs; %zu were given", m_.inputs.size(),
                            count);
  // Named dimensions must agree across inputs ("batch_size" is one number).
  std::map<std::string, std::pair<int64_t, size_t>> named;
  for (size_t i = 0; i < count; ++i) {
    const IoDesc& io = m_.inputs[i];
    const Tensor& t = inputs[i];
    if (io.part != IoDesc::kTensor && bound_[size_t(io.value)]) continue;
    if (t.dtype != io.dtype)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "input %zu '%s' is %s; the model takes %s", i, io.name.c_str(),
                              kiln_dtype_name(t.dtype), kiln_dtype_name(io.dtype));
    bool ok = t.shape.rank == io.shape.rank;
    for (int k = 0; ok && k < io.shape.rank; ++k)
      ok = t.shape[k] >= 0 && (io.shape[k] < 0 || io.shape[k] == t.shape[k]);
    if (!ok)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "input %zu '%s' has shape %s; the model takes %s", i,
                              io.name.c_str(), t.shape.str().c_str(), io.shape.str().c_str());
    for (int k = 0; k < io.shape.rank; ++k) {
      const std::string& name = io.dims[size_t(k)];
      if (name.empty()) continue;
      auto [it, fresh] = named.emplace(name, std::make_pair(t.shape[k], i));
      if (!fresh && it->second.first != t.shape[k])
        return KILN_MAKE_STATUS(
            KILN_STATUS_INVALID_ARGUMENT,
            "dimension '%s' is %lld in input %zu '%s' but %lld in input %zu '%s'", name.c_str(),
            (long long)t.shape[k], i, io.name.c_str(), (long long)it->second.first,
            it->second.second, m_.inputs[it->second.second].name.c_str());
    }
    if (!t.data && t.numel() > 0)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "input %zu '%s' has %lld elements but no data", i, io.name.c_str(),
                              (long long)t.numel());
    if (io.part == IoDesc::kTensor) vals_[size_t(io.value)] = t;
  }
  KILN_RETURN_IF_ERROR(BindCacheInputs(inputs));
  if (!arena_.Reserve(uint64_t(m_.arena_bytes)))
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                            "out of memory for the %lld-byte arena", (long long)m_.arena_bytes);

  for (const LaunchDesc& l : m_.launches) {
    launch_ = &l;
    // Quantized operands are assembled from their components' current
    // tensors.
    for (int v : l.in) {
      if (v < 0) continue;
      const ValueDesc& d = m_.values[size_t(v)];
      if (d.kind != ValueDesc::kQTensor) continue;
      QTensor& q = qvals_[size_t(v)];
      q.data = vals_[size_t(d.q_data)];
      q.scales = vals_[size_t(d.q_scales)];
      q.zero_points = d.q_zero >= 0 ? vals_[size_t(d.q_zero)] : Tensor{};
      if (d.q_zero < 0) q.zero_points.data = nullptr;
      q.block = d.block;
      q.expressed = d.expressed;
    }
    std::chrono::steady_clock::time_point t0;
    if (profile_) t0 = std::chrono::steady_clock::now();
    kiln_status_t s = accelerator_ && accelerator_->Covers(l) ? accelerator_->Launch(*this, l)
                                                               : l.fn(*this);
    if (profile_) {
      size_t k = size_t(&l - m_.launches.data());
      launch_ns_[k] += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now() - t0)
                                    .count());
      ++launch_calls_[k];
    }
    if (s) {
      launch_ = nullptr;
      return s;
    }
    for (size_t i = 0; i < l.out.size(); ++i)
      if ((m_.values[size_t(l.out[i])].kind == ValueDesc::kKvCache
               ? caches_[size_t(l.out[i])].dtype
               : vals_[size_t(l.out[i])].dtype) == KILN_DTYPE_INVALID) {
        kiln_status_t e = KernelError(*this, KILN_STATUS_INTERNAL, "result %zu was not produced", i);
        launch_ = nullptr;
        return e;
      }
    if (observer_) observer_(size_t(&l - m_.launches.data()), *this);
  }
  launch_ = nullptr;
  KILN_RETURN_IF_ERROR(CollectOutputs());
  has_run_ = true;
  return nullptr;
}

const std::vector<kiln_op_profile_t>& Executor::Profile() {
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_op;
  for (size_t k = 0; k < m_.launches.size() && k < launch_ns_.size(); ++k) {
    auto& e = by_op[m_.launches[k].op];
    e.first += launch_calls_[k];
    e.second += launch_ns_[k];
  }
  profile_view_.clear();
  for (const LaunchDesc& l : m_.launches) {
    auto it = by_op.find(l.op);
    if (it == by_op.end()) continue;
    profile_view_.push_back({l.op.c_str(), it->second.first, double(it->second.second) / 1e6});
    by_op.erase(it);
  }
  std::sort(profile_view_.begin(), profile_view_.end(),
            [](const kiln_op_profile_t& a, const kiln_op_profile_t& b) {
              return a.total_ms > b.total_ms;
            });
  return profile_view_;
}

kiln_status_t Executor::TakeOutput(size_t i, AlignedBuffer& buffer) {
  const Tensor& t = Output(i);
  uint64_t bytes = t.bytes();
  int v = m_.outputs[i].value;
  while (m_.values[size_t(v)].view_of >= 0) v = m_.values[size_t(v)].view_of;
  const ValueDesc& root = m_.values[size_t(v)];
  if (root.slot >= 0 && slots_[size_t(root.slot)].data() == t.data) {
    // No other output may share this slot, or the swap would hand one
    // buffer out twice.
    int users = 0;
    for (const IoDesc& o : m_.outputs) {
      int r = o.value;
      while (m_.values[size_t(r)].view_of >= 0) r = m_.values[size_t(r)].view_of;
      users += m_.values[size_t(r)].slot == root.slot;
    }
    if (users == 1) {
      buffer.Swap(slots_[size_t(root.slot)]);
      return nullptr;
    }
  }
  if (!buffer.Reserve(bytes))
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  if (bytes) std::memcpy(buffer.data(), t.data, bytes);
  return nullptr;
}

}  // namespace kiln

extern "C" {

void kiln_session_options_init(kiln_session_options_t* options) {
  if (!options) return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->prefix_reuse = 1;
}

kiln_status_t kiln_session_create(kiln_model_t model, const kiln_session_options_t* options,
                                  kiln_session_t* out_session) {
  if (out_session) *out_session = nullptr;
  if (!model || !out_session)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "model and out_session must not be NULL");
  kiln_session_options_t opts;
  kiln_session_options_init(&opts);
  if (options) {
    if (options->struct_size < sizeof(size_t) || options->struct_size > sizeof(opts))
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "kiln_session_options_t.struct_size is %zu; initialize the "
                              "options with kiln_session_options_init",
                              options->struct_size);
    std::memcpy(&opts, options, options->struct_size);
  }
  if (opts.num_threads < 0 || opts.num_threads > 4096)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "num_threads %d is out of range",
                            opts.num_threads);
  if (opts.max_sequence_length < 0)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "max_sequence_length %lld is negative",
                            (long long)opts.max_sequence_length);
  if (opts.kv_cache_blocks < 0 || opts.kv_cache_blocks > INT32_MAX)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "kv_cache_blocks %lld is out of range",
                            (long long)opts.kv_cache_blocks);
  kiln_device_kind_t device = KILN_DEVICE_CPU;
  std::string device_reason;
  std::unique_ptr<kiln::Accelerator> accelerator;
  KILN_RETURN_IF_ERROR(kiln::SelectDevice(*model, opts.device, opts.device_ordinal, &device,
                                          &device_reason, &accelerator));
  auto* session = new (std::nothrow) kiln_session_s;
  if (!session) return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  session->model = model;
  session->device = device;
  session->device_reason = std::move(device_reason);
  session->kv_cache_blocks = opts.kv_cache_blocks;
  session->prefix_reuse = opts.prefix_reuse != 0;
  session->max_sequence_length = opts.max_sequence_length
                                     ? opts.max_sequence_length
                                     : model->manifest.model.max_sequence_length;
  session->executor.reset(
      new (std::nothrow) kiln::Executor(model, opts.num_threads, opts.profile != 0,
                                        std::move(accelerator)));
  if (!session->executor) {
    delete session;
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  *out_session = session;
  return nullptr;
}

void kiln_session_release(kiln_session_t session) { delete session; }

kiln_status_t kiln_session_run(kiln_session_t session, const kiln_tensor_view_t* inputs,
                               size_t count) {
  if (!session || (!inputs && count))
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "session and inputs must not be NULL");
  std::vector<kiln::Tensor> tensors(count);
  for (size_t i = 0; i < count; ++i) {
    const kiln_tensor_view_t& in = inputs[i];
    if (in.rank > size_t(kiln::kMaxRank) || (in.rank && !in.shape))
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "input %zu has rank %zu (at most %d, with a shape array)", i,
                              in.rank, kiln::kMaxRank);
    tensors[i].dtype = in.dtype;
    tensors[i].shape = kiln::Dims::FromArray(in.shape, int(in.rank));
    for (size_t k = 0; k < in.rank; ++k)
      if (in.shape[k] < 0 || in.shape[k] > (int64_t(1) << 40))
        return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                                "input %zu has dimension %zu of size %lld", i, k,
                                (long long)in.shape[k]);
    tensors[i].data = const_cast<void*>(in.data);
  }
  return session->executor->Run(tensors.data(), count);
}

kiln_status_t kiln_session_output(kiln_session_t session, size_t index,
                                  kiln_tensor_view_t* out) {
  if (out) std::memset(out, 0, sizeof(*out));
  if (!session || !out)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "session and out_tensor must not be NULL");
  const kiln::Executor& e = *session->executor;
  if (!e.has_run())
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "the session has no outputs: its last run failed or none ran");
  if (index >= e.manifest().outputs.size())
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE, "output %zu, but the model has %zu",
                            index, e.manifest().outputs.size());
  const kiln::Tensor& t = e.Output(index);
  if (t.dtype == KILN_DTYPE_INVALID)
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "output %zu '%s' stayed in the KV cache generation bound",
                            index, e.manifest().outputs[index].name.c_str());
  out->dtype = t.dtype;
  out->rank = size_t(t.shape.rank);
  out->shape = t.shape.d;
  out->data = t.data;
  return nullptr;
}

kiln_status_t kiln_session_profile(kiln_session_t session, const kiln_op_profile_t** out_entries,
                                   size_t* out_count) {
  if (out_entries) *out_entries = nullptr;
  if (out_count) *out_count = 0;
  if (!session || !out_entries || !out_count)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "session, out_entries and out_count must not be NULL");
  if (!session->executor->profiling())
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "the session was created without profiling (set "
                            "kiln_session_options_t.profile)");
  const auto& p = session->executor->Profile();
  *out_entries = p.data();
  *out_count = p.size();
  return nullptr;
}

}  // extern "C"
