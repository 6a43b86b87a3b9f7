#include "cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KILN_CPU_RELAX() _mm_pause()
#else
#define KILN_CPU_RELAX() std::this_thread::yield()
#endif

namespace kiln {

namespace {
// Set while a thread runs a parallel_for body, so a nested call runs inline
// instead of deadlocking on the busy pool.
thread_local bool tls_in_parallel = false;
// How long an idle worker spins before it sleeps: long enough to bridge the
// gap between two kernels of one step, short enough not to burn a core
// between steps.
constexpr auto kSpin = std::chrono::microseconds(200);
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  size_ = threads;
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { Worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunChunks() {
  tls_in_parallel = true;
  for (;;) {
    int64_t c = next_chunk_.fetch_add(1);
    if (c >= chunks_) break;
    int64_t begin = c * chunk_, end = std::min(n_, begin + chunk_);
    (*body_)(begin, end);
    done_chunks_.fetch_add(1);
  }
  tls_in_parallel = false;
}

void ThreadPool::Worker() {
  uint64_t seen = 0;
  auto has_job = [&] {
    uint64_t j = job_.load();
    return (j & 1) && j != seen;
  };
  for (;;) {
    // Spin briefly for the next job, then sleep.
    auto deadline = std::chrono::steady_clock::now() + kSpin;
    int spins = 0;
    while (!has_job() && !stop_.load()) {
      // Pause, and yield now and then: when threads outnumber free cores
      // the thread that would post the next job may be waiting for this
      // core.
      KILN_CPU_RELAX();
      if (++spins % 16 == 0) std::this_thread::yield();
      if (spins % 64 == 0 && std::chrono::steady_clock::now() > deadline) {
        std::unique_lock<std::mutex> lock(mu_);
        ++sleepers_;
        cv_.wait(lock, [&] { return stop_.load() || has_job(); });
        --sleepers_;
        break;
      }
    }
    if (stop_.load()) return;
    uint64_t j = job_.load();
    if (!(j & 1) || j == seen) continue;
    seen = j;
    // Register, then make sure the job is still open: the caller closes it
    // before waiting for active_ to drain, so either it waits for us or we
    // see it closed and read nothing.
    active_.fetch_add(1);
    if (job_.load() == j) RunChunks();
    active_.fetch_sub(1);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const Body& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (size_ == 1 || n <= grain || tls_in_parallel) {
    body(0, n);
    return;
  }
  // About four chunks per thread balances uneven rows without much overhead.
  int64_t max_chunks = (n + grain - 1) / grain;
  int64_t chunks = std::min<int64_t>(max_chunks, int64_t(size_) * 4);
  int64_t chunk = (n + chunks - 1) / chunks;
  body_ = &body;
  n_ = n;
  chunk_ = chunk;
  chunks_ = (n + chunk - 1) / chunk;
  next_chunk_.store(0);
  done_chunks_.store(0);
  job_.fetch_add(1);  // open (odd)
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sleepers_) cv_.notify_all();
  }
  RunChunks();
  // Wait for the chunks other threads took, then close the job and wait
  // for every worker still registered to leave it.
  int spins = 0;
  while (done_chunks_.load() != chunks_) {
    KILN_CPU_RELAX();
    if (++spins % 16 == 0) std::this_thread::yield();
  }
  job_.fetch_add(1);  // closed (even)
  while (active_.load() != 0) std::this_thread::yield();
  body_ = nullptr;
}

}  // namespace kiln
