// Token generation on top of the executor: the session owns the KV cache
// (each layer's past/present pair becomes a buffer it keeps between steps),
// runs the prefill and then one decode step per token, and samples. A
// windowed layer (GroupQueryAttention's sliding_window_cache) keeps a
// fixed-capacity buffer that the graph itself compacts each step.
//
// Batching. When the graph takes an attention mask and explicit positions
// (Hugging Face exports), sequences of any lengths share one batch: prompts
// are left-padded, the mask hides the padding and positions count only real
// tokens. Graphs that derive positions from the mask (onnxruntime-genai's
// GroupQueryAttention) assume unpadded rows, so there sequences are batched
// with others of the same prompt length, group by group.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <new>
#include <random>
#include <vector>

#include "cpu/half.h"
#include "model.h"
#include "sampling.h"

struct kiln_generation_s {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<kiln_stop_reason_t> reasons;
  std::vector<uint32_t> preemptions;
  kiln_generation_stats_t stats{};
};

namespace kiln {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct Group {
  std::vector<size_t> seqs;  // indices into the call's batch
};

class Generator {
 public:
  Generator(kiln_session_s* s, const kiln_generate_options_t& o, kiln_generation_s* g)
      : s_(s), e_(*s->executor), m_(e_.manifest()), o_(o), g_(g), sampler_(o) {}

  kiln_status_t Run(const int64_t* const* prompts, const size_t* lens, size_t batch);

 private:
  /// Generates for one group. With a fixed KV pool that cannot hold every
  /// sequence, the last ones are preempted: their blocks are freed and they
  /// are appended to `*deferred`, to be recomputed (prompt plus the tokens
  /// they have so far) once the group is done.
  kiln_status_t RunGroup(Group group, const int64_t* const* prompts, const size_t* lens,
                         std::vector<size_t>* deferred);
  /// Keeps rows `keep` of the running group (in order), releasing the other
  /// rows' blocks; `rows` are the per-row vectors to compact alongside.
  void KeepRows(const std::vector<size_t>& keep, Group& group, size_t& B,
                std::vector<bool>& done, std::vector<int64_t>& real, std::vector<int64_t>& next);
  kiln_status_t Step(size_t B, int64_t S);
  /// Prepares every layer's cache for a new group of B sequences of up to
  /// `tokens` positions each (prompt and generated).
  kiln_status_t ResetCache(size_t B, int64_t tokens);
  /// Layer l's KV window (0: the cache grows with the sequence).
  int64_t Window(int l) const { return m_.inputs[size_t(m_.past_key[size_t(l)])].window; }
  /// The !kiln.kv_cache input value of layer l, or -1 when its past and
  /// present are tensors.
  int CacheValue(int l) const {
    const IoDesc& io = m_.inputs[size_t(m_.past_key[size_t(l)])];
    return io.part == IoDesc::kTensor ? -1 : io.value;
  }
  /// Rows of layer l's cache once `tokens` positions were processed: all of
  /// them, or a windowed cache's fixed capacity (the window itself, the
  /// least memory that keeps every visible key).
  int64_t CacheRows(int l, int64_t tokens) const {
    int64_t w = Window(l);
    return w > 0 ? w : tokens;
  }

  kiln_session_s* s_;
  Executor& e_;
  const Manifest& m_;
  const kiln_generate_options_t& o_;
  kiln_generation_s* g_;
  Sampler sampler_;
  std::vector<int64_t> eos_;
  Clock::time_point start_;
  bool first_token_ = true;
  std::vector<uint32_t> preempted_;  // per sequence of the call
  std::vector<double> step_ms_;
  size_t decode_tokens_ = 0;

  // Per-step input storage.
  std::vector<int64_t> ids_, mask_, positions_;
  std::vector<AlignedBuffer> cache_;  // 2 per layer: key, value
  std::vector<KvCache> kv_;           // per layer whose graph appends in place
  std::vector<KvStorage> kv_store_;   // per layer: kv_'s rows
  // Paged caches: one block pool (the same block ids in every layer) and a
  // block table row per sequence of the group, filled as sequences grow.
  // With the session's pool (every layer paged), blocks come from it and
  // go back when the group ends; otherwise the group has a pool of its own.
  BlockAllocator blocks_;
  PagedKvPool* pool_ = nullptr;
  std::vector<int32_t> table_;
  int64_t blocks_per_seq_ = 0, block_size_ = 0, held_ = 0;
  /// Gives every sequence of the group blocks for `tokens` positions.
  kiln_status_t EnsureBlocks(size_t B, int64_t tokens);
  /// Points every layer's cache at the pool's storage (which may have
  /// grown) with a batch of B.
  void RefreshViews(size_t B);
  /// Returns the group's blocks to the session pool.
  void ReleaseBlocks(size_t B);
  /// Prefix reuse before the prefill of an unpadded group of B prompts of
  /// P tokens: takes cached blocks, computes a prefix the prompts share
  /// once, and returns the tokens per sequence now in the cache (a multiple
  /// of the block size, < P).
  kiln_status_t ReusePrefix(const Group& group, const int64_t* const* prompts, size_t P,
                            int64_t* reused);
  /// Caches the full prompt blocks of the group's sequences.
  void CachePrompts(const Group& group, const int64_t* const* prompts, size_t P);
  std::vector<Tensor> inputs_;
  std::vector<float> row_;
};

kiln_status_t Generator::EnsureBlocks(size_t B, int64_t tokens) {
  if (block_size_ == 0) return nullptr;
  const int64_t want = (tokens + block_size_ - 1) / block_size_;
  if (want > blocks_per_seq_)
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                            "%lld tokens need %lld KV blocks per sequence; the group has room "
                            "for %lld",
                            (long long)tokens, (long long)want, (long long)blocks_per_seq_);
  for (; held_ < want; ++held_)
    for (size_t b = 0; b < B; ++b) {
      const int32_t id = pool_ ? pool_->Allocate() : blocks_.Allocate();
      if (id < 0) {
        const BlockAllocator& a = pool_ ? pool_->allocator() : blocks_;
        return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                                "the KV block pool of %d blocks is used up (%d held, %d of them "
                                "by the prefix cache); %lld tokens per sequence need %lld blocks each",
                                a.total(), a.used(), pool_ ? pool_->cached_blocks() : 0,
                                (long long)tokens, (long long)want);
      }
      table_[b * size_t(blocks_per_seq_) + size_t(held_)] = id;
    }
  RefreshViews(B);
  return nullptr;
}

void Generator::RefreshViews(size_t B) {
  for (size_t l = 0; l < kv_.size(); ++l) {
    KvCache& c = kv_[l];
    if (c.block_size == 0) continue;
    if (pool_) {
      const KvCache p = pool_->Layer(l);
      c.key = p.key;
      c.value = p.value;
      c.key_scale = p.key_scale;
      c.value_scale = p.value_scale;
    }
    c.batch = int64_t(B);
    c.capacity = held_ * block_size_;
  }
}

void Generator::ReleaseBlocks(size_t B) {
  if (!pool_) return;
  for (size_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < held_; ++i) pool_->Release(table_[b * size_t(blocks_per_seq_) + size_t(i)]);
  held_ = 0;
}

kiln_status_t Generator::ReusePrefix(const Group& group, const int64_t* const* prompts, size_t P,
                                     int64_t* reused) {
  *reused = 0;
  const size_t B = group.seqs.size();
  const int64_t bs = block_size_;
  // Whole blocks only, and at least the last prompt token is computed (its
  // logits choose the first generated token).
  const int64_t max_blocks = (int64_t(P) - 1) / bs;
  if (max_blocks == 0) return nullptr;
  // Cached blocks each prompt can take, and the prefix all prompts share.
  int64_t cached = max_blocks;
  std::vector<std::vector<int32_t>> chains(B);
  for (size_t b = 0; b < B; ++b) {
    const int64_t* p = prompts[group.seqs[b]];
    uint64_t parent = 0;
    while (int64_t(chains[b].size()) < cached) {
      const int64_t* blk = p + int64_t(chains[b].size()) * bs;
      const int32_t id = pool_->Lookup(parent, blk);
      if (id < 0) break;
      chains[b].push_back(id);
      parent = PagedKvPool::ChainHash(parent, blk, bs);
    }
    cached = std::min<int64_t>(cached, int64_t(chains[b].size()));
  }
  int64_t common = int64_t(P) - 1;
  const int64_t* p0 = prompts[group.seqs[0]];
  for (size_t b = 1; b < B; ++b) {
    const int64_t* p = prompts[group.seqs[b]];
    int64_t n = 0;
    while (n < common && p[n] == p0[n]) ++n;
    common = n;
  }
  const int64_t shared = B > 1 ? common / bs : 0;
  const int64_t R = std::max(cached, shared);
  if (R == 0) return nullptr;
  // Each sequence takes its cached blocks.
  for (size_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < cached; ++i) {
      pool_->Retain(chains[b][size_t(i)]);
      table_[b * size_t(blocks_per_seq_) + size_t(i)] = chains[b][size_t(i)];
    }
  held_ = cached;
  int64_t computed = 0;
  if (shared > cached) {
    // The prompts' common prefix beyond the cache, computed once for the
    // first sequence; the others share its blocks.
    const int64_t from = cached * bs, to = shared * bs;
    ids_.assign(p0 + from, p0 + to);
    mask_.assign(size_t(to), 1);
    positions_.resize(size_t(to - from));
    for (int64_t t = from; t < to; ++t) positions_[size_t(t - from)] = t;
    // A batch of one: row 0 of the table gets the new blocks; the other
    // rows then share them.
    const int64_t before = held_;
    for (KvCache& c : kv_) c.length = from;
    KILN_RETURN_IF_ERROR(EnsureBlocks(1, to));
    Clock::time_point t0 = Clock::now();
    KILN_RETURN_IF_ERROR(Step(1, to - from));
    g_->stats.prefill_ms += Ms(t0, Clock::now());
    for (size_t b = 1; b < B; ++b)
      for (int64_t i = before; i < shared; ++i) {
        pool_->Retain(table_[size_t(i)]);
        table_[b * size_t(blocks_per_seq_) + size_t(i)] = table_[size_t(i)];
      }
    computed = to - from;
  }
  held_ = R;
  RefreshViews(B);
  for (KvCache& c : kv_) c.length = R * bs;
  *reused = R * bs;
  pool_->reused_tokens += uint64_t(int64_t(B) * R * bs - computed);
  return nullptr;
}

void Generator::CachePrompts(const Group& group, const int64_t* const* prompts, size_t P) {
  const int64_t bs = block_size_;
  for (size_t b = 0; b < group.seqs.size(); ++b) {
    const int64_t* p = prompts[group.seqs[b]];
    uint64_t parent = 0;
    for (int64_t i = 0; (i + 1) * bs <= int64_t(P) && i < held_; ++i) {
      pool_->Insert(parent, p + i * bs, table_[b * size_t(blocks_per_seq_) + size_t(i)]);
      parent = PagedKvPool::ChainHash(parent, p + i * bs, bs);
    }
  }
}

kiln_status_t Generator::Step(size_t B, int64_t S) {
  const ModelDesc& md = m_.model;
  int64_t past = int64_t(mask_.size() / std::max<size_t>(B, 1)) - S;
  KILN_RETURN_IF_ERROR(EnsureBlocks(B, past + S));
  inputs_.assign(m_.inputs.size(), Tensor{});
  auto bind = [&](int index, kiln_dtype_t dtype, Dims shape, void* data) {
    Tensor& t = inputs_[size_t(index)];
    t.dtype = dtype;
    t.shape = shape;
    t.data = data;
  };
  bind(m_.input_ids, KILN_DTYPE_I64, {int64_t(B), S}, ids_.data());
  if (m_.attention_mask >= 0)
    bind(m_.attention_mask, m_.inputs[size_t(m_.attention_mask)].dtype,
         {int64_t(B), past + S}, mask_.data());
  if (m_.position_ids >= 0)
    bind(m_.position_ids, KILN_DTYPE_I64, {int64_t(B), S}, positions_.data());
  for (int l = 0; l < md.num_layers; ++l) {
    if (CacheValue(l) >= 0) continue;  // bound: appended in place
    const IoDesc& k = m_.inputs[size_t(m_.past_key[size_t(l)])];
    const IoDesc& v = m_.inputs[size_t(m_.past_value[size_t(l)])];
    const int64_t rows = CacheRows(l, past);
    bind(m_.past_key[size_t(l)], k.dtype, {int64_t(B), md.kv_heads, rows, md.head_dim},
         cache_[size_t(2 * l)].data());
    bind(m_.past_value[size_t(l)], v.dtype, {int64_t(B), md.kv_heads, rows, md.v_head_dim},
         cache_[size_t(2 * l + 1)].data());
  }
  KILN_RETURN_IF_ERROR(e_.Run(inputs_.data(), inputs_.size()));
  // The presents become the next step's pasts.
  for (int l = 0; l < md.num_layers; ++l) {
    if (CacheValue(l) >= 0) {
      if (kv_[size_t(l)].length != past + S)
        return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                                "the KV cache of layer %d holds %lld tokens after a step over "
                                "%lld; generation expects %lld",
                                l, (long long)kv_[size_t(l)].length, (long long)past + S,
                                (long long)(past + S));
      continue;
    }
    KILN_RETURN_IF_ERROR(e_.TakeOutput(size_t(m_.present_key[size_t(l)]), cache_[size_t(2 * l)]));
    KILN_RETURN_IF_ERROR(
        e_.TakeOutput(size_t(m_.present_value[size_t(l)]), cache_[size_t(2 * l + 1)]));
    const Tensor& pk = e_.Output(size_t(m_.present_key[size_t(l)]));
    const int64_t rows = CacheRows(l, past + S);
    if (pk.shape.rank != 4 || pk.shape[0] != int64_t(B) || pk.shape[2] != rows)
      return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                              "present key of layer %d has shape %s; generation expects "
                              "[%zu, %lld, %lld, %lld]",
                              l, pk.shape.str().c_str(), B, (long long)md.kv_heads,
                              (long long)rows, (long long)md.head_dim);
  }
  return nullptr;
}

kiln_status_t Generator::ResetCache(size_t B, int64_t tokens) {
  const ModelDesc& md = m_.model;
  kv_.assign(size_t(md.num_layers), KvCache{});
  kv_store_.resize(size_t(md.num_layers));
  block_size_ = blocks_per_seq_ = held_ = 0;
  for (int l = 0; l < md.num_layers; ++l) {
    if (int value = CacheValue(l); value >= 0) {
      const ValueDesc& d = m_.values[size_t(value)];
      KvCache& c = kv_[size_t(l)];
      KvGeometryFrom(d, c);
      c.batch = int64_t(B);
      c.length = 0;
      int64_t rows;
      if (d.paged) {
        // Every layer's pool has the same blocks; EnsureBlocks hands them
        // out as the sequences grow. The group's worst case fits.
        if (block_size_ != 0 && block_size_ != d.block_size)
          return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                                  "layers have KV block sizes %lld and %lld; generation needs "
                                  "one",
                                  (long long)block_size_, (long long)d.block_size);
        if (block_size_ == 0) {
          block_size_ = d.block_size;
          blocks_per_seq_ = (tokens + block_size_ - 1) / block_size_;
          if (!pool_) blocks_.Reset(int32_t(int64_t(B) * blocks_per_seq_));
          table_.assign(B * size_t(blocks_per_seq_), 0);
        }
        c.block_size = block_size_;
        c.blocks_per_seq = blocks_per_seq_;
        c.block_table = table_.data();
        c.capacity = 0;
        if (pool_) {
          // The session's pool holds the rows (RefreshViews points at them).
          KILN_RETURN_IF_ERROR(e_.BindCache(value, &c));
          continue;
        }
        rows = int64_t(blocks_.total()) * d.kv_heads * block_size_;
      } else {
        // Room for every token of the group up front: appends never move it.
        c.capacity = tokens;
        rows = int64_t(B) * d.kv_heads * tokens;
      }
      if (!kv_store_[size_t(l)].Reserve(c, rows))
        return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                                "out of memory for the KV cache of layer %d (%lld tokens)", l,
                                (long long)tokens);
      KILN_RETURN_IF_ERROR(e_.BindCache(value, &c));
      continue;
    }
    for (int kind = 0; kind < 2; ++kind) {
      AlignedBuffer& c = cache_[size_t(2 * l + kind)];
      int64_t window = Window(l);
      if (window == 0) {
        if (!c.Reserve(64)) return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        continue;
      }
      // A windowed cache starts as `window` rows with none resident. The
      // graph masks stale rows, but a masked row still meets a zero weight,
      // so it must hold finite values: zeros.
      const IoDesc& io = m_.inputs[size_t(kind ? m_.past_value[size_t(l)] : m_.past_key[size_t(l)])];
      uint64_t bytes = StorageBytes(
          io.dtype, {int64_t(B), md.kv_heads, window, kind ? md.v_head_dim : md.head_dim});
      if (!c.Reserve(bytes))
        return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                                "out of memory for the %llu-byte windowed KV cache of layer %d",
                                (unsigned long long)bytes, l);
      std::memset(c.data(), 0, bytes);
    }
  }
  uint64_t bytes = 0;
  for (const KvStorage& st : kv_store_) bytes += st.bytes();
  for (const AlignedBuffer& b : cache_) bytes += b.capacity();
  s_->kv_bytes = bytes;
  return nullptr;
}

void Generator::KeepRows(const std::vector<size_t>& keep, Group& group, size_t& B,
                         std::vector<bool>& done, std::vector<int64_t>& real,
                         std::vector<int64_t>& next) {
  const size_t bps = size_t(blocks_per_seq_), T = mask_.size() / B;
  std::vector<bool> kept(B, false);
  for (size_t r : keep) kept[r] = true;
  for (size_t r = 0; r < B; ++r)
    if (!kept[r])
      for (int64_t i = 0; i < held_; ++i) pool_->Release(table_[r * bps + size_t(i)]);
  for (size_t k = 0; k < keep.size(); ++k) {
    const size_t r = keep[k];
    std::copy(table_.begin() + long(r * bps), table_.begin() + long((r + 1) * bps),
              table_.begin() + long(k * bps));
    std::copy(mask_.begin() + long(r * T), mask_.begin() + long((r + 1) * T),
              mask_.begin() + long(k * T));
    group.seqs[k] = group.seqs[r];
    done[k] = done[r];
    real[k] = real[r];
    next[k] = next[r];
  }
  B = keep.size();
  mask_.resize(B * T);
  group.seqs.resize(B);
  done.resize(B);
  real.resize(B);
  next.resize(B);
  RefreshViews(B);
}

kiln_status_t Generator::RunGroup(Group group, const int64_t* const* prompts, const size_t* lens,
                                  std::vector<size_t>* deferred) {
  const ModelDesc& md = m_.model;
  const int64_t pad = md.pad >= 0 ? md.pad : 0;
  // A fixed pool holds as many sequences' prompts as fit; the rest wait.
  if (pool_ && pool_->fixed()) {
    auto prompt_blocks = [&]() {
      size_t P = 0;
      for (size_t i : group.seqs) P = std::max(P, lens[i]);
      return int64_t(group.seqs.size()) *
             ((int64_t(P) + pool_->block_size() - 1) / pool_->block_size());
    };
    // (They have not started: they wait, which is not a preemption.)
    while (group.seqs.size() > 1 && prompt_blocks() > pool_->available()) {
      deferred->push_back(group.seqs.back());
      group.seqs.pop_back();
    }
  }
  size_t B = group.seqs.size();
  size_t P = 0;
  for (size_t i : group.seqs) P = std::max(P, lens[i]);

  // Prefill: left-padded prompts.
  ids_.assign(B * P, pad);
  mask_.assign(B * P, 0);
  positions_.assign(B * P, 1);
  std::vector<int64_t> real(B);
  for (size_t b = 0; b < B; ++b) {
    size_t len = lens[group.seqs[b]], off = P - len;
    for (size_t t = 0; t < len; ++t) {
      ids_[b * P + off + t] = prompts[group.seqs[b]][t];
      mask_[b * P + off + t] = 1;
      positions_[b * P + off + t] = int64_t(t);
    }
    real[b] = int64_t(len);
  }
  // Room for each sequence's prompt and the tokens it may still generate
  // (a recomputed sequence's prompt holds the ones it has).
  int64_t tokens = 0;
  for (size_t i : group.seqs)
    tokens = std::max(tokens, int64_t(lens[i]) + o_.max_new_tokens - int64_t(g_->tokens[i].size()));
  KILN_RETURN_IF_ERROR(ResetCache(B, std::max(tokens, int64_t(P))));
  // The group's blocks go back to the session pool however it ends.
  struct Release {
    Generator* g;
    const size_t& B;
    ~Release() { g->ReleaseBlocks(B); }
  } release{this, B};
  RefreshViews(B);
  bool unpadded = true;
  for (size_t i : group.seqs) unpadded &= lens[i] == P;
  const bool reuse = pool_ && s_->prefix_reuse && unpadded;
  int64_t R = 0;
  if (reuse) {
    KILN_RETURN_IF_ERROR(ReusePrefix(group, prompts, P, &R));
    if (R > 0) {
      // The prefill computes the rest of each prompt after the R cached
      // tokens.
      ids_.clear();
      for (size_t i : group.seqs) ids_.insert(ids_.end(), prompts[i] + R, prompts[i] + P);
      mask_.assign(B * P, 1);
      positions_.resize(B * (P - size_t(R)));
      for (size_t b = 0; b < B; ++b)
        for (size_t t = size_t(R); t < P; ++t) positions_[b * (P - size_t(R)) + t - size_t(R)] = int64_t(t);
    }
  }
  std::vector<bool> done(B, false);
  Clock::time_point t0 = Clock::now();
  KILN_RETURN_IF_ERROR(Step(B, int64_t(P) - R));
  Clock::time_point t1 = Clock::now();
  g_->stats.prefill_ms += Ms(t0, t1);
  if (reuse) CachePrompts(group, prompts, P);

  size_t step = 0;
  int64_t S = int64_t(P) - R;
  for (;;) {
    const Tensor& logits = e_.Output(size_t(m_.logits));
    if (logits.shape.rank != 3 || logits.shape[0] != int64_t(B) || logits.shape[1] != S ||
        logits.shape[2] != md.vocab_size)
      return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                              "logits have shape %s; generation expects [%zu, %lld, %lld]",
                              logits.shape.str().c_str(), B, (long long)S,
                              (long long)md.vocab_size);
    // Sample one token per live sequence from its last position.
    std::vector<int64_t> next(B, pad);
    for (size_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      size_t seq = group.seqs[b];
      LogitsRow(logits, int64_t(b), S - 1, row_);
      int64_t token = sampler_.Sample(row_.data(), md.vocab_size);
      next[b] = token;
      if (first_token_) {
        g_->stats.time_to_first_token_ms = Ms(start_, Clock::now());
        first_token_ = false;
      }
      g_->tokens[seq].push_back(token);
      if (step > 0) ++decode_tokens_;
      if (o_.callback && o_.callback(o_.user_data, seq, token, g_->tokens[seq].size() - 1) != 0) {
        g_->reasons[seq] = KILN_STOP_CALLBACK;
        done[b] = true;
      } else if (!o_.ignore_eos && std::find(eos_.begin(), eos_.end(), token) != eos_.end()) {
        g_->reasons[seq] = KILN_STOP_EOS;
        done[b] = true;
      } else if (g_->tokens[seq].size() >= size_t(o_.max_new_tokens)) {
        g_->reasons[seq] = KILN_STOP_MAX_TOKENS;
        done[b] = true;
      }
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;

    // A step that starts a new block needs one per row. When a fixed pool
    // cannot give them, finished rows leave first, then the last live ones
    // are preempted.
    if (pool_ && pool_->fixed() && int64_t(mask_.size() / B) + 1 > held_ * block_size_ &&
        int64_t(B) > pool_->available()) {
      std::vector<size_t> keep;
      for (size_t b = 0; b < B; ++b)
        if (!done[b]) keep.push_back(b);
      if (keep.size() < B) KeepRows(keep, group, B, done, real, next);
      while (B > 1 && int64_t(B) > pool_->available()) {
        const size_t seq = group.seqs[B - 1];
        deferred->push_back(seq);
        ++preempted_[seq];
        ++pool_->preemptions;
        keep.resize(B - 1);
        for (size_t b = 0; b + 1 < B; ++b) keep[b] = b;
        KeepRows(keep, group, B, done, real, next);
      }
    }

    // Decode step: one token per sequence; finished ones ride along.
    size_t T = mask_.size() / B;
    std::vector<int64_t> mask(B * (T + 1));
    for (size_t b = 0; b < B; ++b) {
      std::memcpy(&mask[b * (T + 1)], &mask_[b * T], T * sizeof(int64_t));
      mask[b * (T + 1) + T] = 1;
    }
    mask_.swap(mask);
    ids_.assign(next.begin(), next.end());
    positions_.resize(B);
    for (size_t b = 0; b < B; ++b) positions_[b] = real[b]++;
    S = 1;
    Clock::time_point a = Clock::now();
    KILN_RETURN_IF_ERROR(Step(B, 1));
    Clock::time_point z = Clock::now();
    step_ms_.push_back(Ms(a, z));
    g_->stats.decode_ms += Ms(a, z);
    ++g_->stats.decode_steps;
    ++step;
  }
  return nullptr;
}

kiln_status_t Generator::Run(const int64_t* const* prompts, const size_t* lens, size_t batch) {
  const ModelDesc& md = m_.model;
  start_ = Clock::now();
  if (o_.eos_token_ids && o_.eos_count)
    eos_.assign(o_.eos_token_ids, o_.eos_token_ids + o_.eos_count);
  else
    eos_ = md.eos;
  // The mask input may be of any integer dtype; generation fills int64 only.
  if (m_.attention_mask >= 0 && m_.inputs[size_t(m_.attention_mask)].dtype != KILN_DTYPE_I64)
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "generation fills an int64 attention_mask; this model's is %s",
                            kiln_dtype_name(m_.inputs[size_t(m_.attention_mask)].dtype));
  for (size_t i = 0; i < m_.inputs.size(); ++i) {
    const std::string& r = m_.inputs[i].role;
    if (r != "input_ids" && r != "attention_mask" && r != "position_ids" && r != "past_key" &&
        r != "past_value")
      return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                              "input '%s' has no role in generation",
                              m_.inputs[i].name.c_str());
  }
  cache_ = std::vector<AlignedBuffer>(size_t(2 * md.num_layers));
  // Every layer paged with one block size: blocks come from the session's
  // pool, where the prefix cache outlives this call.
  {
    bool all_paged = md.num_layers > 0;
    int64_t bs = 0;
    std::vector<int> layers;
    for (int l = 0; l < md.num_layers && all_paged; ++l) {
      const int v = CacheValue(l);
      all_paged = v >= 0 && m_.values[size_t(v)].paged &&
                  (bs == 0 || bs == m_.values[size_t(v)].block_size);
      if (all_paged) {
        bs = m_.values[size_t(v)].block_size;
        layers.push_back(v);
      }
    }
    if (all_paged) {
      if (!s_->kv_pool.ready())
        KILN_RETURN_IF_ERROR(s_->kv_pool.Init(m_, layers, bs, s_->kv_cache_blocks));
      pool_ = &s_->kv_pool;
    }
  }
  g_->tokens.assign(batch, {});
  g_->reasons.assign(batch, KILN_STOP_MAX_TOKENS);

  std::vector<Group> groups;
  if (md.left_padding) {
    groups.emplace_back();
    for (size_t i = 0; i < batch; ++i) groups[0].seqs.push_back(i);
  } else {
    std::map<size_t, size_t> by_len;
    for (size_t i = 0; i < batch; ++i) {
      auto [it, fresh] = by_len.emplace(lens[i], groups.size());
      if (fresh) groups.emplace_back();
      groups[it->second].seqs.push_back(i);
    }
  }
  // The session's executor appends to this generation's caches only while
  // it runs; plain runs afterwards fill caches from their past tensors.
  struct Unbind {
    Executor& e;
    const Manifest& m;
    ~Unbind() {
      for (size_t v = 0; v < m.values.size(); ++v)
        if (m.values[v].cache_input) kiln_status_free(e.BindCache(int(v), nullptr));
    }
  } unbind{e_, m_};
  preempted_.assign(batch, 0);
  std::vector<size_t> deferred;
  for (const Group& g : groups) KILN_RETURN_IF_ERROR(RunGroup(g, prompts, lens, &deferred));
  // Preempted sequences are recomputed: their prompt plus what they have
  // generated, in waves until every one is done.
  std::vector<std::vector<int64_t>> resumed(batch);
  std::vector<const int64_t*> resumed_ptrs(batch);
  std::vector<size_t> resumed_lens(batch);
  while (!deferred.empty()) {
    std::vector<size_t> wave;
    wave.swap(deferred);
    std::sort(wave.begin(), wave.end());
    for (size_t i : wave) {
      resumed[i].assign(prompts[i], prompts[i] + lens[i]);
      resumed[i].insert(resumed[i].end(), g_->tokens[i].begin(), g_->tokens[i].end());
      resumed_ptrs[i] = resumed[i].data();
      resumed_lens[i] = resumed[i].size();
    }
    std::vector<Group> again;
    if (md.left_padding) {
      again.emplace_back();
      again[0].seqs = wave;
    } else {
      std::map<size_t, size_t> by_len;
      for (size_t i : wave) {
        auto [it, fresh] = by_len.emplace(resumed_lens[i], again.size());
        if (fresh) again.emplace_back();
        again[it->second].seqs.push_back(i);
      }
    }
    for (const Group& g : again)
      KILN_RETURN_IF_ERROR(RunGroup(g, resumed_ptrs.data(), resumed_lens.data(), &deferred));
  }
  g_->preemptions = preempted_;

  kiln_generation_stats_t& st = g_->stats;
  for (const auto& t : g_->tokens) st.generated_tokens += t.size();
  double total = st.prefill_ms + st.decode_ms;
  st.tokens_per_second = total > 0 ? double(st.generated_tokens) * 1000.0 / total : 0;
  st.decode_tokens_per_second = st.decode_ms > 0 ? double(decode_tokens_) * 1000.0 / st.decode_ms : 0;
  if (!step_ms_.empty()) {
    std::vector<double> s = step_ms_;
    std::sort(s.begin(), s.end());
    st.step_ms_p50 = s[s.size() / 2];
    st.step_ms_p90 = s[std::min(s.size() - 1, s.size() * 9 / 10)];
    st.step_ms_max = s.back();
  }
  return nullptr;
}

}  // namespace
}  // namespace kiln

namespace kiln {

kiln_status_t ReadGenerateOptions(const kiln_generate_options_t* options,
                                  kiln_generate_options_t* out) {
  kiln_generate_options_t& o = *out;
  kiln_generate_options_init(&o);
  if (options) {
    if (options->struct_size < sizeof(size_t) || options->struct_size > sizeof(o))
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "kiln_generate_options_t.struct_size is %zu; initialize the "
                              "options with kiln_generate_options_init",
                              options->struct_size);
    std::memcpy(&o, options, options->struct_size);
  }
  if (o.max_new_tokens <= 0)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "max_new_tokens is %d; it must be > 0",
                            o.max_new_tokens);
  if (!(o.temperature >= 0.f) || !std::isfinite(o.temperature) || o.top_k < 0 ||
      !(o.top_p > 0.f && o.top_p <= 1.f))
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "sampling options out of range: temperature %g (>= 0), top_k %d "
                            "(>= 0), top_p %g (in (0, 1])",
                            double(o.temperature), o.top_k, double(o.top_p));
  if (o.eos_count && !o.eos_token_ids)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "eos_count %zu with no eos_token_ids",
                            o.eos_count);
  return nullptr;
}

}  // namespace kiln

extern "C" {

void kiln_generate_options_init(kiln_generate_options_t* options) {
  if (!options) return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->max_new_tokens = 32;
  options->top_p = 1.f;
}

kiln_status_t kiln_session_generate(kiln_session_t session, const int64_t* const* prompts,
                                    const size_t* prompt_lengths, size_t batch,
                                    const kiln_generate_options_t* options,
                                    kiln_generation_t* out_generation) {
  if (out_generation) *out_generation = nullptr;
  if (!session || !prompts || !prompt_lengths || !out_generation)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "session, prompts, prompt_lengths and out_generation must not "
                            "be NULL");
  kiln_generate_options_t o;
  KILN_RETURN_IF_ERROR(kiln::ReadGenerateOptions(options, &o));
  const kiln::Manifest& m = session->model->manifest;
  if (!m.model.generation)
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "this model cannot drive generation: %s",
                            m.model.generation_unsupported.empty()
                                ? "its graph lacks the roles generation needs"
                                : m.model.generation_unsupported.c_str());
  if (batch == 0)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "the batch is empty");
  const int64_t vocab = m.model.vocab_size;
  size_t longest = 0;
  for (size_t i = 0; i < batch; ++i) {
    if (!prompts[i] || prompt_lengths[i] == 0)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "prompt %zu is empty", i);
    for (size_t t = 0; t < prompt_lengths[i]; ++t)
      if (prompts[i][t] < 0 || prompts[i][t] >= vocab)
        return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                                "prompt %zu: token %zu is %lld, outside the vocabulary [0, %lld)",
                                i, t, (long long)prompts[i][t], (long long)vocab);
    longest = std::max(longest, prompt_lengths[i]);
  }
  int64_t need = int64_t(longest) + o.max_new_tokens;
  if (need > session->max_sequence_length)
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                            "the KV cache holds %lld tokens per sequence; a prompt of %zu plus "
                            "%d new tokens needs %lld",
                            (long long)session->max_sequence_length, longest, o.max_new_tokens,
                            (long long)need);
  auto* gen = new (std::nothrow) kiln_generation_s;
  if (!gen) return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  kiln::Generator g(session, o, gen);
  kiln_status_t s = g.Run(prompts, prompt_lengths, batch);
  if (s) {
    delete gen;
    return s;
  }
  *out_generation = gen;
  return nullptr;
}

void kiln_generation_release(kiln_generation_t generation) { delete generation; }

size_t kiln_generation_sequence_count(kiln_generation_t generation) {
  return generation ? generation->tokens.size() : 0;
}

kiln_status_t kiln_generation_sequence(kiln_generation_t generation, size_t index,
                                       const int64_t** out_tokens, size_t* out_count,
                                       kiln_stop_reason_t* out_reason) {
  if (out_tokens) *out_tokens = nullptr;
  if (out_count) *out_count = 0;
  if (!generation || !out_tokens || !out_count)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "generation, out_tokens and out_count must not be NULL");
  if (index >= generation->tokens.size())
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE, "sequence %zu of %zu", index,
                            generation->tokens.size());
  *out_tokens = generation->tokens[index].data();
  *out_count = generation->tokens[index].size();
  if (out_reason) *out_reason = generation->reasons[index];
  return nullptr;
}

kiln_status_t kiln_generation_sequence_preemptions(kiln_generation_t generation, size_t index,
                                                  uint32_t* out_count) {
  if (out_count) *out_count = 0;
  if (!generation || !out_count)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "generation and out_count must not be NULL");
  if (index >= generation->tokens.size())
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE, "sequence %zu of %zu", index,
                            generation->tokens.size());
  *out_count = index < generation->preemptions.size() ? generation->preemptions[index] : 0;
  return nullptr;
}

kiln_status_t kiln_generation_stats(kiln_generation_t generation,
                                    kiln_generation_stats_t* out_stats) {
  if (out_stats) std::memset(out_stats, 0, sizeof(*out_stats));
  if (!generation || !out_stats)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "generation and out_stats must not be NULL");
  *out_stats = generation->stats;
  return nullptr;
}

kiln_status_t kiln_session_kv_usage(kiln_session_t session, kiln_kv_usage_t* out_usage) {
  if (!session || !out_usage)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "session and out_usage must not be NULL");
  if (out_usage->struct_size < sizeof(size_t) || out_usage->struct_size > sizeof(kiln_kv_usage_t))
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_kv_usage_t.struct_size is %zu; set it to sizeof(kiln_kv_usage_t)",
                            out_usage->struct_size);
  kiln_kv_usage_t u;
  std::memset(&u, 0, sizeof(u));
  u.struct_size = out_usage->struct_size;
  const kiln::PagedKvPool& p = session->kv_pool;
  if (p.ready()) {
    u.paged = 1;
    u.block_size = p.block_size();
    u.blocks_total = p.allocator().total();
    u.blocks_used = p.allocator().used();
    u.blocks_cached = p.cached_blocks();
    u.blocks_peak = p.peak_used();
    u.bytes = p.bytes();
    u.bytes_per_block = p.bytes_per_block();
    u.reused_tokens = p.reused_tokens;
    u.evictions = p.evictions;
    u.preemptions = p.preemptions;
  } else {
    u.bytes = session->kv_bytes;
  }
  std::memcpy(out_usage, &u, out_usage->struct_size);
  return nullptr;
}

}  // extern "C"
