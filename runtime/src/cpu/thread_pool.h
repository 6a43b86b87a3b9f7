// A fixed pool of worker threads for data-parallel kernels. parallel_for
// splits [0, n) into contiguous chunks of at least `grain` iterations and
// runs them on the workers and the calling thread; it returns when all are
// done. With one thread, or n <= grain, it runs inline.
//
// A decode step launches a hundred small kernels back to back, so handing
// work out must cost far less than a futex wake-up: workers spin on an
// atomic generation counter for a short while after each job before they
// block, and chunks are claimed with an atomic counter.
//
// Thread-safety: one parallel_for at a time per pool (a session owns its
// pool and runs one launch at a time). Nested calls run inline.
#ifndef KILN_RUNTIME_CPU_THREAD_POOL_H_
#define KILN_RUNTIME_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln {

class ThreadPool {
 public:
  /// `threads` counts the caller too: 1 means no workers. 0 picks the
  /// number of hardware threads.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  using Body = std::function<void(int64_t begin, int64_t end)>;
  void parallel_for(int64_t n, int64_t grain, const Body& body);

 private:
  void Worker();
  void RunChunks();

  int size_ = 1;
  std::vector<std::thread> workers_;
  // The current job. job_ is odd while a job is open and even once the
  // caller has closed it; the fields below are written only while it is
  // even and no worker is active, and read only by a worker that registered
  // in active_ and then saw the job still open (so a worker that wakes late
  // never reads a half-written next job, and the caller never waits for a
  // worker that has not woken up: on a busy machine that would cost a whole
  // scheduler time slice per kernel).
  const Body* body_ = nullptr;
  int64_t n_ = 0, chunk_ = 0, chunks_ = 0;
  std::atomic<int64_t> next_chunk_{0};
  std::atomic<int64_t> done_chunks_{0};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> job_{0};
  std::atomic<bool> stop_{false};
  // Sleeping workers wait here.
  std::mutex mu_;
  std::condition_variable cv_;
  int sleepers_ = 0;
};

}  // namespace kiln

#endif  // KILN_RUNTIME_CPU_THREAD_POOL_H_
