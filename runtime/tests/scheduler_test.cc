// The continuous-batching scheduler's C API (kiln_scheduler_*) on the
// counting decoder of test_artifacts.h compiled the way kiln-compile
// --ragged --kv-layout=paged:2 would: its next token after t is (t + 1) % 8,
// so every request's tokens are known exactly whatever the batch around it.
// Requests arriving between steps, chunked prompts, preemption in a small
// pool, prefix reuse, cancel and remove, bad arguments, and a randomized
// stress run that must give back every block. Whether the ragged kernels
// keep each sequence's cache right is checked on the real test models by
// scripts/check_kv_layouts.py (variant "serving").
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kiln/runtime/api.h"
#include "kiln/runtime/api.hpp"
#include "test_artifacts.h"

namespace {

using kiln_test::CacheLmManifest;
using kiln_test::Container;
using kiln_test::CountingLmWeights;
using kiln_test::StatusText;
using kiln_test::TempFile;

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

/// The counting decoder with a ragged graph and paged caches of 2 tokens.
std::string RaggedManifest() {
  std::string m = Replace(CacheLmManifest(), R"("layout": "contiguous")",
                          R"("layout": "paged", "block_size": 2)");
  return Replace(m, R"("padding": "none",)", R"("padding": "none", "ragged": true,)");
}

/// The tokens the counting decoder gives after `last`.
std::vector<int64_t> Counting(int64_t last, size_t n) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < n; ++i) out.push_back(last = (last + 1) % 8);
  return out;
}

kiln_generate_options_t Options(int32_t max_new, bool ignore_eos = true) {
  kiln_generate_options_t o;
  kiln_generate_options_init(&o);
  o.max_new_tokens = max_new;
  o.ignore_eos = ignore_eos ? 1 : 0;
  return o;
}

struct Polled {
  std::vector<int64_t> tokens;
  bool finished = false;
  kiln_stop_reason_t reason = KILN_STOP_EOS;
};

class Scheduler : public ::testing::Test {
 protected:
  void Open(const std::string& manifest, int64_t blocks = 0, bool prefix_reuse = true) {
    file_ = std::make_unique<TempFile>(Container(manifest, CountingLmWeights()));
    ASSERT_TRUE(kiln::Model::Load(file_->path(), &model_).ok());
    kiln_session_options_t so;
    kiln_session_options_init(&so);
    so.kv_cache_blocks = blocks;
    so.prefix_reuse = prefix_reuse ? 1 : 0;
    kiln::Status s = kiln::Session::Create(model_, &session_, &so);
    ASSERT_TRUE(s.ok()) << StatusText(s);
  }
  void Create(int32_t step_tokens = 256, int32_t running = 64) {
    kiln_scheduler_options_t o;
    kiln_scheduler_options_init(&o);
    o.max_step_tokens = step_tokens;
    o.max_running = running;
    kiln::Status s(kiln_scheduler_create(session_.get(), &o, &sched_));
    ASSERT_TRUE(s.ok()) << StatusText(s);
  }
  void TearDown() override { kiln_scheduler_release(sched_); }

  uint64_t Submit(const std::vector<int64_t>& prompt, const kiln_generate_options_t& o) {
    uint64_t id = 0;
    kiln::Status s(kiln_scheduler_submit(sched_, prompt.data(), prompt.size(), &o, &id));
    EXPECT_TRUE(s.ok()) << StatusText(s);
    EXPECT_NE(id, 0u);
    return id;
  }
  kiln_step_info_t Step() {
    kiln_step_info_t info;
    std::memset(&info, 0, sizeof(info));
    info.struct_size = sizeof(info);
    kiln::Status s(kiln_scheduler_step(sched_, &info));
    EXPECT_TRUE(s.ok()) << StatusText(s);
    return info;
  }
  Polled Poll(uint64_t id) {
    Polled p;
    const int64_t* t = nullptr;
    size_t n = 0;
    int32_t finished = 0;
    kiln::Status s(kiln_scheduler_poll(sched_, id, &t, &n, &finished, &p.reason));
    EXPECT_TRUE(s.ok()) << StatusText(s);
    if (t) p.tokens.assign(t, t + n);
    p.finished = finished != 0;
    return p;
  }
  kiln_kv_usage_t Usage() {
    kiln_kv_usage_t u;
    std::memset(&u, 0, sizeof(u));
    u.struct_size = sizeof(u);
    EXPECT_EQ(kiln_session_kv_usage(session_.get(), &u), nullptr);
    return u;
  }

  std::unique_ptr<TempFile> file_;
  kiln::Model model_;
  kiln::Session session_;
  kiln_scheduler_t sched_ = nullptr;
};

TEST_F(Scheduler, ServesRequestsArrivingBetweenSteps) {
  Open(RaggedManifest());
  Create(/*step_tokens=*/3);
  const uint64_t a = Submit({1, 2, 3, 4, 5}, Options(4));
  kiln_step_info_t first = Step();
  EXPECT_EQ(first.sequences, 1u);
  EXPECT_EQ(first.prefill_tokens, 3u) << "a prompt longer than the step budget is chunked";
  EXPECT_EQ(first.running, 1u);
  EXPECT_TRUE(Poll(a).tokens.empty()) << "no token before the prompt is all in the cache";
  const uint64_t b = Submit({6}, Options(3));
  const uint64_t c = Submit({2, 3}, Options(2, /*ignore_eos=*/false));
  size_t steps = 1, mixed = 0, prefill = first.prefill_tokens, finished = 0;
  while (kiln_scheduler_pending(sched_) > 0) {
    kiln_step_info_t info = Step();
    ASSERT_GT(info.sequences, 0u);
    EXPECT_LE(info.prefill_tokens + info.decode_tokens, 3u) << "step " << steps;
    mixed += info.prefill_tokens > 0 && info.decode_tokens > 0;
    prefill += info.prefill_tokens;
    finished += info.finished;
    ASSERT_LT(++steps, 50u);
  }
  EXPECT_EQ(prefill, 8u) << "every prompt token computed once";
  EXPECT_EQ(finished + first.finished, 3u);
  EXPECT_GT(mixed, 0u) << "no step mixed prompt chunks and decode tokens";
  Polled pa = Poll(a), pb = Poll(b), pc = Poll(c);
  EXPECT_EQ(pa.tokens, Counting(5, 4));
  EXPECT_EQ(pb.tokens, Counting(6, 3));
  EXPECT_EQ(pc.tokens, Counting(3, 2));
  EXPECT_TRUE(pa.finished && pb.finished && pc.finished);
  EXPECT_EQ(pa.reason, KILN_STOP_MAX_TOKENS);
  // 3 -> 4, 5, 6, 7: eos (7) ends c only when it gets there; 2 tokens first.
  EXPECT_EQ(pc.reason, KILN_STOP_MAX_TOKENS);
  const uint64_t d = Submit({5}, Options(8, /*ignore_eos=*/false));
  while (kiln_scheduler_pending(sched_) > 0) Step();
  Polled pd = Poll(d);
  EXPECT_EQ(pd.tokens, (std::vector<int64_t>{6, 7}));
  EXPECT_EQ(pd.reason, KILN_STOP_EOS);
  // Nothing pending: a step does nothing.
  kiln_step_info_t idle = Step();
  EXPECT_EQ(idle.sequences, 0u);
  EXPECT_EQ(Usage().blocks_used, Usage().blocks_cached) << "finished requests hold no blocks";
}

TEST_F(Scheduler, LimitsRunningRequests) {
  Open(RaggedManifest());
  Create(256, /*running=*/2);
  std::vector<uint64_t> ids;
  for (int64_t t = 0; t < 5; ++t) ids.push_back(Submit({t}, Options(3)));
  while (kiln_scheduler_pending(sched_) > 0) {
    kiln_step_info_t info = Step();
    EXPECT_LE(info.running, 2u);
    EXPECT_LE(info.sequences, 2u);
  }
  for (int64_t t = 0; t < 5; ++t) EXPECT_EQ(Poll(ids[size_t(t)]).tokens, Counting(t, 3));
}

TEST_F(Scheduler, PreemptsWhenThePoolRunsOutAndRecomputes) {
  // Three requests of 3 + 5 tokens need 4 blocks of 2 each; the pool has 6.
  Open(RaggedManifest(), /*blocks=*/6);
  Create();
  std::vector<uint64_t> ids;
  for (int64_t t : {1, 3, 5}) ids.push_back(Submit({t, t, t}, Options(5)));
  size_t preempted = 0;
  while (kiln_scheduler_pending(sched_) > 0) {
    preempted += Step().preempted;
    ASSERT_LE(Usage().blocks_used, 6);
  }
  EXPECT_GT(preempted, 0u);
  uint32_t per_request = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t t = int64_t(2 * i + 1);
    EXPECT_EQ(Poll(ids[i]).tokens, Counting(t, 5)) << "request " << i;
    uint32_t n = 0;
    ASSERT_EQ(kiln_scheduler_preemptions(sched_, ids[i], &n), nullptr);
    per_request += n;
  }
  EXPECT_EQ(per_request, preempted);
  EXPECT_EQ(Usage().preemptions, preempted);
  EXPECT_LE(Usage().blocks_peak, 6);
}

TEST_F(Scheduler, RequestLargerThanThePoolFailsTheStep) {
  Open(RaggedManifest(), /*blocks=*/2);  // 4 tokens
  Create();
  const uint64_t id = Submit({1, 2, 3}, Options(4));
  kiln::Status s;
  for (int i = 0; i < 10 && s.ok(); ++i) s = kiln::Status(kiln_scheduler_step(sched_, nullptr));
  EXPECT_EQ(s.code(), KILN_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_NE(StatusText(s).find("the pool of 2 blocks cannot hold them"), std::string::npos)
      << StatusText(s);
  Polled p = Poll(id);
  EXPECT_TRUE(p.finished);
  EXPECT_EQ(p.tokens, Counting(3, 2)) << "the tokens it got before running out stays readable";
  EXPECT_EQ(kiln_scheduler_pending(sched_), 0u);
  EXPECT_EQ(Usage().blocks_used, Usage().blocks_cached);
}

TEST_F(Scheduler, SharesCachedPromptBlocks) {
  Open(RaggedManifest());
  Create();
  const std::vector<int64_t> shared = {4, 1, 6, 2, 3};  // two full blocks and one token
  const uint64_t a = Submit(shared, Options(3));
  while (kiln_scheduler_pending(sched_) > 0) Step();
  EXPECT_EQ(Usage().reused_tokens, 0u);
  EXPECT_EQ(Usage().blocks_cached, 2);
  std::vector<int64_t> longer = shared;
  longer.push_back(0);
  const uint64_t b = Submit(longer, Options(3));
  kiln_step_info_t info = Step();
  EXPECT_EQ(info.prefill_tokens, 2u) << "the two cached blocks are not computed again";
  while (kiln_scheduler_pending(sched_) > 0) Step();
  EXPECT_EQ(Usage().reused_tokens, 4u);
  EXPECT_EQ(Poll(a).tokens, Counting(3, 3));
  EXPECT_EQ(Poll(b).tokens, Counting(0, 3));
}

TEST_F(Scheduler, WithoutPrefixReuseComputesEveryPrompt) {
  Open(RaggedManifest(), 0, /*prefix_reuse=*/false);
  Create();
  for (int round = 0; round < 2; ++round) {
    const uint64_t id = Submit({4, 1, 6, 2, 3}, Options(2));
    EXPECT_EQ(Step().prefill_tokens, 5u);
    while (kiln_scheduler_pending(sched_) > 0) Step();
    EXPECT_EQ(Poll(id).tokens, Counting(3, 2));
  }
  EXPECT_EQ(Usage().reused_tokens, 0u);
  EXPECT_EQ(Usage().blocks_cached, 0);
  EXPECT_EQ(Usage().blocks_used, 0);
}

TEST_F(Scheduler, CancelsAndRemovesRequests) {
  Open(RaggedManifest());
  Create(256, /*running=*/1);
  const uint64_t running = Submit({1, 2, 3}, Options(6));
  const uint64_t waiting = Submit({5}, Options(6));
  Step();
  Step();
  EXPECT_EQ(Poll(running).tokens, Counting(3, 2));
  ASSERT_EQ(kiln_scheduler_cancel(sched_, waiting), nullptr);
  ASSERT_EQ(kiln_scheduler_cancel(sched_, running), nullptr);
  EXPECT_EQ(kiln_scheduler_pending(sched_), 0u);
  Polled r = Poll(running), w = Poll(waiting);
  EXPECT_TRUE(r.finished && w.finished);
  EXPECT_EQ(r.reason, KILN_STOP_CANCELLED);
  EXPECT_EQ(w.reason, KILN_STOP_CANCELLED);
  EXPECT_EQ(r.tokens, Counting(3, 2)) << "its tokens so far stay readable";
  EXPECT_TRUE(w.tokens.empty());
  EXPECT_EQ(Usage().blocks_used, Usage().blocks_cached) << "cancelled requests hold no blocks";
  EXPECT_EQ(kiln_scheduler_cancel(sched_, running), nullptr) << "cancelling twice does nothing";
  // Removing forgets a request, finished or not.
  const uint64_t live = Submit({2}, Options(4));
  Step();
  ASSERT_EQ(kiln_scheduler_remove(sched_, live), nullptr);
  ASSERT_EQ(kiln_scheduler_remove(sched_, running), nullptr);
  EXPECT_EQ(kiln_scheduler_pending(sched_), 0u);
  for (uint64_t id : {live, running}) {
    const int64_t* t;
    size_t n;
    kiln::Status s(kiln_scheduler_poll(sched_, id, &t, &n, nullptr, nullptr));
    EXPECT_EQ(s.code(), KILN_STATUS_NOT_FOUND);
    kiln::Status again(kiln_scheduler_remove(sched_, id));
    EXPECT_EQ(again.code(), KILN_STATUS_NOT_FOUND);
  }
  EXPECT_GT(Submit({3}, Options(1)), live) << "ids are not reused";
}

TEST_F(Scheduler, RefusesArtifactsThatCannotServe) {
  struct Case {
    std::string manifest;
    const char* message;
  } cases[] = {
      {CacheLmManifest(), "needs an artifact compiled with kiln-compile --ragged"},
      {Replace(CacheLmManifest(), R"("padding": "none",)", R"("padding": "none", "ragged": true,)"),
       "needs every layer's KV cache paged with one block size"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    TempFile f(Container(c.manifest, CountingLmWeights()));
    kiln::Model model;
    ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
    kiln::Session session;
    ASSERT_TRUE(kiln::Session::Create(model, &session).ok());
    kiln_scheduler_t s = reinterpret_cast<kiln_scheduler_t>(&session);  // overwritten
    kiln::Status st(kiln_scheduler_create(session.get(), nullptr, &s));
    EXPECT_EQ(st.code(), KILN_STATUS_FAILED_PRECONDITION);
    EXPECT_NE(StatusText(st).find(c.message), std::string::npos) << StatusText(st);
    EXPECT_EQ(s, nullptr);
  }
}

TEST_F(Scheduler, RejectsBadArguments) {
  Open(RaggedManifest());
  kiln_scheduler_t s = nullptr;
  kiln::Status n1(kiln_scheduler_create(nullptr, nullptr, &s));
  EXPECT_EQ(n1.code(), KILN_STATUS_INVALID_ARGUMENT);
  kiln::Status n2(kiln_scheduler_create(session_.get(), nullptr, nullptr));
  EXPECT_EQ(n2.code(), KILN_STATUS_INVALID_ARGUMENT);
  kiln_scheduler_options_t o;
  kiln_scheduler_options_init(&o);
  EXPECT_EQ(o.max_step_tokens, 256);
  EXPECT_EQ(o.max_running, 64);
  o.max_step_tokens = 0;
  kiln::Status zero(kiln_scheduler_create(session_.get(), &o, &s));
  EXPECT_EQ(zero.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(StatusText(zero).find("max_step_tokens 0 and max_running 64 must be > 0"),
            std::string::npos)
      << StatusText(zero);
  kiln_scheduler_options_init(&o);
  o.struct_size = sizeof(o) + 8;
  kiln::Status size(kiln_scheduler_create(session_.get(), &o, &s));
  EXPECT_EQ(size.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(StatusText(size).find("kiln_scheduler_options_t.struct_size"), std::string::npos);
  EXPECT_EQ(s, nullptr);

  Create();
  uint64_t id = 7;
  const int64_t good[] = {1, 2}, oov[] = {1, 8};
  kiln_generate_options_t g = Options(4);
  struct Case {
    const int64_t* prompt;
    size_t length;
    const kiln_generate_options_t* options;
    kiln_status_code_t code;
    const char* message;
  } cases[] = {
      {good, 0, &g, KILN_STATUS_INVALID_ARGUMENT, "the prompt is empty"},
      {nullptr, 2, &g, KILN_STATUS_INVALID_ARGUMENT, "the prompt is empty"},
      {oov, 2, &g, KILN_STATUS_INVALID_ARGUMENT, "token 1 is 8, outside the vocabulary [0, 8)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    kiln::Status st(kiln_scheduler_submit(sched_, c.prompt, c.length, c.options, &id));
    EXPECT_EQ(st.code(), c.code);
    EXPECT_NE(StatusText(st).find(c.message), std::string::npos) << StatusText(st);
    EXPECT_EQ(id, 0u);
  }
  kiln_generate_options_t too_long = Options(15);  // 2 + 15 > 16
  kiln::Status tl(kiln_scheduler_submit(sched_, good, 2, &too_long, &id));
  EXPECT_EQ(tl.code(), KILN_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_NE(StatusText(tl).find("a prompt of 2 plus 15 new tokens needs 17"), std::string::npos)
      << StatusText(tl);
  kiln_generate_options_t bad = Options(0);
  kiln::Status bo(kiln_scheduler_submit(sched_, good, 2, &bad, &id));
  EXPECT_EQ(bo.code(), KILN_STATUS_INVALID_ARGUMENT);
  kiln::Status nid(kiln_scheduler_submit(sched_, good, 2, &g, nullptr));
  EXPECT_EQ(nid.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(kiln_scheduler_pending(sched_), 0u) << "refused requests are not queued";
  // NULL options are the defaults: 32 new tokens, more than this cache holds.
  kiln::Status defaults(kiln_scheduler_submit(sched_, good, 2, nullptr, &id));
  EXPECT_EQ(defaults.code(), KILN_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_NE(StatusText(defaults).find("plus 32 new tokens"), std::string::npos);
  id = Submit({1, 2}, Options(2));

  kiln_step_info_t info;
  info.struct_size = 3;
  kiln::Status si(kiln_scheduler_step(sched_, &info));
  EXPECT_EQ(si.code(), KILN_STATUS_INVALID_ARGUMENT);
  kiln::Status ns(kiln_scheduler_step(nullptr, nullptr));
  EXPECT_EQ(ns.code(), KILN_STATUS_INVALID_ARGUMENT);
  const int64_t* t;
  size_t n;
  kiln::Status nf(kiln_scheduler_poll(sched_, 999, &t, &n, nullptr, nullptr));
  EXPECT_EQ(nf.code(), KILN_STATUS_NOT_FOUND);
  EXPECT_NE(StatusText(nf).find("no request 999"), std::string::npos);
  kiln::Status np(kiln_scheduler_poll(sched_, id, nullptr, &n, nullptr, nullptr));
  EXPECT_EQ(np.code(), KILN_STATUS_INVALID_ARGUMENT);
  uint32_t pre;
  kiln::Status pn(kiln_scheduler_preemptions(sched_, 999, &pre));
  EXPECT_EQ(pn.code(), KILN_STATUS_NOT_FOUND);
  kiln::Status cn(kiln_scheduler_cancel(sched_, 999));
  EXPECT_EQ(cn.code(), KILN_STATUS_NOT_FOUND);
  EXPECT_EQ(kiln_scheduler_pending(nullptr), 0u);
  kiln_scheduler_release(nullptr);
}

// Random submits, cancels and removes between steps in a pool small enough
// to preempt: every request that ran to its end has the counting tokens,
// and when all are done the pool holds only the prefix cache's blocks.
TEST_F(Scheduler, RandomizedServingGivesBackEveryBlock) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    kiln_scheduler_release(sched_);
    sched_ = nullptr;
    Open(RaggedManifest(), /*blocks=*/10);
    std::mt19937_64 rng(seed);
    Create(int32_t(2 + rng() % 6), int32_t(1 + rng() % 4));
    struct Sent {
      uint64_t id;
      int64_t last;
      int32_t max_new;
      bool cancelled = false, removed = false;
    };
    std::vector<Sent> sent;
    for (int step = 0; step < 200 && (step < 60 || kiln_scheduler_pending(sched_) > 0); ++step) {
      if (step < 60 && rng() % 3 == 0) {
        std::vector<int64_t> prompt(1 + rng() % 7);
        for (int64_t& t : prompt) t = int64_t(rng() % 8);
        const int32_t max_new = int32_t(1 + rng() % 8);
        sent.push_back({Submit(prompt, Options(max_new)), prompt.back(), max_new});
      }
      if (!sent.empty() && rng() % 10 == 0) {
        Sent& v = sent[rng() % sent.size()];
        if (!v.removed) {
          v.cancelled = !Poll(v.id).finished || v.cancelled;
          if (rng() % 2) {
            ASSERT_EQ(kiln_scheduler_remove(sched_, v.id), nullptr);
            v.removed = true;
          } else {
            ASSERT_EQ(kiln_scheduler_cancel(sched_, v.id), nullptr);
          }
        }
      }
      kiln::Status s(kiln_scheduler_step(sched_, nullptr));
      ASSERT_TRUE(s.ok()) << StatusText(s);
      kiln_kv_usage_t u = Usage();
      ASSERT_LE(u.blocks_used, u.blocks_total);
      ASSERT_LE(u.blocks_cached, u.blocks_used);
    }
    ASSERT_EQ(kiln_scheduler_pending(sched_), 0u);
    for (const Sent& v : sent) {
      if (v.removed) continue;
      Polled p = Poll(v.id);
      EXPECT_TRUE(p.finished);
      if (v.cancelled) {
        EXPECT_EQ(p.reason, KILN_STOP_CANCELLED);
        const std::vector<int64_t> want = Counting(v.last, p.tokens.size());
        EXPECT_EQ(p.tokens, want) << "request " << v.id << " before it was cancelled";
      } else {
        EXPECT_EQ(p.tokens, Counting(v.last, size_t(v.max_new))) << "request " << v.id;
      }
    }
    kiln_kv_usage_t u = Usage();
    EXPECT_EQ(u.blocks_used, u.blocks_cached) << "blocks leaked";
  }
}

}  // namespace
