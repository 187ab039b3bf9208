// Progress of long work. The engine reports it through this interface and never decides
// how (or whether) it is shown: the CLI's sink (tools/lethe/cli.h) prints phase, count,
// rate and ETA on stderr when stderr is a terminal and --quiet is not given; tests and the
// library pass none. Solvers and passes report once per unit of work (an operator
// application, an iteration, a block of examples); sinks rate-limit.
#pragma once

#include <cstdint>

namespace lethe {

class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  // `done` of `total` units of `phase` are finished (total = 0: unknown). A phase starts
  // with done = 0 and may end with done = total; `phase` must outlive the call only.
  virtual void Report(const char* phase, int64_t done, int64_t total) = 0;
};

// sink->Report(...) when there is a sink.
inline void ReportProgress(ProgressSink* sink, const char* phase, int64_t done, int64_t total) {
  if (sink) sink->Report(phase, done, total);
}

}  // namespace lethe
