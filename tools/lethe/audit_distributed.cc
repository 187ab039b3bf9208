#include "tools/lethe/audit_distributed.h"

#include <cmath>
#include <cstring>
#include <string>
#include <unordered_set>

#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {

template <typename T>
DeviceData<T> UploadRows(kernels::Backend<T>& backend, const io::Dataset& data,
                         const std::vector<int64_t>& rows) {
  if (!rows.empty()) return UploadData(backend, data, rows);
  return {backend.Allocate(0, data.d), backend.Allocate(0, data.target_width), nullptr};
}

std::vector<double> GatherDoublesToRoot(const std::vector<double>& values) {
  std::vector<double> all;
  bool sent = false;
  Comm().StreamToRoot(
      [&](std::string* chunk) {
        if (sent) return false;
        chunk->assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(double));
        sent = true;
        return true;
      },
      [&](const std::string& chunk) {
        const size_t count = chunk.size() / sizeof(double), at = all.size();
        all.resize(at + count);
        if (count) std::memcpy(all.data() + at, chunk.data(), count * sizeof(double));
      });
  return all;
}

namespace {

// A set's metrics summed over the ranks (each with its `rows` of `data`, maybe none), and
// its per-example losses on this rank when `losses` is set.
template <typename T>
SetMetrics MeasureRows(kernels::Backend<T>& be, const Architecture& arch,
                       const kernels::Matrix<T>& theta, const io::Dataset& data,
                       const std::vector<int64_t>& rows, int64_t chunk,
                       std::vector<double>* losses) {
  Objective<T> o(be, arch, UploadRows(be, data, rows), ObjectiveOptions{chunk});
  Distribute(o);
  const Metrics metrics = o.Evaluate(theta);  // collective: every rank, rows or none
  SetMetrics m;
  m.n = metrics.n;
  m.accuracy = std::nan("");
  if (m.n == 0) return m;  // as AuditModel: an empty set has loss 0 and no accuracy
  m.loss = metrics.loss;
  if (arch.spec.loss != LossKind::kMse) m.accuracy = metrics.accuracy;
  if (losses && !rows.empty()) {
    kernels::Matrix<T> l = be.Allocate(static_cast<int64_t>(rows.size()), 1);
    o.PerExampleLosses(theta, l);
    std::vector<T> host(rows.size());
    be.Download(l, host.data());
    losses->assign(host.begin(), host.end());
  }
  return m;
}

}  // namespace

template <typename T>
ModelAudit AuditRows(kernels::Backend<T>& be, const Architecture& arch,
                     const std::vector<double>& theta, const io::Dataset& train,
                     const std::vector<int64_t>& forget_rows, const io::Dataset* test,
                     int64_t chunk) {
  const io::Dataset no_test;
  if (!Distributed())
    return AuditModel<T>(be, arch, theta, train, forget_rows, test ? *test : no_test, chunk);
  std::vector<T> host(theta.begin(), theta.end());
  kernels::Matrix<T> t = be.Allocate(1, static_cast<int64_t>(theta.size()));
  be.Upload(host.data(), t);
  std::unordered_set<int64_t> forget(forget_rows.begin(), forget_rows.end());
  std::vector<int64_t> kept_rows;
  for (int64_t i = 0; i < train.n; ++i)
    if (!forget.count(i)) kept_rows.push_back(i);
  ModelAudit a;
  std::vector<double> forget_losses;
  a.forget = MeasureRows(be, arch, t, train, forget_rows, chunk, &forget_losses);
  a.kept = MeasureRows(be, arch, t, train, kept_rows, chunk, nullptr);
  // The AUC is a rank statistic: the losses' order does not matter, only that all are here.
  a.forget_losses = GatherDoublesToRoot(forget_losses);
  a.test.accuracy = std::nan("");
  if (Comm().rank() == 0 && test) {
    // AuditModel over the test set alone (an empty training set measures nothing).
    io::Dataset none;
    none.d = train.d;
    none.target_width = train.target_width;
    const ModelAudit on_test = AuditModel<T>(be, arch, theta, none, {}, *test, chunk);
    a.test = on_test.test;
    a.test_losses = on_test.test_losses;
    a.test_predictions = on_test.test_predictions;
  }
  a.membership_auc = MembershipAuc(a.forget_losses, a.test_losses);
  return a;
}

template ModelAudit AuditRows<float>(kernels::Backend<float>&, const Architecture&,
                                     const std::vector<double>&, const io::Dataset&,
                                     const std::vector<int64_t>&, const io::Dataset*, int64_t);
template ModelAudit AuditRows<double>(kernels::Backend<double>&, const Architecture&,
                                      const std::vector<double>&, const io::Dataset&,
                                      const std::vector<int64_t>&, const io::Dataset*, int64_t);
template DeviceData<float> UploadRows<float>(kernels::Backend<float>&, const io::Dataset&,
                                             const std::vector<int64_t>&);
template DeviceData<double> UploadRows<double>(kernels::Backend<double>&, const io::Dataset&,
                                               const std::vector<int64_t>&);

}  // namespace lethe::cli
