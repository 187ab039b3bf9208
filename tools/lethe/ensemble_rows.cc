#include "tools/lethe/ensemble_rows.h"

#include <cmath>

#include "engine/objective.h"
#include "kernels/backend.h"

namespace lethe::cli {
namespace {

// A constituent's outputs on every row of `data` (n × width, row-major).
template <typename T>
std::vector<double> Outputs(kernels::Backend<T>& backend, const Model& model,
                            const io::Dataset& data, int64_t batch) {
  Objective<T> objective(backend, model.arch, UploadData(backend, data), ObjectiveOptions{batch});
  std::vector<T> host(model.theta.begin(), model.theta.end());
  auto theta = backend.Allocate(1, model.arch.num_params);
  backend.Upload(host.data(), theta);
  const int64_t width = model.arch.output_dim;
  auto out = backend.Allocate(data.n, width);
  objective.Outputs(theta, out);
  std::vector<T> f(data.n * width);
  backend.Download(out, f.data());
  return std::vector<double>(f.begin(), f.end());
}

template <typename T>
EnsembleRows Predict(const std::vector<Model>& constituents, sisa::Aggregate aggregate,
                     const io::Dataset& data, const CommonOptions& common) {
  auto backend = kernels::MakeBackend<T>(common.Backend());
  const LossKind loss = constituents.front().arch.spec.loss;
  EnsembleRows r;
  r.device = backend->Describe();
  r.width = constituents.front().arch.output_dim;
  const int64_t k = sisa::NumLabels(loss, r.width), n = data.n;
  const double S = static_cast<double>(constituents.size());
  std::vector<std::vector<double>> outputs;
  for (const Model& model : constituents) {
    outputs.push_back(data.n ? Outputs(*backend, model, data, common.batch_size)
                             : std::vector<double>{});
    int64_t right = 0;
    for (int64_t i = 0; i < n; ++i)
      right += sisa::ConstituentLabel(loss, outputs.back().data() + i * r.width, r.width) ==
               static_cast<int64_t>(data.y[i * data.target_width]);
    r.constituent_right.push_back(right);
  }
  const sisa::EnsemblePrediction p = sisa::Predict(aggregate, loss, outputs, n, r.width);
  r.label = p.label;
  r.loss.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = static_cast<int64_t>(data.y[i * data.target_width]);
    if (aggregate == sisa::Aggregate::kMean) {
      r.loss[i] = -std::log(p.probability[i * k + y]);
    } else {
      int64_t votes = 0;
      for (const auto& f : outputs)
        votes += sisa::ConstituentLabel(loss, f.data() + i * r.width, r.width) == y;
      r.loss[i] = 1 - static_cast<double>(votes) / S;
    }
  }
  return r;
}

}  // namespace

EnsembleRows PredictEnsembleRows(const std::vector<Model>& constituents, sisa::Aggregate aggregate,
                                 const io::Dataset& data, const CommonOptions& common) {
  return common.F32() ? Predict<float>(constituents, aggregate, data, common)
                      : Predict<double>(constituents, aggregate, data, common);
}

}  // namespace lethe::cli
