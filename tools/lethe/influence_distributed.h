// lethe influence and self-influence under mpirun (docs/distributed.md): each rank holds
// a block of the training rows; the test side (g_test) is computed on rank 0 and
// broadcast; the solve runs identically on every rank over the summed curvature; each
// rank scores its own rows, and rank 0 writes them in row order (one test row's piece per
// rank at a time, never n × m on one rank); --top-k and the tables merge every rank's
// candidates.
#pragma once

#include <string>

#include "tools/lethe/session.h"

namespace lethe::cli {

struct InfluenceJob {
  std::string model, train, test, out, spec, ids;  // test, ids: "" when not given
  int64_t top_k = 0;
  SolverFlags flags;
  CommonOptions common;
};

int InfluenceUnderMpi(const InfluenceJob& job);
int SelfInfluenceUnderMpi(const InfluenceJob& job);

}  // namespace lethe::cli
