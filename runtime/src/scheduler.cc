// Continuous batching: a scheduler keeps requests waiting or running and
// each step runs one forward over a ragged batch (the artifact's
// kiln-ragged-batch graph): the next prompt chunk of requests being
// prefilled and one decode token of every running request, flattened as
// [1, N] with per-sequence offsets, no padding. The caches are bound with
// each sequence's length and block table row, so kv_cache_append and
// attention work per sequence (cpu/kv_cache.cc, cpu/attention.cc).
//
// Blocks come from the session's PagedKvPool, one at a time as requests
// grow; a request whose prompt starts with cached full blocks takes them
// (prefix reuse). When a block cannot be had, the most recently admitted
// running request is preempted: its blocks are freed and it waits at the
// front of the queue, to be recomputed from its prompt plus the tokens it
// has; greedy requests then continue exactly as they would have.
#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <new>
#include <vector>

#include "model.h"
#include "sampling.h"

namespace {

struct Request {
  uint64_t id = 0;
  std::vector<int64_t> prompt;  // plus, after a preemption, the tokens it had
  size_t prompt_len = 0;        // the submitted prompt's length
  kiln_generate_options_t options{};
  std::vector<int64_t> eos;
  std::unique_ptr<kiln::Sampler> sampler;
  std::vector<int64_t> tokens;  // generated
  std::vector<int32_t> blocks;  // its table row
  int64_t computed = 0;         // tokens in the cache
  bool finished = false;
  kiln_stop_reason_t reason = KILN_STOP_MAX_TOKENS;
  uint32_t preemptions = 0;
};

}  // namespace

struct kiln_scheduler_s {
  kiln_session_s* session = nullptr;
  kiln_scheduler_options_t options{};
  std::map<uint64_t, std::unique_ptr<Request>> requests;
  std::deque<Request*> waiting;
  std::vector<Request*> running;  // in admission order
  uint64_t next_id = 1;
  std::vector<int> layers;  // cache input value per layer
  // Per-step storage.
  std::vector<int64_t> ids, positions, mask, lengths, offsets;
  std::vector<int32_t> table;
  std::vector<kiln::KvCache> kv;
  std::vector<kiln::Tensor> inputs;
  std::vector<float> row;

  ~kiln_scheduler_s() {
    for (auto& [id, r] : requests) Free(*r);
  }
  void Free(Request& r) {
    for (int32_t b : r.blocks) session->kv_pool.Release(b);
    r.blocks.clear();
    r.computed = 0;
  }
  void Finish(Request& r, kiln_stop_reason_t reason) {
    r.finished = true;
    r.reason = reason;
    Free(r);
  }
  /// Frees a running request's blocks; it waits at the front, its prompt
  /// now holding what it generated.
  void Preempt(Request& r) {
    Free(r);
    r.prompt.resize(r.prompt_len);
    r.prompt.insert(r.prompt.end(), r.tokens.begin(), r.tokens.end());
    ++r.preemptions;
    ++session->kv_pool.preemptions;
    running.erase(std::find(running.begin(), running.end(), &r));
    waiting.push_front(&r);
  }
  /// Takes cached blocks for the start of a request's prompt (all but its
  /// last token, so that its logits are computed).
  void ReusePrefix(Request& r) {
    kiln::PagedKvPool& pool = session->kv_pool;
    if (!session->prefix_reuse || r.computed) return;
    const int64_t bs = pool.block_size();
    uint64_t parent = 0;
    for (int64_t i = 0; (i + 1) * bs <= int64_t(r.prompt.size()) - 1; ++i) {
      const int32_t b = pool.Lookup(parent, r.prompt.data() + i * bs);
      if (b < 0) break;
      pool.Retain(b);
      r.blocks.push_back(b);
      parent = kiln::PagedKvPool::ChainHash(parent, r.prompt.data() + i * bs, bs);
    }
    r.computed = int64_t(r.blocks.size()) * bs;
  }
  /// Caches a request's full prompt blocks once they are computed.
  void CachePrompt(const Request& r) {
    if (!session->prefix_reuse) return;
    kiln::PagedKvPool& pool = session->kv_pool;
    const int64_t bs = pool.block_size();
    uint64_t parent = 0;
    for (int64_t i = 0; (i + 1) * bs <= int64_t(r.prompt_len) && i < int64_t(r.blocks.size());
         ++i) {
      pool.Insert(parent, r.prompt.data() + i * bs, r.blocks[size_t(i)]);
      parent = kiln::PagedKvPool::ChainHash(parent, r.prompt.data() + i * bs, bs);
    }
  }
  /// Gives `r` blocks for `tokens` positions; false when the pool is out.
  bool Grow(Request& r, int64_t tokens) {
    const int64_t bs = session->kv_pool.block_size();
    while (int64_t(r.blocks.size()) * bs < tokens) {
      const int32_t b = session->kv_pool.Allocate();
      if (b < 0) return false;
      r.blocks.push_back(b);
    }
    return true;
  }
  /// Finishes `r`, which alone needs more blocks than the pool has.
  kiln_status_t TooLarge(Request& r, int64_t tokens) {
    Finish(r, KILN_STOP_MAX_TOKENS);
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                            "request %llu needs %lld tokens of KV cache; the pool of %d "
                            "blocks cannot hold them",
                            (unsigned long long)r.id, (long long)tokens,
                            session->kv_pool.allocator().total());
  }
  kiln_status_t Step(kiln_step_info_t* info);
};

kiln_status_t kiln_scheduler_s::Step(kiln_step_info_t* info) {
  const kiln::Manifest& m = session->model->manifest;
  kiln::Executor& e = *session->executor;
  const int64_t budget = options.max_step_tokens;
  // The batch: every running request's next token or prompt chunk, then
  // waiting requests while the budget and the running limit allow.
  struct Entry {
    Request* r;
    int64_t q;
  };
  std::vector<Entry> batch;
  int64_t used = 0;
  size_t preempted = 0;
  auto chunk = [&](Request& r) {
    return std::min<int64_t>(int64_t(r.prompt.size()) - r.computed > 0
                                 ? int64_t(r.prompt.size()) - r.computed
                                 : 1,
                             budget - used);
  };
  for (size_t i = 0; i < running.size() && used < budget;) {
    Request& r = *running[i];
    const int64_t q = chunk(r);
    if (!Grow(r, r.computed + q)) {
      // Out of blocks: preempt the most recently admitted request not in
      // the batch yet (r itself when it is the last), then retry.
      Request& last = *running.back();
      if (&last == &r && batch.empty()) {
        running.pop_back();
        return TooLarge(r, r.computed + q);
      }
      Preempt(last);
      ++preempted;
      continue;
    }
    batch.push_back({&r, q});
    used += q;
    ++i;
  }
  while (!waiting.empty() && used < budget && running.size() < size_t(options.max_running)) {
    Request& r = *waiting.front();
    ReusePrefix(r);
    const int64_t q = chunk(r);
    if (!Grow(r, r.computed + q)) {
      Free(r);
      if (running.empty() && batch.empty()) {
        waiting.pop_front();
        return TooLarge(r, r.computed + q);
      }
      break;  // it waits for room
    }
    session->kv_pool.reused_tokens += uint64_t(r.computed);  // from cached blocks
    waiting.pop_front();
    running.push_back(&r);
    batch.push_back({&r, q});
    used += q;
  }
  kiln_step_info_t out{};
  out.struct_size = sizeof(out);
  if (batch.empty()) {
    out.waiting = waiting.size();
    out.running = running.size();
    if (info) std::memcpy(info, &out, std::min(info->struct_size, sizeof(out)));
    return nullptr;
  }

  // Inputs: the flattened tokens and their positions; an attention_mask
  // the graph only reads for shapes is ones.
  const int64_t n = int64_t(batch.size());
  const int64_t bs = session->kv_pool.block_size();
  size_t bps = 1;
  for (const Entry& en : batch) bps = std::max(bps, en.r->blocks.size());
  ids.clear();
  positions.clear();
  offsets.assign(size_t(n + 1), 0);
  lengths.assign(size_t(n), 0);
  table.assign(size_t(n) * bps, 0);
  for (int64_t b = 0; b < n; ++b) {
    const Request& r = *batch[size_t(b)].r;
    const int64_t q = batch[size_t(b)].q;
    for (int64_t j = 0; j < q; ++j) {
      const int64_t t = r.computed + j;
      ids.push_back(t < int64_t(r.prompt.size()) ? r.prompt[size_t(t)]
                                                 : r.tokens.back());
      positions.push_back(t);
    }
    offsets[size_t(b + 1)] = offsets[size_t(b)] + q;
    lengths[size_t(b)] = r.computed;
    std::copy(r.blocks.begin(), r.blocks.end(), table.begin() + long(size_t(b) * bps));
  }
  const int64_t N = offsets[size_t(n)];
  mask.assign(size_t(N), 1);
  inputs.assign(m.inputs.size(), kiln::Tensor{});
  for (size_t i = 0; i < m.inputs.size(); ++i) {
    const kiln::IoDesc& io = m.inputs[i];
    kiln::Tensor& t = inputs[i];
    if (io.part != kiln::IoDesc::kTensor) continue;  // a cache, bound below
    t.shape = kiln::Dims{1, N};
    if (io.role == "input_ids") {
      t.dtype = KILN_DTYPE_I64;
      t.data = ids.data();
    } else if (io.role == "position_ids") {
      t.dtype = KILN_DTYPE_I64;
      t.data = positions.data();
    } else if (io.role == "attention_mask") {
      t.dtype = KILN_DTYPE_I64;
      t.data = mask.data();
    } else {
      return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                              "input '%s' has no role in a ragged batch", io.name.c_str());
    }
  }
  kv.assign(layers.size(), kiln::KvCache{});
  for (size_t l = 0; l < layers.size(); ++l) {
    kiln::KvCache& c = kv[l];
    c = session->kv_pool.Layer(l);
    c.batch = n;
    c.block_size = bs;
    c.blocks_per_seq = int64_t(bps);
    c.block_table = table.data();
    c.capacity = int64_t(bps) * bs;
    c.seq_lengths = lengths.data();
    c.q_offsets = offsets.data();
    c.length = *std::max_element(lengths.begin(), lengths.end());
    KILN_RETURN_IF_ERROR(e.BindCache(layers[l], &c));
  }
  struct Unbind {
    kiln::Executor& e;
    const std::vector<int>& layers;
    ~Unbind() {
      for (int v : layers) kiln_status_free(e.BindCache(v, nullptr));
    }
  } unbind{e, layers};
  KILN_RETURN_IF_ERROR(e.Run(inputs.data(), inputs.size()));

  // Sample for every request whose prompt is now all in the cache.
  const kiln::Tensor& logits = e.Output(size_t(m.logits));
  if (logits.shape.rank != 3 || logits.shape[0] != 1 || logits.shape[1] != N ||
      logits.shape[2] != m.model.vocab_size)
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "logits have shape %s; a ragged step expects [1, %lld, %lld]",
                            logits.shape.str().c_str(), (long long)N,
                            (long long)m.model.vocab_size);
  for (int64_t b = 0; b < n; ++b) {
    Request& r = *batch[size_t(b)].r;
    const int64_t q = batch[size_t(b)].q;
    const bool was_prefill = r.computed < int64_t(r.prompt.size());
    r.computed += q;
    if (was_prefill) out.prefill_tokens += size_t(q);
    else out.decode_tokens += size_t(q);
    if (r.computed < int64_t(r.prompt.size())) continue;  // more prompt to go
    if (was_prefill && r.computed >= int64_t(r.prompt_len)) CachePrompt(r);
    kiln::LogitsRow(logits, 0, offsets[size_t(b + 1)] - 1, row);
    const int64_t token = r.sampler->Sample(row.data(), m.model.vocab_size);
    r.tokens.push_back(token);
    if (!r.options.ignore_eos && std::find(r.eos.begin(), r.eos.end(), token) != r.eos.end())
      Finish(r, KILN_STOP_EOS);
    else if (r.tokens.size() >= size_t(r.options.max_new_tokens))
      Finish(r, KILN_STOP_MAX_TOKENS);
    if (r.finished) {
      running.erase(std::find(running.begin(), running.end(), &r));
      ++out.finished;
    }
  }
  out.sequences = size_t(n);
  out.preempted = preempted;
  out.waiting = waiting.size();
  out.running = running.size();
  if (info) std::memcpy(info, &out, std::min(info->struct_size, sizeof(out)));
  return nullptr;
}

extern "C" {

void kiln_scheduler_options_init(kiln_scheduler_options_t* options) {
  if (!options) return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->max_step_tokens = 256;
  options->max_running = 64;
}

kiln_status_t kiln_scheduler_create(kiln_session_t session, const kiln_scheduler_options_t* options,
                                    kiln_scheduler_t* out_scheduler) {
  if (out_scheduler) *out_scheduler = nullptr;
  if (!session || !out_scheduler)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "session and out_scheduler must not be NULL");
  kiln_scheduler_options_t o;
  kiln_scheduler_options_init(&o);
  if (options) {
    if (options->struct_size < sizeof(size_t) || options->struct_size > sizeof(o))
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "kiln_scheduler_options_t.struct_size is %zu; initialize the "
                              "options with kiln_scheduler_options_init",
                              options->struct_size);
    std::memcpy(&o, options, options->struct_size);
  }
  if (o.max_step_tokens <= 0 || o.max_running <= 0)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "max_step_tokens %d and max_running %d must be > 0",
                            o.max_step_tokens, o.max_running);
  const kiln::Manifest& m = session->model->manifest;
  if (!m.model.generation)
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION, "this model cannot drive generation");
  if (!m.model.ragged)
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "continuous batching needs an artifact compiled with "
                            "kiln-compile --ragged");
  std::vector<int> layers;
  int64_t bs = 0;
  for (int l = 0; l < m.model.num_layers; ++l) {
    const kiln::IoDesc& io = m.inputs[size_t(m.past_key[size_t(l)])];
    const kiln::ValueDesc* d = io.part == kiln::IoDesc::kTensor ? nullptr : &m.values[size_t(io.value)];
    if (!d || !d->paged || (bs && d->block_size != bs))
      return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                              "continuous batching needs every layer's KV cache paged with one "
                              "block size (kiln-compile --kv-layout=paged:N); layer %d's is not",
                              l);
    bs = d->block_size;
    layers.push_back(io.value);
  }
  if (!session->kv_pool.ready())
    KILN_RETURN_IF_ERROR(session->kv_pool.Init(m, layers, bs, session->kv_cache_blocks));
  auto* s = new (std::nothrow) kiln_scheduler_s;
  if (!s) return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  s->session = session;
  s->options = o;
  s->layers = std::move(layers);
  *out_scheduler = s;
  return nullptr;
}

void kiln_scheduler_release(kiln_scheduler_t scheduler) { delete scheduler; }

kiln_status_t kiln_scheduler_submit(kiln_scheduler_t s, const int64_t* prompt, size_t length,
                                    const kiln_generate_options_t* options, uint64_t* out_id) {
  if (out_id) *out_id = 0;
  if (!s || !out_id)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "scheduler and out_id must not be NULL");
  if (!prompt || length == 0)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "the prompt is empty");
  auto r = std::unique_ptr<Request>(new (std::nothrow) Request);
  if (!r) return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  KILN_RETURN_IF_ERROR(kiln::ReadGenerateOptions(options, &r->options));
  r->options.callback = nullptr;
  const kiln::ModelDesc& md = s->session->model->manifest.model;
  for (size_t t = 0; t < length; ++t)
    if (prompt[t] < 0 || prompt[t] >= md.vocab_size)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "token %zu is %lld, outside the vocabulary [0, %lld)", t,
                              (long long)prompt[t], (long long)md.vocab_size);
  const int64_t need = int64_t(length) + r->options.max_new_tokens;
  if (need > s->session->max_sequence_length)
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                            "the KV cache holds %lld tokens per sequence; a prompt of %zu plus "
                            "%d new tokens needs %lld",
                            (long long)s->session->max_sequence_length, length,
                            r->options.max_new_tokens, (long long)need);
  if (r->options.eos_token_ids && r->options.eos_count)
    r->eos.assign(r->options.eos_token_ids, r->options.eos_token_ids + r->options.eos_count);
  else
    r->eos = md.eos;
  r->options.eos_token_ids = nullptr;  // the caller's array need not outlive the call
  r->options.eos_count = 0;
  r->prompt.assign(prompt, prompt + length);
  r->prompt_len = length;
  r->sampler.reset(new (std::nothrow) kiln::Sampler(r->options));
  if (!r->sampler) return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  r->id = s->next_id++;
  *out_id = r->id;
  s->waiting.push_back(r.get());
  s->requests[r->id] = std::move(r);
  return nullptr;
}

kiln_status_t kiln_scheduler_step(kiln_scheduler_t s, kiln_step_info_t* out_info) {
  if (!s) return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "scheduler must not be NULL");
  if (out_info && (out_info->struct_size < sizeof(size_t) ||
                   out_info->struct_size > sizeof(kiln_step_info_t)))
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_step_info_t.struct_size is %zu; set it to "
                            "sizeof(kiln_step_info_t)",
                            out_info->struct_size);
  return s->Step(out_info);
}

size_t kiln_scheduler_pending(kiln_scheduler_t s) {
  return s ? s->waiting.size() + s->running.size() : 0;
}

static Request* FindRequest(kiln_scheduler_t s, uint64_t id) {
  auto it = s->requests.find(id);
  return it == s->requests.end() ? nullptr : it->second.get();
}

kiln_status_t kiln_scheduler_poll(kiln_scheduler_t s, uint64_t id, const int64_t** out_tokens,
                                  size_t* out_count, int32_t* out_finished,
                                  kiln_stop_reason_t* out_reason) {
  if (!s || !out_tokens || !out_count)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "scheduler, out_tokens and out_count must not be NULL");
  Request* r = FindRequest(s, id);
  if (!r) return KILN_MAKE_STATUS(KILN_STATUS_NOT_FOUND, "no request %llu", (unsigned long long)id);
  *out_tokens = r->tokens.data();
  *out_count = r->tokens.size();
  if (out_finished) *out_finished = r->finished ? 1 : 0;
  if (out_reason) *out_reason = r->reason;
  return nullptr;
}

kiln_status_t kiln_scheduler_preemptions(kiln_scheduler_t s, uint64_t id, uint32_t* out_count) {
  if (!s || !out_count)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "scheduler and out_count must not be NULL");
  Request* r = FindRequest(s, id);
  if (!r) return KILN_MAKE_STATUS(KILN_STATUS_NOT_FOUND, "no request %llu", (unsigned long long)id);
  *out_count = r->preemptions;
  return nullptr;
}

kiln_status_t kiln_scheduler_cancel(kiln_scheduler_t s, uint64_t id) {
  if (!s) return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "scheduler must not be NULL");
  Request* r = FindRequest(s, id);
  if (!r) return KILN_MAKE_STATUS(KILN_STATUS_NOT_FOUND, "no request %llu", (unsigned long long)id);
  if (r->finished) return nullptr;
  auto w = std::find(s->waiting.begin(), s->waiting.end(), r);
  if (w != s->waiting.end()) s->waiting.erase(w);
  auto run = std::find(s->running.begin(), s->running.end(), r);
  if (run != s->running.end()) s->running.erase(run);
  s->Finish(*r, KILN_STOP_CANCELLED);
  return nullptr;
}

kiln_status_t kiln_scheduler_remove(kiln_scheduler_t s, uint64_t id) {
  KILN_RETURN_IF_ERROR(kiln_scheduler_cancel(s, id));
  s->requests.erase(id);
  return nullptr;
}

}  // extern "C"
