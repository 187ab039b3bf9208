#include "engine/distributed/objective_reduce.h"

#include <algorithm>

namespace lethe::distributed {

template <typename T>
void AllreduceSum(Communicator& comm, kernels::Backend<T>& backend,
                  const std::vector<kernels::Matrix<T>>& matrices, std::vector<double>* scalars) {
  int64_t total = scalars ? static_cast<int64_t>(scalars->size()) : 0;
  for (const kernels::Matrix<T>& m : matrices) total += m.size();
  std::vector<double> buffer(static_cast<size_t>(total));
  std::vector<T> host;
  int64_t at = 0;
  for (const kernels::Matrix<T>& m : matrices) {
    host.resize(static_cast<size_t>(m.size()));
    backend.Download(m, host.data());
    std::copy(host.begin(), host.end(), buffer.begin() + at);  // T → double: exact
    at += m.size();
  }
  if (scalars) std::copy(scalars->begin(), scalars->end(), buffer.begin() + at);
  comm.AllreduceSum(buffer.data(), total);
  at = 0;
  for (const kernels::Matrix<T>& m : matrices) {
    // The sum in double, rounded once to T (f32: as the one-process f32 sum would be,
    // up to its own rounding).
    host.assign(buffer.begin() + at, buffer.begin() + at + m.size());
    backend.Upload(host.data(), m);
    at += m.size();
  }
  if (scalars) std::copy(buffer.begin() + at, buffer.end(), scalars->begin());
}

template void AllreduceSum<float>(Communicator&, kernels::Backend<float>&,
                                  const std::vector<kernels::Matrix<float>>&, std::vector<double>*);
template void AllreduceSum<double>(Communicator&, kernels::Backend<double>&,
                                   const std::vector<kernels::Matrix<double>>&,
                                   std::vector<double>*);

}  // namespace lethe::distributed
