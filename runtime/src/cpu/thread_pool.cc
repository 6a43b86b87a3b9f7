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
    stop_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunChunks() {
  tls_in_parallel = true;
  for (;;) {
    int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= chunks_) break;
    int64_t begin = c * chunk_, end = std::min(n_, begin + chunk_);
    (*body_)(begin, end);
  }
  tls_in_parallel = false;
}

void ThreadPool::Worker() {
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly for the next job, then sleep.
    auto deadline = std::chrono::steady_clock::now() + kSpin;
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen &&
           !stop_.load(std::memory_order_acquire)) {
      KILN_CPU_RELAX();
      if (++spins % 64 == 0 && std::chrono::steady_clock::now() > deadline) {
        std::unique_lock<std::mutex> lock(mu_);
        ++sleepers_;
        cv_.wait(lock, [&] {
          return stop_.load(std::memory_order_acquire) ||
                 generation_.load(std::memory_order_acquire) != seen;
        });
        --sleepers_;
        break;
      }
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    RunChunks();
    pending_.fetch_sub(1, std::memory_order_acq_rel);
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
  next_chunk_.store(0, std::memory_order_relaxed);
  pending_.store(int(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sleepers_) cv_.notify_all();
  }
  RunChunks();
  // Wait for the workers to finish their chunks (and to stop touching the
  // job's fields) before the next job may overwrite them.
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) {
    KILN_CPU_RELAX();
    if (++spins > 4096) std::this_thread::yield();
  }
  body_ = nullptr;
}

}  // namespace kiln
