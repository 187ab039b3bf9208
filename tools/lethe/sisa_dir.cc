#include "tools/lethe/sisa_dir.h"

#include <sys/stat.h>

#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "engine/sisa/aggregate.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/sha256.h"

namespace lethe::cli {

bool IsEnsembleDir(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  return ::stat((path + "/manifest.json").c_str(), &st) == 0;
}

sisa::Manifest ReadEnsemble(const std::string& dir) {
  const std::string where = dir + "/manifest.json";
  sisa::Manifest m = sisa::Manifest::Parse(io::ReadFile(where), where);
  for (const sisa::Shard& s : m.shards)
    for (const sisa::Checkpoint& c : s.slices) {
      const std::string path = dir + "/" + c.file;
      if (io::Sha256File(path) != c.sha256)
        Fail(path, ": SHA-256 differs from the one ", where, " records (altered or corrupt)");
    }
  return m;
}

namespace {

template <typename T>
std::vector<double> Outputs(kernels::Backend<T>& backend, const Model& model,
                            const io::Dataset& data, int64_t batch) {
  Objective<T> objective(backend, model.arch, UploadData(backend, data),
                         ObjectiveOptions{batch});
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
int Eval(const std::string& dir, const sisa::Manifest& m, const io::Dataset& data,
         const CommonOptions& common) {
  auto backend = kernels::MakeBackend<T>(common.Backend());
  std::vector<std::vector<double>> outputs;
  LossKind loss{};
  int64_t width = 0;
  std::vector<double> constituent_accuracy;
  for (int s = 0; s < m.partition.shards; ++s) {
    const std::string path = dir + "/" + m.Constituent(s).file;
    const Model model = LoadModel(path);
    CheckDataMatchesModel(model.arch, data);
    loss = model.arch.spec.loss;
    width = model.arch.output_dim;
    outputs.push_back(Outputs(*backend, model, data, common.batch_size));
    int64_t right = 0;
    for (int64_t i = 0; i < data.n; ++i)
      right += sisa::ConstituentLabel(loss, outputs.back().data() + i * width, width) ==
               static_cast<int64_t>(data.y[i * data.target_width]);
    constituent_accuracy.push_back(data.n ? right / static_cast<double>(data.n) : 0);
  }
  const sisa::EnsemblePrediction p = sisa::Predict(m.aggregate, loss, outputs, data.n, width);
  const int64_t k = sisa::NumLabels(loss, width);
  int64_t right = 0;
  double log_loss = 0;
  for (int64_t i = 0; i < data.n; ++i) {
    const int64_t y = static_cast<int64_t>(data.y[i * data.target_width]);
    right += p.label[i] == y;
    if (m.aggregate == sisa::Aggregate::kMean) log_loss -= std::log(p.probability[i * k + y]);
  }
  const double accuracy = data.n ? right / static_cast<double>(data.n) : 0;
  log_loss /= static_cast<double>(std::max<int64_t>(data.n, 1));
  double lo = 1, hi = 0, mean = 0;
  for (double a : constituent_accuracy) lo = std::min(lo, a), hi = std::max(hi, a), mean += a;
  mean /= static_cast<double>(constituent_accuracy.size());
  if (common.json) {
    nlohmann::json j;
    j["n"] = data.n;
    j["ensemble"] = {{"shards", m.partition.shards}, {"slices", m.partition.slices},
                     {"aggregate", sisa::Name(m.aggregate)}, {"generation", m.generation}};
    j["accuracy"] = accuracy;
    // mean −log p̄_y: the log loss of the ensemble's mean probabilities (mean only).
    if (m.aggregate == sisa::Aggregate::kMean)
      j["loss"] = std::isfinite(log_loss) ? nlohmann::json(log_loss) : nlohmann::json(nullptr);
    j["constituent_accuracy"] = constituent_accuracy;
    j["forgotten"] = static_cast<int64_t>(m.forgotten.ids.size());
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << dir << " (SISA ensemble: " << m.partition.shards << " shards × "
              << m.partition.slices << " slices, " << sisa::Name(m.aggregate) << ") on "
              << data.path << " (" << data.n << " examples, " << common.dtype << ", "
              << backend->Describe() << ")\n";
    if (m.aggregate == sisa::Aggregate::kMean)
      std::cout << "  loss       " << io::FormatDouble(log_loss)
                << "   (mean −log of the mean predicted probability of the label)\n";
    std::cout << "  accuracy   " << Fixed(100 * accuracy, 2) << " %\n"
              << "  constituents' accuracy  min " << Fixed(100 * lo, 2) << " %  mean "
              << Fixed(100 * mean, 2) << " %  max " << Fixed(100 * hi, 2) << " %\n";
  }
  int64_t forgotten_here = 0;
  for (int64_t id : data.ids) forgotten_here += m.forgotten.Contains(id);
  if (forgotten_here > 0)
    std::cerr << "lethe eval: note: " << data.path << " holds " << forgotten_here
              << " example(s) that " << dir
              << " has forgotten; they are evaluated like the others\n";
  return 0;
}

}  // namespace

int EvalEnsemble(const std::string& dir, const std::string& data_path, const CommonOptions& common) {
  const sisa::Manifest m = ReadEnsemble(dir);
  const io::Dataset data = io::LoadDataset(data_path, common.Data());
  return common.F32() ? Eval<float>(dir, m, data, common) : Eval<double>(dir, m, data, common);
}

int InspectEnsemble(const std::string& dir, bool json) {
  const sisa::Manifest m = ReadEnsemble(dir);
  int64_t kept = 0, lo = INT64_MAX, hi = 0;
  double seconds = 0;
  for (const sisa::Shard& s : m.shards) {
    kept += s.size();
    lo = std::min(lo, s.size());
    hi = std::max(hi, s.size());
    for (const sisa::Checkpoint& c : s.slices) seconds += c.seconds;
  }
  if (json) {
    nlohmann::json j = nlohmann::json::parse(m.ToJson());
    for (auto& s : j["shards"])
      for (auto& c : s["slices"]) {
        c["n"] = c["ids"].size();
        c.erase("ids");
      }
    j["kept"] = kept;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << dir << ": SISA ensemble, " << m.partition.shards << " shards × "
            << m.partition.slices << " slices, aggregate " << sisa::Name(m.aggregate)
            << ", generation " << m.generation << "\n"
            << "  partition  " << sisa::kPartitionScheme << ", seed " << m.partition.seed << "\n"
            << "  training   " << Name(m.train.optimizer) << ", " << m.dtype;
  if (m.train.optimizer == Optimizer::kAdam)
    std::cout << ", " << m.train.epochs << " epochs (" << m.epochs_per_slice << " per slice)";
  std::cout << "\n  data       " << m.data_path << " (" << m.data_n << " examples, sha256 "
            << m.data_sha256.substr(0, 16) << "…)\n"
            << "  examples   " << kept << " kept, " << m.forgotten.ids.size()
            << " forgotten; shard sizes " << lo << " … " << hi << "\n"
            << "  training time recorded " << Fixed(seconds, 3) << " s\n"
            << "  shard  examples  per slice" << std::string(20, ' ') << "model\n";
  for (int s = 0; s < m.partition.shards; ++s) {
    std::string per;
    for (const sisa::Checkpoint& c : m.shards[s].slices)
      per += (per.empty() ? "" : " ") + std::to_string(c.ids.size());
    std::cout << "  " << s << "  " << m.shards[s].size() << "  " << per << "  "
              << m.Constituent(s).file << "\n";
  }
  if (!m.forgotten.requests.empty()) {
    std::cout << "  deletion history:\n";
    for (const ForgetRequest& r : m.forgotten.requests)
      std::cout << "    " << r.utc << "  " << r.method << "  " << r.k << " id(s), ids sha256 "
                << r.ids_sha256.substr(0, 16) << "…\n";
  }
  return 0;
}

}  // namespace lethe::cli
