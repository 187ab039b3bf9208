// Sums over the ranks of what an Objective computed on its own rows (docs/distributed.md):
// the matrices (on the compute device) and host scalars go to the host as doubles, through
// ONE Communicator::AllreduceSum, and back. The allreduce is on host buffers also for a
// GPU backend (p values per product: far less than the pass over the data it follows).
#pragma once

#include <vector>

#include "engine/distributed/communicator.h"
#include "kernels/backend.h"

namespace lethe::distributed {

template <typename T>
void AllreduceSum(Communicator& comm, kernels::Backend<T>& backend,
                  const std::vector<kernels::Matrix<T>>& matrices, std::vector<double>* scalars);

}  // namespace lethe::distributed
