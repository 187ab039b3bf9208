// lethe sisa train / lethe sisa unlearn: exact unlearning by SISA (Bourtoule et al.,
// "Machine Unlearning", IEEE S&P 2021): S constituent models on disjoint shards, each
// trained over R slices with a checkpoint after each; a deletion retrains only the shards
// it touches, from the checkpoint before the earliest slice it touches. The result is
// bit for bit what `lethe sisa train` on the kept data computes (docs/unlearning.md, "SISA").
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <unordered_map>

#include "common/error.h"
#include "common/quote.h"
#include "engine/model.h"
#include "engine/sisa/aggregate.h"
#include "engine/sisa/cell_rows.h"
#include "engine/sisa/train_shard.h"
#include "io/atomic_file.h"
#include "io/sha256.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/sisa_dir.h"
#include "tools/lethe/sisa_distributed.h"
#include "tools/lethe/sisa_rows.h"

namespace lethe::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One shard to (re)train from slice `from`, starting from `start`.
struct Job {
  int shard;
  int from;
  Model start;
};

// Trains each job's slices, writing checkpoint files of `generation` into `dir` and their
// records into `m` (the new manifest, not yet written). Returns the training seconds (the
// sum of every slice's, wherever it ran).
//
// Under mpirun (docs/distributed.md, "SISA ensembles"): job j trains on rank j mod P with
// this very code (ForEachConstituent, tools/lethe/sisa_distributed.h), and sends each
// slice's θ (raw doubles), training time, row count and convergence to rank 0, which alone
// writes the checkpoint files — rebuilt from the job's start model, whose architecture
// training does not change, so each file is byte for byte the one-process file — and
// fills `m`. Each rank holds only its jobs' shards' rows (tools/lethe/sisa_rows.h), so
// there the job also hashes the cells it trained (rows_sha256) and rank 0 records them.
template <typename T>
double RunJobs(const std::string& dir, sisa::Manifest& m, const ShardData& shard_data,
               const sisa::Partition& partition, std::vector<Job>& jobs, int generation,
               const CommonOptions& common, Progress& progress) {
  auto backend = kernels::MakeBackend<T>(common.Backend());
  const io::Dataset& data = shard_data.rows();
  const auto row_of_id = RowOfId(data);
  double total = 0;
  bool first = true;
  auto work = [&](int j) {
    const Job& job = jobs[j];
    nlohmann::json slices = nlohmann::json::array();
    std::vector<double> thetas;
    Clock::time_point t = Clock::now();
    sisa::TrainShard<T>(*backend, job.start, data, row_of_id, partition, job.shard, job.from, m,
                        [&](const sisa::SliceDone& d) {
                          slices.push_back({{"slice", d.slice},
                                            {"seconds", Since(t)},
                                            {"rows", d.rows},
                                            {"converged", d.summary.converged},
                                            {"grad_norm", Sci(d.summary.grad_norm)},
                                            {"message", d.summary.message}});
                          if (shard_data.split)
                            slices.back()["rows_sha256"] = sisa::CellRowsSha256(
                                data, row_of_id, partition[job.shard][d.slice]);
                          thetas.insert(thetas.end(), d.model.theta.begin(), d.model.theta.end());
                          t = Clock::now();
                        });
    return Pack(slices, thetas);
  };
  auto take = [&](int j, const std::string& bytes) {
    const Job& job = jobs[j];
    nlohmann::json slices;
    std::vector<double> thetas;
    Unpack(bytes, slices, thetas);
    const size_t p = job.start.theta.size();
    LETHE_CHECK(thetas.size() == p * slices.size());
    Model model = job.start;
    for (size_t k = 0; k < slices.size(); ++k) {
      const nlohmann::json& d = slices[k];
      const int slice = d["slice"].get<int>();
      const double seconds = d["seconds"].get<double>();
      total += seconds;
      model.theta.assign(thetas.begin() + k * p, thetas.begin() + (k + 1) * p);
      sisa::Checkpoint& c = m.shards[job.shard].slices[slice];
      c.ids = partition[job.shard][slice];
      c.file = sisa::CheckpointName(job.shard, slice, generation);
      c.seconds = seconds;
      c.trained_on = d["rows"].get<int64_t>();
      c.generation = generation;
      if (d.contains("rows_sha256")) c.rows_sha256 = d["rows_sha256"].get<std::string>();
      const std::string path = dir + "/" + c.file;
      SaveModel(path, model);
      c.sha256 = io::Sha256File(path);
      if (!d["converged"].get<bool>() && m.train.optimizer != Optimizer::kAdam)
        Warn("sisa", "shard " + std::to_string(job.shard) + " slice " + std::to_string(slice) +
                         ": NOT converged (‖∇L‖ = " + d["grad_norm"].get<std::string>() + ", " +
                         d["message"].get<std::string>() + ")");
      progress.Update("  shard " + std::to_string(job.shard) + " slice " +
                      std::to_string(slice) + ": " + std::to_string(c.trained_on) + " rows, " +
                      Fixed(seconds, 3) + " s");
      if (first) CrashPointForTests("checkpoint");
      first = false;
    }
  };
  ForEachConstituent(static_cast<int>(jobs.size()), work, take);
  return total;
}

double Run(const std::string& dir, sisa::Manifest& m, const ShardData& data,
           const sisa::Partition& partition, std::vector<Job>& jobs, int generation,
           const CommonOptions& common, Progress& progress) {
  return m.dtype == "f32"
             ? RunJobs<float>(dir, m, data, partition, jobs, generation, common, progress)
             : RunJobs<double>(dir, m, data, partition, jobs, generation, common, progress);
}

Model InitialModel(const sisa::Manifest& m, const io::Dataset& data, int shard) {
  return InitializeModel(io::ModelSpec::Parse(m.spec_json, "manifest spec"), data,
                         sisa::InitSeed(m.partition.seed, shard),
                         m.dtype == "f32" ? io::DType::kF32 : io::DType::kF64);
}

void RefuseEmptyShards(const sisa::Partition& p, const std::string& what, const char* advice) {
  for (size_t s = 0; s < p.size(); ++s) {
    size_t n = 0;
    for (const auto& slice : p[s]) n += slice.size();
    if (n == 0)
      Fail(what, ": shard ", s, " of ", p.size(), " would have no example (SISA needs every "
           "constituent trained on some data; ", advice, ")");
  }
}

void AddTrainingOptions(po::options_description& desc, TrainOptions& options,
                        std::string& optimizer, uint64_t& seed) {
  desc.add_options()
    ("optimizer", po::value(&optimizer)->default_value("lbfgs"), "lbfgs, newton-cg or adam")
    ("tolerance", po::value(&options.gradient_tolerance)->default_value(1e-9),
     "stop when ‖∇L‖ ≤ this")
    ("max-iterations", po::value(&options.max_iterations)->default_value(20000),
     "lbfgs / newton-cg iteration limit, per slice")
    ("no-polish", "lbfgs: do not finish with Newton-CG when the line search stalls")
    ("seed", po::value(&seed)->default_value(0),
     "the partition's key, the constituents' initialisation and adam's shuffling")
    ("epochs", po::value(&options.epochs)->default_value(100),
     "adam: epochs of an unsliced shard; each slice gets round(2·epochs/(slices+1))")
    ("learning-rate", po::value(&options.learning_rate)->default_value(1e-3), "adam step size")
    ("batch-size", po::value(&options.batch_size)->default_value(128), "adam minibatch size");
}

int RunSisaTrain(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  TrainOptions options;
  std::string spec_path, data_path, out, optimizer, aggregate = "vote";
  uint64_t seed = 0;
  sisa::PartitionOptions partition;
  desc.add_options()("help,h", "show this help")
    ("spec", po::value(&spec_path), "architecture spec JSON")
    ("data", po::value(&data_path), "training data (.npz or .csv)")
    ("shards", po::value(&partition.shards)->default_value(5), "S: constituent models")
    ("slices", po::value(&partition.slices)->default_value(1), "R: slices per shard")
    ("out", po::value(&out), "output directory (must not exist)")
    ("aggregate", po::value(&aggregate)->default_value("vote"),
     "vote (majority of labels) or mean (of predicted probabilities); ties: lowest label");
  AddTrainingOptions(desc, options, optimizer, seed);
  common.Add(desc);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe sisa train --spec SPEC --data TRAIN --shards S --slices R --out DIR",
             "lethe sisa train --spec examples/digits/softmax.json --data "
             "examples/digits/train.npz --shards 4 --slices 2 --out sisa-digits"))
    return 0;
  Require(vm, "spec");
  Require(vm, "data");
  Require(vm, "out");
  sisa::Manifest m;
  partition.seed = seed;
  partition.Validate();
  m.partition = partition;
  m.aggregate = sisa::ParseAggregate(aggregate);
  options.optimizer = ParseOptimizer(optimizer);
  options.polish = !vm.count("no-polish");
  options.seed = seed;
  options.Validate();
  m.train = options;
  m.epochs_per_slice = options.optimizer == Optimizer::kAdam
                           ? sisa::EpochsPerSlice(options.epochs, partition.slices)
                           : 0;
  m.dtype = common.F32() ? "f32" : "f64";
  m.objective_batch = common.batch_size;
  m.device = common.device;
  common.Backend();
  // Under mpirun only rank 0 writes (the directory, the manifest); every rank reads the
  // spec, every id and label of the data file, and the rows of the shards it trains (a
  // shard's rows are scattered over the file by the keyed hash: tools/lethe/sisa_rows.h),
  // and trains its shards (docs/distributed.md, "SISA ensembles").
  const fs::path parent = fs::absolute(out).parent_path();
  OnRoot([&] {
    if (fs::exists(fs::symlink_status(out)))
      Fail(out, ": exists; sisa train writes a new directory (remove it or choose another --out)");
    if (!fs::is_directory(parent))
      Fail(out, ": cannot write: ", parent.string(), " is not a directory");
  });

  const io::ModelSpec spec = Collectively([&] { return io::ReadSpecFile(spec_path); });
  if (spec.loss == LossKind::kMse)
    Fail(spec_path, ": loss mse: SISA ensembles aggregate classifiers only (cross_entropy, logistic)");
  m.spec_json = spec.ToJson();
  std::vector<int> all_shards;  // shard j is job j
  for (int s = 0; s < partition.shards; ++s) all_shards.push_back(s);
  const ShardData shard_data =
      LoadShardRows(data_path, common.Data(), partition, ShardsOfThisRank(all_shards));
  const io::Dataset& data = shard_data.all;  // every id and label (and X with one process)
  m.data_path = fs::absolute(data_path).lexically_normal().string();
  OnRoot([&] { m.data_sha256 = io::Sha256File(data_path); });
  m.data_n = data.n;
  const sisa::Partition p = sisa::PartitionIds(data.ids, partition);
  RefuseEmptyShards(p, data_path, "use fewer shards");
  m.shards.assign(partition.shards,
                  sisa::Shard{std::vector<sisa::Checkpoint>(partition.slices), std::nullopt});
  m.created = UtcNow();

  std::vector<Job> jobs;
  for (int s = 0; s < partition.shards; ++s) {
    Model init = InitialModel(m, data, s);
    CheckShardDataMatchesModel(init.arch, shard_data);
    jobs.push_back({s, 0, std::move(init)});
  }
  // Everything is written into a fresh directory beside DIR, renamed into place at the end:
  // DIR appears complete or not at all. A failure removes the temporary directory.
  std::string temp;
  OnRoot([&] {
    temp = fs::absolute(out).string() + ".tmp-XXXXXX";
    if (!::mkdtemp(temp.data()))
      Fail(out, ": cannot create a directory beside it: ", std::strerror(errno));
  });
  struct Remove {
    std::string path;
    ~Remove() {
      if (!path.empty()) {
        std::error_code ec;
        fs::remove_all(path, ec);
      }
    }
  } remove{temp};
  Progress progress(common.quiet);
  progress.Announce("lethe sisa train: " + std::to_string(data.n) + " examples, " +
                    std::to_string(partition.shards) + " shards × " +
                    std::to_string(partition.slices) + " slices, " + optimizer);
  const auto start = Clock::now();
  const double trained = Run(temp, m, shard_data, p, jobs, 0, common, progress);
  OnRoot([&] {
    // Under mpirun the jobs sent every cell's hash (each shard is a job).
    if (!shard_data.split) sisa::FillCellHashes(m, data, RowOfId(data));
    io::WriteFileAtomically(temp + "/manifest.json", m.ToJson());
    SyncDirectory(temp);
    if (::rename(temp.c_str(), out.c_str()) != 0)
      Fail(out, ": cannot rename ", temp, " into place: ", std::strerror(errno));
    remove.path.clear();
    SyncDirectory(parent.string());
  });
  const double seconds = Since(start);
  const std::vector<int64_t> held = RowsHeldPerRank(shard_data);

  int64_t lo = INT64_MAX, hi = 0;
  for (const auto& shard : p)
    for (const auto& slice : shard)
      lo = std::min<int64_t>(lo, slice.size()), hi = std::max<int64_t>(hi, slice.size());
  if (common.json) {
    nlohmann::json j;
    j["out"] = out;
    j["n"] = data.n;
    j["shards"] = partition.shards;
    j["slices"] = partition.slices;
    j["cell_size_min"] = lo;
    j["cell_size_max"] = hi;
    j["training_seconds"] = trained;
    j["seconds"] = seconds;
    // Under mpirun: the rows of X each rank held (its shards'), in rank order.
    if (Distributed()) j["rows_held_per_rank"] = held;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "trained " << out << ": " << partition.shards << " shards × " << partition.slices
              << " slices of " << data.n << " examples (" << lo << " … " << hi
              << " per slice), " << Name(options.optimizer) << ", " << Fixed(trained, 2)
              << " s training, " << Fixed(seconds, 2) << " s in all\n";
  }
  return 0;
}

int RunSisaUnlearn(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  std::string dir, data_path, report_path;
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&dir), "SISA ensemble directory (lethe sisa train --out)")
    ("forget", po::value<std::string>(), "ids to forget (file, one id per line)")
    ("forget-ids", po::value<std::string>(), "ids to forget (comma-separated)")
    ("data", po::value(&data_path), "the training data (default: the path the manifest records): "
                                     "the recorded file, or one from which forgotten rows were "
                                     "deleted (every other row as recorded, cell by cell)")
    ("report", po::value(&report_path), "write the erasure record (JSON) here");
  common.Add(desc);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe sisa unlearn --model DIR [--forget FILE | --forget-ids LIST] [--report R.json]\n"
             "  (without ids: retrains the Newton-patched constituents, making them exact)",
             "lethe sisa unlearn --model sisa-digits --forget-ids 3,17 --report erasure.json   "
             "(after lethe sisa --help's example)"))
    return 0;
  Require(vm, "model");
  const auto forget = ForgetIds(vm);
  // Under mpirun every rank reads DIR and of the data file every id and label and the rows
  // of its jobs' shards (tools/lethe/sisa_rows.h), the affected shards are retrained on the
  // ranks (ForEachConstituent), and rank 0 alone locks, writes and commits DIR
  // (docs/distributed.md, "SISA ensembles").
  OnRoot([&] {
    if (!report_path.empty()) {
      io::CheckOutputIsNotAnInput(report_path, {dir + "/manifest.json"});
      io::CheckOutputCanBeWritten(report_path);
    }
  });
  common.Backend();
  const std::string manifest_path = dir + "/manifest.json";
  if (!Collectively([&] { return IsEnsembleDir(dir); }))
    Fail(dir, ": not a SISA ensemble directory (no manifest.json)");
  OnRoot([&] { LockEnsemble(dir); });

  const auto start = Clock::now();
  const sisa::Manifest old = Collectively([&] { return ReadEnsemble(dir); });
  if (!forget && !old.AnyPatched())
    Fail("--forget or --forget-ids is required (", dir, " has no Newton-patched constituent "
         "to make exact)");
  const std::string old_sha = Collectively([&] { return io::Sha256File(manifest_path); });
  if (common.device != old.device)
    Warn("sisa unlearn", "the ensemble was trained with --device " + old.device + ", this run "
         "retrains on " + common.device + ": each backend is deterministic, but their "
         "reductions differ in order, so the result is exact retraining on " + common.device +
         ", not bit for bit what sisa train on " + old.device + " would give");
  // What an earlier crash left behind is not part of the ensemble: remove it first.
  OnRoot([&] {
    for (const std::string& name : Unreferenced(dir, old)) fs::remove(dir + "/" + name);
  });

  const std::string what = vm.count("forget") ? vm["forget"].as<std::string>() : "--forget-ids";
  std::vector<int64_t> ids;
  int64_t already = 0;
  for (int64_t id : forget ? *forget : std::vector<int64_t>{}) {
    if (old.forgotten.Contains(id)) ++already;  // its row may have been deleted from the data
    else ids.push_back(id);
  }
  std::vector<int64_t> unique_ids = ids;
  std::sort(unique_ids.begin(), unique_ids.end());
  unique_ids.erase(std::unique(unique_ids.begin(), unique_ids.end()), unique_ids.end());
  // The shards to retrain (from the ids and the patches alone), so that under mpirun each
  // rank reads only its jobs' shards' rows (tools/lethe/sisa_rows.h).
  std::map<int, int> earliest;  // shard → earliest slice touched
  const auto touch = [&](int64_t id) {
    const sisa::Cell c = sisa::Assign(id, old.partition);
    auto it = earliest.find(c.shard);
    if (it == earliest.end() || c.slice < it->second) earliest[c.shard] = c.slice;
  };
  for (int64_t id : unique_ids) touch(id);
  // A Newton-patched shard's checkpoints were trained on the ids its patch removed:
  // retraining it from the checkpoint before the earliest slice of those ids makes it what
  // sisa train on the kept data gives, like any other deletion.
  std::vector<int> made_exact;
  for (int s = 0; s < old.partition.shards; ++s) {
    if (!old.shards[s].patch) continue;
    made_exact.push_back(s);
    for (int64_t id : old.shards[s].patch->ids) touch(id);
  }
  std::vector<int> job_shards;  // job j retrains shard job_shards[j]
  for (const auto& [s, from] : earliest) job_shards.push_back(s);

  std::string data_sha256;
  const ShardData shard_data =
      LoadEnsembleShards(old, dir, data_path, common, &data_sha256, ShardsOfThisRank(job_shards));
  const io::Dataset& data = shard_data.all;  // every id and label (and X with one process)
  Collectively([&] { data.RowsOf(ids, what); });  // every id not yet forgotten must be in the data
  ids = unique_ids;
  if (already > 0)
    Warn("sisa unlearn", std::to_string(already) + " id(s) of " + what + " were forgotten by an "
         "earlier request; nothing to do for them");
  if (ids.empty() && !old.AnyPatched()) {
    std::cout << dir << ": every id given is already forgotten; nothing changed\n";
    return 0;
  }

  // The new partition: the manifest's, less the ids. Stability (engine/sisa/partition.h)
  // makes it the partition of the kept ids, which is checked rather than assumed.
  sisa::Manifest m = old;
  m.generation = old.generation + 1;
  if (!ids.empty())
    m.forgotten.Add(ids, {"sisa", old_sha, IdsSha256(ids), static_cast<int64_t>(ids.size()), UtcNow()});
  std::vector<int64_t> kept;
  for (int64_t id : data.ids)
    if (!m.forgotten.Contains(id)) kept.push_back(id);
  const sisa::Partition p = sisa::PartitionIds(kept, m.partition);
  for (int s : made_exact) m.shards[s].patch.reset();
  for (int s = 0; s < m.partition.shards; ++s)
    for (int r = 0; r < m.partition.slices; ++r) {
      std::vector<int64_t> expect;
      for (int64_t id : old.shards[s].slices[r].ids)
        if (!m.forgotten.Contains(id)) expect.push_back(id);
      LETHE_CHECK(expect == p[s][r], "partition not stable under deletion");
    }
  RefuseEmptyShards(p, what, "nothing was changed; retrain with fewer shards to serve this "
                              "request");

  std::vector<Job> jobs;
  Collectively([&] {
    for (const auto& [s, from] : earliest) {
      Model start_model = from == 0 ? InitialModel(m, data, s)
                                    : LoadModel(dir + "/" + old.shards[s].slices[from - 1].file);
      jobs.push_back({s, from, std::move(start_model)});
    }
  });
  Progress progress(common.quiet);
  progress.Announce("lethe sisa unlearn: " + std::to_string(ids.size()) + " id(s) in " +
                    std::to_string(jobs.size()) + " shard(s)");
  const double retrain_seconds = Run(dir, m, shard_data, p, jobs, m.generation, common, progress);
  std::string new_sha;
  OnRoot([&] {
    // Split under mpirun: the retrained cells' hashes came with their jobs; every other
    // cell keeps its ids and (the recorded file) its rows, so its recorded hash.
    if (!shard_data.split) sisa::FillCellHashes(m, data, RowOfId(data));
    // The commit point: the manifest is replaced by a rename. Before it, DIR is the old
    // ensemble plus unreferenced files; after it, the new one plus unreferenced files.
    {
      io::AtomicFile file(manifest_path);
      file.Write(m.ToJson());
      CrashPointForTests("commit");
      file.Commit();
    }
    CrashPointForTests("cleanup");
    std::vector<std::string> removed = Unreferenced(dir, m);
    for (const std::string& name : removed) fs::remove(dir + "/" + name);
    SyncDirectory(dir);
    new_sha = io::Sha256File(manifest_path);
  });
  const double seconds = Since(start);
  const std::vector<int64_t> held = RowsHeldPerRank(shard_data);

  double full = 0;  // every cell's recorded training time: what retraining all would take
  for (const sisa::Shard& s : old.shards)
    for (const sisa::Checkpoint& c : s.slices) full += c.seconds;
  nlohmann::json r;
  r["format"] = "lethe-sisa-erasure/1";
  r["method"] = "sisa";
  r["exact"] = true;
  r["model"] = dir;
  r["utc"] = ids.empty() ? UtcNow() : m.forgotten.requests.back().utc;
  r["generation"] = m.generation;
  r["manifest_sha256_before"] = old_sha;
  r["manifest_sha256_after"] = new_sha;
  r["data"] = data_path;
  r["data_sha256"] = data_sha256;  // the file used (the recorded one, or it less forgotten rows)
  r["recorded_data_sha256"] = old.data_sha256;
  r["k"] = static_cast<int64_t>(ids.size());
  r["ids_sha256"] = IdsSha256(ids);
  r["already_forgotten"] = already;
  nlohmann::json retrained = nlohmann::json::array();
  std::vector<int> untouched;
  for (int s = 0; s < m.partition.shards; ++s) {
    auto it = earliest.find(s);
    if (it == earliest.end()) {
      untouched.push_back(s);
      continue;
    }
    nlohmann::json cps = nlohmann::json::array();
    double shard_seconds = 0;
    for (int k = it->second; k < m.partition.slices; ++k) {
      const sisa::Checkpoint& c = m.shards[s].slices[k];
      shard_seconds += c.seconds;
      cps.push_back({{"slice", k}, {"file", c.file}, {"sha256", c.sha256},
                     {"replaces_sha256", old.shards[s].slices[k].sha256}});
    }
    retrained.push_back({{"shard", s}, {"from_slice", it->second},
                         {"slices", m.partition.slices - it->second},
                         {"examples_before", old.shards[s].size()},
                         {"examples_after", m.shards[s].size()},
                         {"seconds", shard_seconds}, {"checkpoints", cps}});
  }
  r["retrained"] = retrained;
  r["untouched_shards"] = untouched;
  // Shards that were Newton-patched before this run and are exact again now.
  r["made_exact"] = made_exact;
  // Every constituent is exact after sisa unlearn.
  r["constituents"] = nlohmann::json::array();
  for (int s = 0; s < m.partition.shards; ++s)
    r["constituents"].push_back({{"shard", s}, {"state", "exact"}, {"file", m.ConstituentFile(s)}});
  r["retrain_seconds"] = retrain_seconds;
  r["seconds"] = seconds;
  r["full_retrain_seconds_estimate"] = full;
  r["speedup_estimate"] = retrain_seconds > 0 ? full / retrain_seconds : 0.0;
  OnRoot([&] {
    if (!report_path.empty()) io::WriteFileAtomically(report_path, r.dump(2) + "\n");
  });
  if (common.json) {
    nlohmann::json printed = r;
    // Under mpirun: the rows of X each rank held (its jobs' shards'), in rank order.
    if (Distributed()) printed["rows_held_per_rank"] = held;
    std::cout << printed.dump(2) << "\n";
  } else {
    if (ids.empty())
      std::cout << "made the Newton-patched constituents of " << dir << " exact (SISA): ";
    else
      std::cout << "unlearned " << ids.size() << " id(s) from " << dir << " (exact, SISA): ";
    std::cout << retrained.size() << " of " << m.partition.shards << " shards retrained";
    if (!made_exact.empty())
      std::cout << " (" << made_exact.size() << " of them Newton-patched before: exact now)";
    for (const auto& j : retrained)
      std::cout << (j == retrained.front() ? " (" : ", ") << "shard " << j["shard"].get<int>()
                << " from slice " << j["from_slice"].get<int>();
    std::cout << (retrained.empty() ? "" : ")") << ", " << Fixed(retrain_seconds, 3)
              << " s; a full retrain took " << Fixed(full, 3) << " s (recorded)\n";
  }
  return 0;
}

}  // namespace

int RunSisa(const std::vector<std::string>& args) {
  const std::string usage =
      "usage: lethe sisa train --spec SPEC --data TRAIN --shards S --slices R --out DIR\n"
      "       lethe sisa unlearn --model DIR [--forget FILE | --forget-ids LIST] [--report R.json]\n"
      "\nexact unlearning by sharded, isolated, sliced training (docs/unlearning.md, SISA);\n"
      "`lethe eval --model DIR` and `lethe inspect DIR` read the ensemble; `lethe sisa train\n"
      "--help` and `lethe sisa unlearn --help` list the options\n"
      "\nexample:\n"
      "  lethe sisa train --spec examples/digits/softmax.json --data examples/digits/train.npz "
      "--shards 4 --slices 2 --out sisa-digits\n";
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? std::cerr : std::cout) << usage;
    return args.empty() ? 2 : 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "train") return RunSisaTrain(rest);
  if (args[0] == "unlearn") return RunSisaUnlearn(rest);
  std::cerr << "lethe sisa: unknown subcommand " << Quote(args[0]) << " (train, unlearn)\n" << usage;
  return 2;
}

}  // namespace lethe::cli
