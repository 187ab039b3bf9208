// Progress and Ctrl-C for engine work that runs with the GIL released.
//
// The engine reports progress through ProgressSink (common/progress.h) once per unit of work
// (an operator application, an iteration, a block of examples), and training through its
// callback. This sink, given to those hooks, takes the GIL back for a moment on each report
// (microseconds, against units of work of milliseconds), runs PyErr_CheckSignals, and calls
// the user's callback (callback(phase, done, total)) at most every `interval` seconds and at
// each phase's start and end. When a signal handler raised (Ctrl-C: KeyboardInterrupt) or
// the callback raised, it throws Interrupted: the engine's objects unwind (RAII), and the
// binding, holding the GIL again, re-raises the pending Python exception.
#pragma once

#include <omp.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <exception>
#include <string>

#include "common/progress.h"

namespace lethe::py_module {

namespace py = pybind11;

// Thrown out of the engine when a Python exception is pending (its indicator is set).
struct Interrupted : std::exception {
  const char* what() const noexcept override { return "interrupted by a Python exception"; }
};

class PythonProgress : public ProgressSink {
 public:
  // callback: None or callable(phase: str, done: int, total: int).
  explicit PythonProgress(py::object callback, double interval = 0.1)
      : callback_(std::move(callback)), interval_(interval) {}
  void Report(const char* phase, int64_t done, int64_t total) override;
  // The same check without a report (training's iterations).
  void Check() { Report(nullptr, 0, 0); }

 private:
  py::object callback_;
  double interval_;
  std::chrono::steady_clock::time_point last_{};
  std::string phase_;
};

// The calling thread's OpenMP thread count, restored on scope exit: the CPU backend sets it
// to the run's --threads, which must not leak into the host process (torch reads it too).
class OmpThreadsGuard {
 public:
  OmpThreadsGuard() : threads_(omp_get_max_threads()) {}
  ~OmpThreadsGuard() { omp_set_num_threads(threads_); }
  OmpThreadsGuard(const OmpThreadsGuard&) = delete;
  OmpThreadsGuard& operator=(const OmpThreadsGuard&) = delete;

 private:
  int threads_;
};

// Runs `work` with the GIL released; a pending Python exception (Interrupted) is re-raised.
template <typename F>
auto WithoutGil(F&& work) -> decltype(work()) {
  OmpThreadsGuard threads;
  try {
    py::gil_scoped_release release;
    return work();
  } catch (const Interrupted&) {
    throw py::error_already_set();
  }
}

}  // namespace lethe::py_module
