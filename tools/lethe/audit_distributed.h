// engine/audit.h's AuditModel under mpirun (docs/distributed.md): unlearn --verify and
// compare measure a model on the training rows that each rank holds.
//
// The forget and kept sets' loss and accuracy are sums over every rank's rows (one
// distributed Objective::Evaluate each: two values reduced). The membership attack's AUC
// ranks the forget set's losses among the test set's, which needs all of them in one place:
// each rank's forget losses (k doubles in all, the forget set's size) are gathered to rank
// 0, in rank order. The test set lives on rank 0 alone (as for influence): its metrics,
// losses and predictions are computed there. So the whole audit is complete on rank 0
// only; the other ranks' copies hold the summed forget and kept metrics and nothing of the
// test set. Serially it is AuditModel.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/audit.h"
#include "engine/objective.h"

namespace lethe::cli {

// Collective. `forget_rows` are rows of this rank's `train` (possibly none); `test` is
// used on rank 0 only (nullptr: no test set, as AuditModel with an empty one).
template <typename T>
ModelAudit AuditRows(kernels::Backend<T>& backend, const Architecture& arch,
                     const std::vector<double>& theta, const io::Dataset& train,
                     const std::vector<int64_t>& forget_rows, const io::Dataset* test,
                     int64_t chunk_size);

// `rows` of `data` on the device; unlike UploadData, no rows means none (not all).
template <typename T>
DeviceData<T> UploadRows(kernels::Backend<T>& backend, const io::Dataset& data,
                         const std::vector<int64_t>& rows);

// Every rank's `values` on rank 0, in rank order (empty on the other ranks). Collective.
std::vector<double> GatherDoublesToRoot(const std::vector<double>& values);

}  // namespace lethe::cli
