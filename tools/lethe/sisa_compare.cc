#include "tools/lethe/sisa_compare.h"

#include <cmath>
#include <unordered_set>

#include "common/error.h"
#include "engine/objective.h"
#include "engine/sisa/aggregate.h"
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

namespace {

template <typename T>
ModelAudit AuditEnsemble(const Compared& c, const io::Dataset& train,
                         const std::vector<int64_t>& forget_rows, const io::Dataset& test,
                         const CommonOptions& common) {
  auto backend = kernels::MakeBackend<T>(common.Backend());
  const sisa::Manifest& m = *c.manifest;
  const LossKind loss = c.arch().spec.loss;
  const int64_t width = c.arch().output_dim;
  const int64_t k = sisa::NumLabels(loss, width);
  const double S = static_cast<double>(c.models.size());
  // Per-example loss and label of the ensemble on every row of `data`.
  auto run = [&](const io::Dataset& data, std::vector<double>& losses, std::vector<int64_t>& labels) {
    // Constituent s's outputs, computed on rank s mod P under mpirun and received by every
    // rank in shard order (tools/lethe/sisa_distributed.h): the one-process bits.
    const std::vector<std::string> results =
        AllConstituentResults(static_cast<int>(c.models.size()), [&](int s) {
          const Model& model = c.models[s];
          Objective<T> objective(*backend, model.arch, UploadData(*backend, data),
                                 ObjectiveOptions{common.batch_size});
          std::vector<T> host(model.theta.begin(), model.theta.end());
          auto theta = backend->Allocate(1, model.arch.num_params);
          backend->Upload(host.data(), theta);
          auto out = backend->Allocate(data.n, width);
          objective.Outputs(theta, out);
          std::vector<T> f(data.n * width);
          backend->Download(out, f.data());
          return Pack(nlohmann::json::object(), std::vector<double>(f.begin(), f.end()));
        });
    std::vector<std::vector<double>> outputs(results.size());
    for (size_t s = 0; s < results.size(); ++s) {
      nlohmann::json header;
      Unpack(results[s], header, outputs[s]);
    }
    const sisa::EnsemblePrediction p = sisa::Predict(m.aggregate, loss, outputs, data.n, width);
    labels = p.label;
    losses.resize(data.n);
    for (int64_t i = 0; i < data.n; ++i) {
      const int64_t y = static_cast<int64_t>(data.y[i * data.target_width]);
      if (m.aggregate == sisa::Aggregate::kMean) {
        losses[i] = -std::log(p.probability[i * k + y]);
      } else {
        int64_t votes = 0;
        for (const auto& f : outputs) votes += sisa::ConstituentLabel(loss, f.data() + i * width, width) == y;
        losses[i] = 1 - static_cast<double>(votes) / S;
      }
    }
  };
  auto metrics = [&](const io::Dataset& data, const std::vector<double>& losses,
                     const std::vector<int64_t>& labels, const std::vector<int64_t>& rows) {
    SetMetrics s;
    s.n = static_cast<int64_t>(rows.size());
    s.accuracy = std::nan("");
    if (s.n == 0) return s;
    int64_t right = 0;
    for (int64_t r : rows) {
      s.loss += losses[r];
      right += labels[r] == static_cast<int64_t>(data.y[r * data.target_width]);
    }
    s.loss /= static_cast<double>(s.n);
    s.accuracy = static_cast<double>(right) / static_cast<double>(s.n);
    return s;
  };
  ModelAudit a;
  std::vector<double> train_losses, test_losses;
  std::vector<int64_t> train_labels, test_labels;
  run(train, train_losses, train_labels);
  run(test, test_losses, test_labels);
  std::unordered_set<int64_t> forget(forget_rows.begin(), forget_rows.end());
  std::vector<int64_t> kept_rows, test_rows(test.n);
  for (int64_t i = 0; i < train.n; ++i)
    if (!forget.count(i)) kept_rows.push_back(i);
  for (int64_t i = 0; i < test.n; ++i) test_rows[i] = i;
  a.forget = metrics(train, train_losses, train_labels, forget_rows);
  a.kept = metrics(train, train_losses, train_labels, kept_rows);
  a.test = metrics(test, test_losses, test_labels, test_rows);
  for (int64_t r : forget_rows) a.forget_losses.push_back(train_losses[r]);
  a.test_losses = test_losses;
  a.test_predictions.assign(test_labels.begin(), test_labels.end());
  a.membership_auc = MembershipAuc(a.forget_losses, a.test_losses);
  return a;
}

}  // namespace

ModelAudit AuditCompared(const Compared& c, const io::Dataset& train,
                         const std::vector<int64_t>& forget_rows, const io::Dataset& test,
                         const CommonOptions& common) {
  if (c.manifest)
    return common.F32() ? AuditEnsemble<float>(c, train, forget_rows, test, common)
                        : AuditEnsemble<double>(c, train, forget_rows, test, common);
  const Model& model = c.models.front();
  if (common.F32()) {
    auto be = kernels::MakeBackend<float>(common.Backend());
    return AuditModel<float>(*be, model.arch, model.theta, train, forget_rows, test, common.batch_size);
  }
  auto be = kernels::MakeBackend<double>(common.Backend());
  return AuditModel<double>(*be, model.arch, model.theta, train, forget_rows, test, common.batch_size);
}

}  // namespace lethe::cli
