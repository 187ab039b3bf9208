#include "tools/lethe/sisa_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "common/error.h"
#include "engine/model.h"
#include "engine/sisa/aggregate.h"
#include "engine/sisa/cell_rows.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/sha256.h"
#include "io/spec.h"
#include "tools/lethe/audit_distributed.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/ensemble_rows.h"

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
  for (const sisa::Shard& s : m.shards)
    if (s.patch && io::Sha256File(dir + "/" + s.patch->file) != s.patch->sha256)
      Fail(dir + "/" + s.patch->file, ": SHA-256 differs from the one ", where,
           " records (altered or corrupt)");
  return m;
}

bool ArgsNameEnsemble(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--model" && i + 1 < args.size()) return IsEnsembleDir(args[i + 1]);
    if (args[i].rfind("--model=", 0) == 0) return IsEnsembleDir(args[i].substr(8));
  }
  return false;
}

void CrashPointForTests(const char* stage) {
  const char* at = std::getenv("LETHE_TEST_CRASH_AT");
  if (at && std::string(at) == stage) std::_Exit(86);
}

std::unordered_map<int64_t, int64_t> RowOfId(const io::Dataset& data) {
  std::unordered_map<int64_t, int64_t> rows;
  rows.reserve(data.n);
  for (int64_t i = 0; i < data.n; ++i) rows[data.ids[i]] = i;
  return rows;
}

void SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

std::vector<std::string> Unreferenced(const std::string& dir, const sisa::Manifest& m) {
  std::set<std::string> named;
  for (const sisa::Shard& s : m.shards) {
    for (const sisa::Checkpoint& c : s.slices) named.insert(c.file);
    if (s.patch) named.insert(s.patch->file);
  }
  static const std::regex checkpoint(R"(s\d+-(r\d+|patch)-g\d+\.safetensors(\.tmp\.\d+\.\d+)?)");
  static const std::regex temporary(R"(manifest\.json\.tmp\.\d+\.\d+)");
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if ((std::regex_match(name, checkpoint) || std::regex_match(name, temporary)) &&
        !named.count(name))
      out.push_back(name);
  }
  return out;
}

void LockEnsemble(const std::string& dir) {
  // One change at a time per directory: a second one would build on a manifest about to be
  // replaced. The descriptor stays open (and locked) until the process exits.
  const std::string lock_path = dir + "/.lock";
  const int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0) Fail(dir, ": cannot open ", lock_path, ": ", std::strerror(errno));
  if (::flock(lock, LOCK_EX | LOCK_NB) != 0)
    Fail(dir, ": another unlearn is running on it");
}

io::Dataset LoadEnsembleData(const sisa::Manifest& m, const std::string& dir,
                             std::string& data_path, const CommonOptions& common,
                             std::string* sha256) {
  const std::string manifest_path = dir + "/manifest.json";
  if (data_path.empty()) data_path = m.data_path;
  const std::string sha = io::Sha256File(data_path);
  if (sha256) *sha256 = sha;
  if (sha != m.data_sha256 && m.version < 2)
    Fail(data_path, ": SHA-256 differs from the training data ", manifest_path,
         " records, and that lethe-sisa/1 manifest has no per-cell row hashes to accept a file "
         "with deleted rows; give the original file (the next unlearn records the hashes)");
  io::Dataset data = io::LoadDataset(data_path, common.Data());
  if (sha == m.data_sha256) {
    if (data.n != m.data_n)
      Fail(data_path, ": ", data.n, " examples, the manifest says ", m.data_n);
    return data;
  }
  // Not the recorded file: accepted only if every row still trained on is unchanged.
  sisa::CheckCells(m, data, RowOfId(data), data_path);
  return data;
}

namespace {

// Under mpirun each rank holds a block of the rows and predicts them with every constituent
// (tools/lethe/ensemble_rows.h); the counts are summed, and rank 0 sums the rows' log
// losses in row order (each rank's, gathered in rank order), so the figures are one
// process's bit for bit.
int Eval(const std::string& dir, const sisa::Manifest& m, const std::vector<Model>& constituents,
         const io::Dataset& data, const CommonOptions& common) {
  const EnsembleRows r = PredictEnsembleRows(constituents, m.aggregate, data, common);
  const int64_t n = SumOverRanks(data.n);
  int64_t right = 0;
  for (int64_t i = 0; i < data.n; ++i)
    right += r.label[i] == static_cast<int64_t>(data.y[i * data.target_width]);
  right = SumOverRanks(right);
  double log_loss = 0;
  if (m.aggregate == sisa::Aggregate::kMean)
    for (double loss : GatherDoublesToRoot(r.loss)) log_loss += loss;
  std::vector<double> constituent_accuracy;
  for (int64_t c : r.constituent_right) {
    const int64_t all = SumOverRanks(c);
    constituent_accuracy.push_back(n ? all / static_cast<double>(n) : 0);
  }
  int64_t forgotten_here = 0;
  for (int64_t id : data.ids) forgotten_here += m.forgotten.Contains(id);
  forgotten_here = SumOverRanks(forgotten_here);
  if (Comm().rank() != 0) return 0;
  const double accuracy = n ? right / static_cast<double>(n) : 0;
  log_loss /= static_cast<double>(std::max<int64_t>(n, 1));
  double lo = 1, hi = 0, mean = 0;
  for (double a : constituent_accuracy) lo = std::min(lo, a), hi = std::max(hi, a), mean += a;
  mean /= static_cast<double>(constituent_accuracy.size());
  if (common.json) {
    nlohmann::json j;
    j["n"] = n;
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
              << data.path << " (" << n << " examples, " << common.dtype << ", " << r.device
              << ")\n";
    if (m.aggregate == sisa::Aggregate::kMean)
      std::cout << "  loss       " << io::FormatDouble(log_loss)
                << "   (mean −log of the mean predicted probability of the label)\n";
    std::cout << "  accuracy   " << Fixed(100 * accuracy, 2) << " %\n"
              << "  constituents' accuracy  min " << Fixed(100 * lo, 2) << " %  mean "
              << Fixed(100 * mean, 2) << " %  max " << Fixed(100 * hi, 2) << " %\n";
  }
  if (forgotten_here > 0)
    std::cerr << "lethe eval: note: " << data.path << " holds " << forgotten_here
              << " example(s) that " << dir
              << " has forgotten; they are evaluated like the others\n";
  return 0;
}

}  // namespace

int EvalEnsemble(const std::string& dir, const std::string& data_path, const CommonOptions& common) {
  // Under mpirun every rank reads DIR, every constituent and its block of the data's rows.
  const sisa::Manifest m = Collectively([&] { return ReadEnsemble(dir); });
  const io::Dataset data = LoadRows(data_path, common.Data());
  std::vector<Model> constituents;
  for (int s = 0; s < m.partition.shards; ++s)
    constituents.push_back(Collectively([&] {
      Model model = LoadModel(dir + "/" + m.ConstituentFile(s));
      CheckDataMatchesModel(model.arch, data);
      return model;
    }));
  return Eval(dir, m, constituents, data, common);
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
    for (size_t s = 0; s < j["shards"].size(); ++s) {
      auto& shard = j["shards"][s];
      for (auto& c : shard["slices"]) {
        c["n"] = c["ids"].size();
        c.erase("ids");
      }
      // exact: the constituent is its last checkpoint, retrained on the kept data;
      // patched: a Newton patch (approximate) awaiting retraining by sisa unlearn.
      shard["state"] = m.shards[s].patch ? "patched" : "exact";
      shard["constituent"] = m.ConstituentFile(static_cast<int>(s));
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
            << "  shard  examples  per slice" << std::string(20, ' ') << "model  state\n";
  int patched = 0;
  for (int s = 0; s < m.partition.shards; ++s) {
    std::string per;
    for (const sisa::Checkpoint& c : m.shards[s].slices)
      per += (per.empty() ? "" : " ") + std::to_string(c.ids.size());
    std::cout << "  " << s << "  " << m.shards[s].size() << "  " << per << "  "
              << m.ConstituentFile(s) << "  ";
    if (const auto& p = m.shards[s].patch) {
      ++patched;
      const sisa::PatchRequest& last = p->requests.back();
      std::cout << "patched (Newton, " << p->ids.size() << " id(s) in " << p->requests.size()
                << " request(s); last: " << last.solver << ", " << last.steps
                << " step(s), ‖∇L₋ₛ‖ " << Sci(last.kept_grad_norm_before) << " → "
                << Sci(last.kept_grad_norm_after) << ")\n";
    } else {
      std::cout << "exact\n";
    }
  }
  if (patched > 0)
    std::cout << "  " << patched << " constituent(s) patched (approximate): `lethe sisa unlearn "
              << "--model " << dir << "` retrains them and makes them exact\n";
  if (!m.forgotten.requests.empty()) {
    std::cout << "  deletion history:\n";
    for (const ForgetRequest& r : m.forgotten.requests)
      std::cout << "    " << r.utc << "  " << r.method << "  " << r.k << " id(s), ids sha256 "
                << r.ids_sha256.substr(0, 16) << "…\n";
  }
  return 0;
}

}  // namespace lethe::cli
