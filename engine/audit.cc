#include "engine/audit.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "common/error.h"
#include "engine/objective.h"

namespace lethe {

double MembershipAuc(const std::vector<double>& member, const std::vector<double>& nonmember) {
  if (member.empty() || nonmember.empty()) return std::nan("");
  // Rank-sum over the pooled losses, ties sharing their average rank: O((a+b) log(a+b)).
  std::vector<std::pair<double, int>> pooled;
  for (double x : member) pooled.push_back({x, 0});
  for (double x : nonmember) pooled.push_back({x, 1});
  std::sort(pooled.begin(), pooled.end());
  double rank_sum_nonmember = 0;
  for (size_t i = 0; i < pooled.size();) {
    size_t j = i;
    while (j < pooled.size() && pooled[j].first == pooled[i].first) ++j;
    const double avg_rank = 0.5 * static_cast<double>(i + 1 + j);  // ranks i+1..j
    for (size_t k = i; k < j; ++k)
      if (pooled[k].second == 1) rank_sum_nonmember += avg_rank;
    i = j;
  }
  const double a = static_cast<double>(member.size()), b = static_cast<double>(nonmember.size());
  // U = number of (member, nonmember) pairs with nonmember loss higher (+½ for ties).
  const double u = rank_sum_nonmember - b * (b + 1) / 2;
  return u / (a * b);
}

namespace {

template <typename T>
SetMetrics Measure(kernels::Backend<T>& be, const Architecture& arch, const kernels::Matrix<T>& theta,
                   const io::Dataset& data, const std::vector<int64_t>& rows, int64_t chunk,
                   std::vector<double>* losses, std::vector<double>* predictions) {
  SetMetrics m;
  m.n = static_cast<int64_t>(rows.size());
  m.accuracy = std::nan("");
  if (m.n == 0) return m;
  Objective<T> o(be, arch, UploadData(be, data, rows), ObjectiveOptions{chunk});
  const Metrics metrics = o.Evaluate(theta);
  m.loss = metrics.loss;
  if (arch.spec.loss != LossKind::kMse) m.accuracy = metrics.accuracy;
  if (losses) {
    kernels::Matrix<T> l = be.Allocate(m.n, 1);
    o.PerExampleLosses(theta, l);
    std::vector<T> host(m.n);
    be.Download(l, host.data());
    losses->assign(host.begin(), host.end());
  }
  if (predictions && arch.spec.loss != LossKind::kMse) {
    const int64_t w = arch.output_dim;
    kernels::Matrix<T> f = be.Allocate(m.n, w);
    o.Outputs(theta, f);
    std::vector<T> host(m.n * w);
    be.Download(f, host.data());
    predictions->resize(m.n);
    for (int64_t i = 0; i < m.n; ++i) {
      const T* row = host.data() + i * w;
      (*predictions)[i] = w == 1 ? (row[0] > 0 ? 1 : 0)
                                 : static_cast<double>(std::max_element(row, row + w) - row);
    }
  }
  return m;
}

}  // namespace

template <typename T>
ModelAudit AuditModel(kernels::Backend<T>& be, const Architecture& arch,
                      const std::vector<double>& theta, const io::Dataset& train,
                      const std::vector<int64_t>& forget_rows, const io::Dataset& test,
                      int64_t chunk) {
  std::vector<T> host(theta.begin(), theta.end());
  kernels::Matrix<T> t = be.Allocate(1, static_cast<int64_t>(theta.size()));
  be.Upload(host.data(), t);
  std::unordered_set<int64_t> forget(forget_rows.begin(), forget_rows.end());
  std::vector<int64_t> kept_rows, test_rows(test.n);
  for (int64_t i = 0; i < train.n; ++i)
    if (!forget.count(i)) kept_rows.push_back(i);
  for (int64_t i = 0; i < test.n; ++i) test_rows[i] = i;
  ModelAudit a;
  a.forget = Measure(be, arch, t, train, forget_rows, chunk, &a.forget_losses, nullptr);
  a.kept = Measure(be, arch, t, train, kept_rows, chunk, nullptr, nullptr);
  a.test = Measure(be, arch, t, test, test_rows, chunk, &a.test_losses, &a.test_predictions);
  a.membership_auc = MembershipAuc(a.forget_losses, a.test_losses);
  return a;
}

double PredictionAgreement(const ModelAudit& a, const ModelAudit& b) {
  LETHE_CHECK(a.test_predictions.size() == b.test_predictions.size());
  if (a.test_predictions.empty()) return std::nan("");
  int64_t same = 0;
  for (size_t i = 0; i < a.test_predictions.size(); ++i)
    same += a.test_predictions[i] == b.test_predictions[i];
  return static_cast<double>(same) / static_cast<double>(a.test_predictions.size());
}

double Distance(const std::vector<double>& a, const std::vector<double>& b) {
  LETHE_CHECK(a.size() == b.size());
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s);
}

template ModelAudit AuditModel<float>(kernels::Backend<float>&, const Architecture&,
                                      const std::vector<double>&, const io::Dataset&,
                                      const std::vector<int64_t>&, const io::Dataset&, int64_t);
template ModelAudit AuditModel<double>(kernels::Backend<double>&, const Architecture&,
                                       const std::vector<double>&, const io::Dataset&,
                                       const std::vector<int64_t>&, const io::Dataset&, int64_t);

}  // namespace lethe
