#include "cpu/thread_pool.h"

#include <algorithm>
#include <atomic>

namespace kiln {

namespace {
// Set while a thread runs a parallel_for body, so a nested call runs inline
// instead of deadlocking on the busy pool.
thread_local bool tls_in_parallel = false;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  size_ = threads;
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { Worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Worker(int) {
  uint64_t seen = 0;
  for (;;) {
    const Body* body;
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      body = body_;
    }
    tls_in_parallel = true;
    for (;;) {
      int64_t c;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (next_chunk_ >= chunks_) break;
        c = next_chunk_++;
      }
      int64_t begin = c * chunk_, end = std::min(n_, begin + chunk_);
      (*body)(begin, end);
    }
    tls_in_parallel = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
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
  chunks = (n + chunk - 1) / chunk;
  {
    std::lock_guard<std::mutex> lock(mu_);
    body_ = &body;
    n_ = n;
    chunk_ = chunk;
    chunks_ = chunks;
    next_chunk_ = 0;
    pending_ = int(workers_.size());
    ++generation_;
  }
  start_cv_.notify_all();
  tls_in_parallel = true;
  for (;;) {
    int64_t c;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (next_chunk_ >= chunks_) break;
      c = next_chunk_++;
    }
    int64_t begin = c * chunk, end = std::min(n, begin + chunk);
    body(begin, end);
  }
  tls_in_parallel = false;
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  body_ = nullptr;
}

}  // namespace kiln
