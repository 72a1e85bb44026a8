// A fixed pool of threads for oneDNN's THREADPOOL runtime.
//
// MindSpore 2.10's libdnnl.so.3 is built with DNNL_CPU_RUNTIME=THREADPOOL: a stream made without a
// threadpool_iface runs every primitive on the calling thread alone. MindSpore's own pool is internal
// C++, so the kernel brings this one: the calling thread plus (threads - 1) workers, woken per
// parallel_for. Callers from several MindSpore actor threads take turns (one job at a time), so the
// process never runs more compute threads than cores.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "oneapi/dnnl/dnnl_threadpool_iface.hpp"

namespace langseg {

class ThreadPool final : public dnnl::threadpool_interop::threadpool_iface {
 public:
  explicit ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
    for (int i = 1; i < threads_; ++i) std::thread([this] { Work(); }).detach();  // lives as long as the process
  }
  int get_num_threads() const override { return threads_; }
  bool get_in_parallel() const override { return inside_; }
  uint64_t get_flags() const override { return 0; }  // synchronous: parallel_for returns when all are done

  void parallel_for(int n, const std::function<void(int, int)> &fn) override {
    if (threads_ == 1 || n <= 1 || inside_) {  // nested or trivial: run here
      for (int i = 0; i < n; ++i) fn(i, n);
      return;
    }
    std::lock_guard<std::mutex> one_job_at_a_time(launch_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      tasks_ = n;
      next_ = 0;
      busy_workers_ = threads_ - 1;
      ++generation_;
    }
    wake_.notify_all();
    RunTasks();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return busy_workers_ == 0; });
  }

  // Tasks run by the workers, not the caller (what shows that more than one thread computes).
  uint64_t worker_tasks() const { return worker_tasks_; }

 private:
  int RunTasks() {
    int done = 0;
    inside_ = true;
    for (int i = next_.fetch_add(1); i < tasks_; i = next_.fetch_add(1), ++done) (*job_)(i, tasks_);
    inside_ = false;
    return done;
  }
  void Work() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
      }
      worker_tasks_ += RunTasks();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_workers_ == 0) done_.notify_one();
    }
  }

  const int threads_;
  std::mutex launch_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int, int)> *job_ = nullptr;
  int tasks_ = 0, busy_workers_ = 0;
  std::atomic<int> next_{0};
  std::atomic<uint64_t> worker_tasks_{0};
  uint64_t generation_ = 0;
  static thread_local bool inside_;
};

inline thread_local bool ThreadPool::inside_ = false;

}  // namespace langseg
