// lethe unlearn --model DIR --method newton: serve a deletion from a SISA ensemble now, by
// Newton-patching only the constituents whose shards hold the ids, and leave the exact
// retraining of those shards to a later `lethe sisa unlearn` (docs/unlearning.md, "SISA").
//
// Each training id lies in exactly one shard, so removing it changes only that shard's
// constituent: the patch is lethe unlearn's Newton step (engine/unlearn.h) on the
// constituent's own objective, over the shard's kept rows (in sisa train's row order), with
// the shard's forgotten rows as the forget set. Nothing else of the ensemble moves.
//
// The directory changes with sisa unlearn's protocol: the patched constituents are written
// under the next generation's names (s{S}-patch-g{G}.safetensors; checkpoints are never
// rewritten), then manifest.json is replaced by a rename (the commit), then unreferenced
// files are removed. The manifest records per shard whether its constituent is exact or
// patched, which ids each patch removed and each patch's solver summary; the patched
// shard's checkpoints stay as trained, so `lethe sisa unlearn` can retrain it from the
// checkpoint before the earliest slice of those ids.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "engine/sisa/cell_rows.h"
#include "engine/unlearn.h"
#include "io/atomic_file.h"
#include "io/sha256.h"
#include "tools/lethe/session.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/sisa_dir.h"
#include "tools/lethe/sisa_distributed.h"
#include "tools/lethe/sisa_rows.h"

namespace lethe::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct ShardPatch {
  int shard = 0;
  std::vector<int64_t> ids;  // this request's ids in the shard (ascending)
  Model model;               // the patched constituent
  UnlearnSummary summary;    // (on the rank that computed it)
  double seconds = 0;
  std::string replaces_sha256, replaces_file;
};

// What rank 0 needs of a patch computed anywhere (tools/lethe/sisa_distributed.h): the
// summary as the report and the manifest give it; θ travels as raw doubles.
struct PatchResult {
  nlohmann::json steps;     // the report's steps[]
  std::string words;        // StepsInWords
  int n_steps = 0;
  double input_grad_norm = 0, kept_grad_norm_before = 0, kept_grad_norm_after = 0,
         delta_norm = 0;
};

template <typename T>
void PatchShard(const sisa::Manifest& m, const std::string& dir, const io::Dataset& data,
                const std::unordered_map<int64_t, int64_t>& row_of_id,
                const std::vector<int64_t>& kept_order, ShardPatch& job,
                const UnlearnOptions& options, const CommonOptions& common, Progress& progress) {
  const auto start = Clock::now();
  auto backend = kernels::MakeBackend<T>(common.Backend());
  job.replaces_file = m.ConstituentFile(job.shard);
  job.replaces_sha256 = m.ConstituentSha256(job.shard);
  job.model = LoadModel(dir + "/" + job.replaces_file);
  CheckDataMatchesModel(job.model.arch, data);
  auto rows = [&](const std::vector<int64_t>& ids) {
    std::vector<int64_t> out;
    for (int64_t id : ids) out.push_back(row_of_id.at(id));
    return out;
  };
  // The objective the constituent was trained on, less the forget rows: the shard's kept
  // rows, in the order sisa train feeds them, with the manifest's reduction blocking.
  const ObjectiveOptions oo{m.objective_batch};
  Objective<T> kept(*backend, job.model.arch, UploadData(*backend, data, rows(kept_order)), oo);
  Objective<T> forget(*backend, job.model.arch, UploadData(*backend, data, rows(job.ids)), oo);
  std::vector<T> host(job.model.theta.begin(), job.model.theta.end());
  auto theta = backend->Allocate(1, job.model.arch.num_params);
  backend->Upload(host.data(), theta);
  UnlearnOptions run = options;
  run.inverse.progress = &progress;
  job.summary = lethe::Unlearn(kept, forget, theta, run, nullptr);
  backend->Download(theta, host.data());
  job.model.theta.assign(host.begin(), host.end());
  job.seconds = std::chrono::duration<double>(Clock::now() - start).count();
}

std::string StepsInWords(const UnlearnSummary& s) {
  std::string out;
  for (size_t k = 0; k < s.steps.size(); ++k)
    out += (k ? "; " : "") + ("step " + std::to_string(k + 1) + ": ") + Describe(s.steps[k].solve) +
           ", " + s.steps[k].action;
  return out;
}

}  // namespace

int RunUnlearnEnsemble(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  SolverFlags flags;
  UnlearnOptions options;
  std::string dir, data_path, report_path, method = "newton";
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&dir), "SISA ensemble directory (lethe sisa train --out)")
    ("forget", po::value<std::string>(), "ids to forget (file, one per line)")
    ("forget-ids", po::value<std::string>(), "ids to forget (comma-separated)")
    ("method", po::value(&method)->default_value("newton"), "newton (the only one for an ensemble)")
    ("steps", po::value(&options.steps)->default_value(1), "Newton steps per constituent")
    ("data", po::value(&data_path), "the training data (default: the path the manifest records): "
                                     "the recorded file, or one from which forgotten rows were "
                                     "deleted")
    ("report", po::value(&report_path), "write the erasure record (JSON) here");
  flags.Add(desc, /*allow_inexact_option=*/false);
  common.Add(desc);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe unlearn --model DIR --method newton (--forget FILE | --forget-ids LIST) "
             "[--report R.json]",
             "lethe unlearn --model sisa-digits --method newton --forget-ids 3,17 --report "
             "patch.json   (after lethe sisa --help's example; then lethe sisa unlearn --model "
             "sisa-digits makes the patched constituents exact)"))
    return 0;
  Require(vm, "model");
  if (method != "newton")
    Fail("--method ", method, ": an ensemble is patched with newton only (or retrained "
         "exactly with lethe sisa unlearn)");
  const auto forget = ForgetIds(vm);
  if (!forget) Fail("--forget FILE or --forget-ids LIST is required");
  // Under mpirun every rank reads DIR, every id and label of the data file and the rows of
  // the shards it patches (tools/lethe/sisa_rows.h); rank 0 alone locks, writes and commits
  // (docs/distributed.md, "SISA ensembles").
  OnRoot([&] {
    if (!report_path.empty()) {
      io::CheckOutputIsNotAnInput(report_path, {dir + "/manifest.json"});
      io::CheckOutputCanBeWritten(report_path);
    }
  });
  common.Backend();
  OnRoot([&] { LockEnsemble(dir); });
  const auto start = Clock::now();
  const std::string manifest_path = dir + "/manifest.json";
  const sisa::Manifest old = Collectively([&] { return ReadEnsemble(dir); });
  const std::string old_sha = Collectively([&] { return io::Sha256File(manifest_path); });
  OnRoot([&] {
    for (const std::string& name : Unreferenced(dir, old))
      std::filesystem::remove(dir + "/" + name);
  });
  const std::string what = vm.count("forget") ? vm["forget"].as<std::string>() : "--forget-ids";
  std::vector<int64_t> ids;
  int64_t already = 0;
  for (int64_t id : *forget) {
    if (old.forgotten.Contains(id)) ++already;  // its row may have been deleted from the data
    else ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  // The shards to patch follow from the ids alone (patch j: the j-th in shard order), so
  // under mpirun each rank reads only its patches' shards' rows.
  std::vector<int> job_shards;
  for (int64_t id : ids) job_shards.push_back(sisa::Assign(id, old.partition).shard);
  std::sort(job_shards.begin(), job_shards.end());
  job_shards.erase(std::unique(job_shards.begin(), job_shards.end()), job_shards.end());
  std::string data_sha256;
  const ShardData shard_data =
      LoadEnsembleShards(old, dir, data_path, common, &data_sha256, ShardsOfThisRank(job_shards));
  const io::Dataset& data = shard_data.rows();  // the rows this rank patches on
  const auto row_of_id = RowOfId(data);

  if (ids.empty()) Fail(what, ": every id was already forgotten by ", dir, "; nothing to do");
  Collectively([&] { shard_data.all.RowsOf(ids, what); });  // every id must be in the data
  Warnings warnings("unlearn");
  if (already > 0)
    warnings.Add(std::to_string(already) + " id(s) of " + what + " were already forgotten by " +
                 dir + ": skipped");

  // The ids by shard; each shard's kept rows are its cells' ids less them.
  std::map<int, std::vector<int64_t>> by_shard;
  for (int64_t id : ids) by_shard[sisa::Assign(id, old.partition).shard].push_back(id);
  sisa::Manifest m = old;
  m.generation = old.generation + 1;
  std::vector<ShardPatch> jobs;
  std::map<int, std::vector<int64_t>> kept_order;
  for (auto& [s, shard_ids] : by_shard) {
    for (sisa::Checkpoint& c : m.shards[s].slices) {
      std::vector<int64_t> left;
      std::set_difference(c.ids.begin(), c.ids.end(), shard_ids.begin(), shard_ids.end(),
                          std::back_inserter(left));
      c.ids = std::move(left);
      kept_order[s].insert(kept_order[s].end(), c.ids.begin(), c.ids.end());
    }
    if (kept_order[s].empty())
      Fail(what, ": shard ", s, " of ", m.partition.shards, " would have no example (nothing "
           "was changed; retrain with fewer shards to serve this request)");
    ShardPatch job;
    job.shard = s;
    job.ids = shard_ids;
    jobs.push_back(std::move(job));
  }
  if (flags.solver == "auto") flags.solver = "cg";
  options.method = UnlearnMethod::kNewton;
  // The solve runs in the ensemble's dtype (no mixed-precision copy of each shard).
  options.solve_precision = SolvePrecision::kF64;
  options.adaptive_cg_tolerance = vm["cg-tolerance"].defaulted();

  // Every patch is computed before anything is written: a failed solve leaves DIR as it was.
  // Under mpirun patch j is computed on rank j mod P by this code, and rank 0 receives each
  // patched θ and its summary in shard order (tools/lethe/sisa_distributed.h): the files
  // rank 0 writes are one process's.
  Progress progress(common.quiet);
  progress.Announce("lethe unlearn: Newton-patching " + std::to_string(jobs.size()) + " of " +
                    std::to_string(m.partition.shards) + " constituents of " + dir);
  std::vector<PatchResult> results(jobs.size());
  auto work = [&](int j) {
    ShardPatch& job = jobs[j];
    const Model probe = LoadModel(dir + "/" + m.ConstituentFile(job.shard));
    UnlearnOptions run = options;
    run.inverse = flags.Resolve(probe.arch.num_params);
    run.Validate();
    if (m.dtype == "f32")
      PatchShard<float>(m, dir, data, row_of_id, kept_order[job.shard], job, run, common, progress);
    else
      PatchShard<double>(m, dir, data, row_of_id, kept_order[job.shard], job, run, common, progress);
    if (!job.summary.ok)
      Fail("shard ", job.shard, ": unlearning failed, nothing written: ", job.summary.message);
    const UnlearnSummary& s = job.summary;
    nlohmann::json steps = nlohmann::json::array();
    for (const UnlearnStep& st : s.steps)
      steps.push_back({{"solve", ToJson(st.solve)}, {"damping", st.damping},
                       {"step_length", st.step_length}, {"action", st.action},
                       {"kept_grad_norm_before", st.kept_grad_norm_before},
                       {"kept_grad_norm_after", st.kept_grad_norm_after}});
    std::vector<double> values{s.input_grad_norm, s.kept_grad_norm_before,
                               s.kept_grad_norm_after, s.delta_norm};
    values.insert(values.end(), job.model.theta.begin(), job.model.theta.end());
    nlohmann::json header = {{"steps", steps}, {"words", StepsInWords(s)},
                             {"n_steps", static_cast<int>(s.steps.size())},
                             {"seconds", job.seconds}, {"replaces", job.replaces_file},
                             {"replaces_sha256", job.replaces_sha256}};
    // Split under mpirun: rank 0 has not the shard's rows, so the cells (less the ids) are
    // hashed here.
    if (shard_data.split) {
      header["rows_sha256"] = nlohmann::json::array();
      for (const sisa::Checkpoint& c : m.shards[job.shard].slices)
        header["rows_sha256"].push_back(sisa::CellRowsSha256(data, row_of_id, c.ids));
    }
    return Pack(header, values);
  };
  ForEachConstituent(static_cast<int>(jobs.size()), work, [&](int j, const std::string& bytes) {
    ShardPatch& job = jobs[j];
    PatchResult& res = results[j];
    nlohmann::json h;
    std::vector<double> values;
    Unpack(bytes, h, values);
    res.steps = h["steps"];
    res.words = h["words"].get<std::string>();
    res.n_steps = h["n_steps"].get<int>();
    res.input_grad_norm = values[0];
    res.kept_grad_norm_before = values[1];
    res.kept_grad_norm_after = values[2];
    res.delta_norm = values[3];
    job.seconds = h["seconds"].get<double>();
    job.replaces_file = h["replaces"].get<std::string>();
    job.replaces_sha256 = h["replaces_sha256"].get<std::string>();
    if (h.contains("rows_sha256"))
      for (size_t r = 0; r < h["rows_sha256"].size(); ++r)
        m.shards[job.shard].slices[r].rows_sha256 = h["rows_sha256"][r].get<std::string>();
    // The constituent file it replaces, with the patched θ (a patch changes θ only).
    job.model = LoadModel(dir + "/" + job.replaces_file);
    LETHE_CHECK(values.size() == 4 + job.model.theta.size());
    job.model.theta.assign(values.begin() + 4, values.end());
    if (!(res.input_grad_norm <= kStationarityTolerance))
      warnings.Add("shard " + std::to_string(job.shard) + ": its constituent is not at a "
                   "stationary point of its shard's objective (‖∇L‖ = " +
                   Sci(res.input_grad_norm) + "), so the patch also finishes its "
                   "training (an adam ensemble); lethe sisa unlearn retrains it exactly");
    const std::string off = PatchOffOptimumWarning(res.kept_grad_norm_after, res.n_steps, "newton");
    if (!off.empty()) warnings.Add("shard " + std::to_string(job.shard) + ": " + off);
  });
  if (Comm().rank() != 0) return 0;  // rank 0 alone writes, commits and reports

  // Write the patched constituents under the next generation's names, then commit.
  const std::string utc = UtcNow();
  m.forgotten.Add(ids, {"newton", old_sha, IdsSha256(ids), static_cast<int64_t>(ids.size()), utc});
  bool first = true;
  for (size_t j = 0; j < jobs.size(); ++j) {
    ShardPatch& job = jobs[j];
    const PatchResult& s = results[j];
    // The constituent file carries what it has forgotten, like any patched model.
    job.model.forgotten.Add(job.ids, {"newton", job.replaces_sha256, IdsSha256(job.ids),
                                      static_cast<int64_t>(job.ids.size()), utc});
    job.model.dp.reset();
    sisa::Shard& shard = m.shards[job.shard];
    if (!shard.patch) shard.patch = sisa::Patch{};
    sisa::Patch& p = *shard.patch;
    p.generation = m.generation;
    p.file = sisa::PatchName(job.shard, m.generation);
    SaveModel(dir + "/" + p.file, job.model);
    p.sha256 = io::Sha256File(dir + "/" + p.file);
    std::vector<int64_t> all = p.ids;
    all.insert(all.end(), job.ids.begin(), job.ids.end());
    std::sort(all.begin(), all.end());
    p.ids = std::move(all);
    p.requests.push_back({m.generation, static_cast<int64_t>(job.ids.size()), IdsSha256(job.ids),
                          flags.solver, s.n_steps, s.kept_grad_norm_before,
                          s.kept_grad_norm_after, s.delta_norm, job.seconds, s.words});
    if (first) CrashPointForTests("checkpoint");
    first = false;
  }
  // Split under mpirun: the patched shards' cells came with their results, every other
  // cell is unchanged (its ids, and the recorded file's rows).
  if (!shard_data.split) sisa::FillCellHashes(m, data, row_of_id);
  {
    io::AtomicFile file(manifest_path);
    file.Write(m.ToJson());
    CrashPointForTests("commit");
    file.Commit();
  }
  CrashPointForTests("cleanup");
  for (const std::string& name : Unreferenced(dir, m)) std::filesystem::remove(dir + "/" + name);
  SyncDirectory(dir);
  const std::string new_sha = io::Sha256File(manifest_path);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  nlohmann::json r;
  r["format"] = "lethe-sisa-erasure/1";
  r["method"] = "newton";
  r["exact"] = false;  // some constituents are patched (approximate): see "constituents"
  r["model"] = dir;
  r["utc"] = utc;
  r["generation"] = m.generation;
  r["manifest_sha256_before"] = old_sha;
  r["manifest_sha256_after"] = new_sha;
  r["data"] = data_path;
  r["data_sha256"] = data_sha256;
  r["recorded_data_sha256"] = old.data_sha256;
  r["k"] = static_cast<int64_t>(ids.size());
  r["ids_sha256"] = IdsSha256(ids);
  r["already_forgotten"] = already;
  r["patched"] = nlohmann::json::array();
  for (size_t j = 0; j < jobs.size(); ++j) {
    const ShardPatch& job = jobs[j];
    const PatchResult& s = results[j];
    const nlohmann::json& steps = s.steps;
    const sisa::Patch& p = *m.shards[job.shard].patch;
    r["patched"].push_back({{"shard", job.shard}, {"k", static_cast<int64_t>(job.ids.size())},
                            {"examples_before", old.shards[job.shard].size()},
                            {"examples_after", m.shards[job.shard].size()},
                            {"file", p.file}, {"sha256", p.sha256},
                            {"replaces", job.replaces_file},
                            {"replaces_sha256", job.replaces_sha256},
                            {"solver", flags.solver}, {"steps", steps},
                            {"input_grad_norm", s.input_grad_norm},
                            {"kept_grad_norm_before", s.kept_grad_norm_before},
                            {"kept_grad_norm_after", s.kept_grad_norm_after},
                            {"delta_norm", s.delta_norm}, {"seconds", job.seconds}});
  }
  r["constituents"] = nlohmann::json::array();
  std::vector<int> exact, patched;
  for (int s = 0; s < m.partition.shards; ++s) {
    const auto& p = m.shards[s].patch;
    (p ? patched : exact).push_back(s);
    nlohmann::json c{{"shard", s}, {"state", p ? "patched" : "exact"}, {"file", m.ConstituentFile(s)}};
    if (p) c["patched_ids"] = static_cast<int64_t>(p->ids.size());
    r["constituents"].push_back(c);
  }
  r["exact_shards"] = exact;
  r["patched_shards"] = patched;
  r["warnings"] = warnings.all();
  r["seconds"] = seconds;
  if (!report_path.empty()) io::WriteFileAtomically(report_path, r.dump(2) + "\n");
  if (common.json) {
    std::cout << r.dump(2) << "\n";
    return 0;
  }
  for (size_t j = 0; j < jobs.size(); ++j)
    std::cout << "shard " << jobs[j].shard << ": " << jobs[j].ids.size() << " id(s), "
              << results[j].words << "; ‖∇L₋ₛ‖ " << Sci(results[j].kept_grad_norm_before)
              << " → " << Sci(results[j].kept_grad_norm_after) << ", ‖Δθ‖ "
              << Sci(results[j].delta_norm) << ", " << Fixed(jobs[j].seconds, 3) << " s\n";
  auto list = [](const std::vector<int>& v) {
    std::string s;
    for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
    return s.empty() ? std::string("none") : s;
  };
  std::cout << "patched " << ids.size() << " id(s) out of " << dir << " (Newton, approximate): "
            << jobs.size() << " of " << m.partition.shards << " constituents patched; exact: "
            << list(exact) << "; patched: " << list(patched) << "; `lethe sisa unlearn --model "
            << dir << "` retrains the patched ones exactly\n";
  if (!report_path.empty()) std::cout << "erasure record: " << report_path << "\n";
  return 0;
}

}  // namespace lethe::cli
