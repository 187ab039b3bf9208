#include "tools/lethe/sisa_compare.h"

#include <cmath>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "common/error.h"
#include "engine/objective.h"
#include "engine/sisa/aggregate.h"
#include "tools/lethe/audit_distributed.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/ensemble_rows.h"
#include "tools/lethe/sisa_dir.h"
#include "tools/lethe/sisa_distributed.h"

namespace lethe::cli {

std::vector<double> Compared::Theta() const {
  std::vector<double> theta;
  for (const Model& m : models) theta.insert(theta.end(), m.theta.begin(), m.theta.end());
  return theta;
}

Compared LoadCompared(const std::string& path) {
  Compared c;
  c.path = path;
  if (!IsEnsembleDir(path)) {
    c.models.push_back(LoadModel(path));
    return c;
  }
  c.manifest = ReadEnsemble(path);
  for (int s = 0; s < c.manifest->partition.shards; ++s)
    c.models.push_back(LoadModel(path + "/" + c.manifest->ConstituentFile(s)));
  return c;
}

std::string DistanceNotApplicable(const Compared& a, const Compared& b) {
  if (!a.manifest && !b.manifest) return "";
  if (!a.manifest || !b.manifest)
    return "one is an ensemble, the other a single model: their parameters do not correspond";
  const sisa::PartitionOptions& p = a.manifest->partition;
  const sisa::PartitionOptions& q = b.manifest->partition;
  if (p.shards != q.shards || p.slices != q.slices || p.seed != q.seed)
    return "the ensembles' partitions differ (shards, slices or seed): constituent s of one "
           "is not trained on the counterpart of constituent s of the other";
  if (a.manifest->spec_json != b.manifest->spec_json) return "the ensembles' specs differ";
  return "";
}

// The one-process audit of an ensemble, also under mpirun: each rank predicts its block of
// the training rows with every constituent (ensemble_rows.h) and sends rank 0 the kept rows'
// losses in row order and the forget rows' (position in forget_order, loss, right), which
// rank 0 sums in the one-process order: the same bits. The test set is on rank 0 alone.
ModelAudit AuditEnsemble(const Compared& c, const io::Dataset& train,
                         const std::vector<int64_t>& forget_rows,
                         const std::vector<int64_t>& forget_order, const io::Dataset* test,
                         const CommonOptions& common) {
  const sisa::Aggregate aggregate = c.manifest->aggregate;
  const EnsembleRows on_train = PredictEnsembleRows(c.models, aggregate, train, common);
  auto right = [&](const io::Dataset& data, const EnsembleRows& r, int64_t i) {
    return r.label[i] == static_cast<int64_t>(data.y[i * data.target_width]);
  };
  std::unordered_set<int64_t> forget(forget_rows.begin(), forget_rows.end());
  std::vector<double> kept_losses;
  int64_t kept_right = 0;
  for (int64_t i = 0; i < train.n; ++i)
    if (!forget.count(i))
      kept_losses.push_back(on_train.loss[i]), kept_right += right(train, on_train, i);
  std::unordered_map<int64_t, int64_t> position;  // id → its place in forget_order
  for (size_t t = 0; t < forget_order.size(); ++t) position.emplace(forget_order[t], t);
  std::vector<double> forget_triples;  // (position, loss, right) per forget row
  for (int64_t r : forget_rows) {
    const auto at = position.find(train.ids[r]);
    forget_triples.push_back(at == position.end() ? 0.0 : static_cast<double>(at->second));
    forget_triples.push_back(on_train.loss[r]);
    forget_triples.push_back(right(train, on_train, r) ? 1.0 : 0.0);
  }
  kept_losses = GatherDoublesToRoot(kept_losses);
  kept_right = SumOverRanks(kept_right);
  forget_triples = GatherDoublesToRoot(forget_triples);
  ModelAudit a;
  a.forget.accuracy = a.kept.accuracy = a.test.accuracy = std::nan("");
  if (Comm().rank() != 0) return a;  // the audit is complete on rank 0 (audit_distributed.h)
  // A set's mean loss and accuracy: losses summed in the given order.
  auto metrics = [](const std::vector<double>& losses, int64_t right) {
    SetMetrics s;
    s.n = static_cast<int64_t>(losses.size());
    s.accuracy = std::nan("");
    if (s.n == 0) return s;
    for (double l : losses) s.loss += l;
    s.loss /= static_cast<double>(s.n);
    s.accuracy = static_cast<double>(right) / static_cast<double>(s.n);
    return s;
  };
  a.kept = metrics(kept_losses, kept_right);
  std::vector<int64_t> order(forget_triples.size() / 3);
  std::iota(order.begin(), order.end(), 0);
  if (!forget_order.empty())  // rank order is row order; the given ids' order is one process's
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
      return forget_triples[3 * x] < forget_triples[3 * y];
    });
  int64_t forget_right = 0;
  for (int64_t t : order) {
    a.forget_losses.push_back(forget_triples[3 * t + 1]);
    forget_right += forget_triples[3 * t + 2] != 0;
  }
  a.forget = metrics(a.forget_losses, forget_right);
  if (test) {
    const EnsembleRows on_test = PredictEnsembleRows(c.models, aggregate, *test, common);
    int64_t test_right = 0;
    for (int64_t i = 0; i < test->n; ++i) test_right += right(*test, on_test, i);
    a.test = metrics(on_test.loss, test_right);
    a.test_losses = on_test.loss;
    a.test_predictions.assign(on_test.label.begin(), on_test.label.end());
  }
  a.membership_auc = MembershipAuc(a.forget_losses, a.test_losses);
  return a;
}

}  // namespace lethe::cli
