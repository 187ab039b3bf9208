// lethe influence --model DIR: influence of each training example on a SISA ensemble's test
// predictions (docs/influence.md, "Ensembles").
//
// Training example i lies in exactly one shard c, so removing it moves only constituent c:
// θ_c changes by Δθ_c ≈ (1/n_c) H_c⁻¹ g_i (n_c, H_c: the shard's size and the Hessian of its
// objective), and the ensemble's test loss L_E changes by ∇_{θ_c} L_E · Δθ_c. With
//   mean: L_E = −log p̄_y, p̄ = (1/S) Σ_c p_c, so
//         ∇_{θ_c} L_E = −∇p_{c,y} / (S p̄_y) = (p_{c,y} / (S p̄_y)) ∇_{θ_c} ℓ_c,
//         ℓ_c = −log p_{c,y} the constituent's own test loss;
//   vote: the vote is piecewise constant in θ (zero gradient almost everywhere), so the
//         score is defined on the mean of the constituents' test losses (1/S) Σ_c ℓ_c,
//         whose gradient is (1/S) ∇_{θ_c} ℓ_c.
// Either way
//   score_E(test, i) = w_c(test) · score_c(test, i),  score_c = (1/n_c) g_testᵀ H_c⁻¹ g_i,
//   w_c = p_{c,y}/(S p̄_y) (mean; Σ_c w_c = 1) or 1/S (vote),
// score_c being lethe influence's own score of constituent c on its shard's rows: positive =
// removing i would raise the ensemble's test loss (it helped), as for a single model.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>

#include "common/error.h"
#include "engine/influence.h"
#include "engine/sisa/aggregate.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/npy.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/forgotten_data.h"
#include "tools/lethe/held_scores.h"
#include "tools/lethe/session.h"
#include "tools/lethe/sisa_dir.h"
#include "tools/lethe/sisa_distributed.h"
#include "tools/lethe/sisa_rows.h"

namespace lethe::cli {
namespace {

struct ConstituentResult {
  int shard = 0;
  int64_t n = 0;
  double grad_norm = 0;
  std::string describe;  // Describe(the solve's summary)
  nlohmann::json solver;  // ToJson(the solve's summary)
};

template <typename T>
int Run(const std::string& dir, const sisa::Manifest& m, const ShardData& train_data,
        const io::Dataset& test, const std::vector<int64_t>& test_rows, const SolverFlags& flags,
        const CommonOptions& common, const std::string& train_path, const std::string& out,
        int64_t top_k) {
  Warnings warnings("influence");
  Progress progress(common.quiet);
  // `train`: every kept row's id (what rank 0 places the scores by); `mine`: the rows this
  // rank computes on (under mpirun its constituents' shards' only: sisa_rows.h).
  const io::Dataset& train = train_data.all;
  const io::Dataset& mine = train_data.rows();
  const auto row_of_id = RowOfId(train);
  const auto my_row_of_id = RowOfId(mine);
  const std::vector<int64_t> held = RowsHeldPerRank(train_data);
  const int S = m.partition.shards;
  const int64_t mt = static_cast<int64_t>(test_rows.size()), n = train.n;
  // The shard's kept rows of `data`, in sisa train's order.
  auto shard_rows = [&](int s, const std::unordered_map<int64_t, int64_t>& of_id) {
    std::vector<int64_t> rows;
    for (const sisa::Checkpoint& c : m.shards[s].slices)
      for (int64_t id : c.ids) rows.push_back(of_id.at(id));
    return rows;
  };
  auto backend = kernels::MakeBackend<T>(common.Backend());
  // Constituent s, on rank s mod P under mpirun (tools/lethe/sisa_distributed.h): the
  // probability p_{s,y} of each test label (for the weights), ‖∇L_s‖, and its own influence
  // on its shard's kept rows. The scores (mt × n_s) stay in own_scores[s] on the rank that
  // computed them (docs/distributed.md: no rank holds the m × n table); the rest goes to rank
  // 0 in shard order as raw doubles [grad_norm, p_{s,y} (mt)], and rank 0 sends every rank
  // the p_{s,y} the weights need.
  std::vector<std::vector<double>> own_scores(S);
  auto work = [&](int s) {
    const Model model = LoadModel(dir + "/" + m.ConstituentFile(s));
    CheckDataMatchesModel(model.arch, mine);
    CheckDataMatchesModel(model.arch, test);
    const LossKind loss = model.arch.spec.loss;
    const int64_t width = model.arch.output_dim, k = sisa::NumLabels(loss, width);
    std::vector<double> values(1 + mt);
    {
      Objective<T> tests(*backend, model.arch, UploadData(*backend, test, test_rows),
                         ObjectiveOptions{common.batch_size});
      std::vector<T> host(model.theta.begin(), model.theta.end());
      auto theta = backend->Allocate(1, model.arch.num_params);
      backend->Upload(host.data(), theta);
      auto f = backend->Allocate(mt, width);
      tests.Outputs(theta, f);
      std::vector<T> fh(mt * width);
      backend->Download(f, fh.data());
      std::vector<double> row(width), p(k);
      for (int64_t j = 0; j < mt; ++j) {
        std::copy(fh.begin() + j * width, fh.begin() + (j + 1) * width, row.begin());
        sisa::Probabilities(loss, row.data(), width, p.data());
        values[1 + j] = p[static_cast<int64_t>(test.y[test_rows[j] * test.target_width])];
      }
    }
    const std::vector<int64_t> rows = shard_rows(s, my_row_of_id);
    Session<T> session(model, mine, common, rows);
    Objective<T> tests(*session.backend, model.arch, UploadData(*session.backend, test, test_rows),
                       ObjectiveOptions{common.batch_size});
    InverseHvpOptions options = flags.Resolve(model.arch.num_params);
    options.progress = &progress;
    progress.Announce("lethe influence: constituent " + std::to_string(s) + " of " +
                      std::to_string(S) + ", " + std::to_string(rows.size()) + " rows, solver " +
                      Name(options.solver));
    nlohmann::json header;
    header["warnings"] = nlohmann::json::array();
    {
      // ‖∇L_c(θ_c)‖ on the shard's rows: the scores are first-order effects at a minimiser.
      kernels::Matrix<T> grad = session.backend->Allocate(1, session.train->num_params());
      session.train->ValueAndGradient(session.theta, grad);
      values[0] = static_cast<double>(kernels::Norm(*session.backend, grad));
      if (!(values[0] <= kStationarityTolerance))
        header["warnings"].push_back(
            "constituent " + std::to_string(s) + " (" + m.ConstituentFile(s) + ") is not "
            "at a stationary point of its shard's objective on " + train_path +
            " (‖∇L‖ = " + Sci(values[0]) + " > " + Sci(kStationarityTolerance, 0) +
            "): its scores are first-order effects at a minimiser, so they describe a "
            "nearby optimum" +
            (m.shards[s].patch ? "; it is Newton-patched: `lethe sisa unlearn --model " + dir +
                                     "` retrains it exactly"
                               : std::string()));
    }
    InverseHvp<T> inverse(*session.train, session.theta, options);
    const InfluenceResult r = InfluenceOnTests(*session.train, tests, session.theta, inverse);
    header["exact"] = true;
    if (!r.summary.converged()) {
      const std::string what = "constituent " + std::to_string(s) + ": the inverse-Hessian solve "
                               "did not converge (" + Describe(r.summary) + ")";
      if (r.summary.termination == Termination::kNegativeCurvature ||
          r.summary.termination == Termination::kDiverged || !flags.allow_inexact)
        Fail(what, "; nothing written", flags.allow_inexact ? "" : " (--allow-inexact writes the "
             "scores, marked inexact, unless the curvature is negative or the solve diverged)");
      header["warnings"].push_back(what + ": writing the scores anyway (--allow-inexact); they "
                                   "are inexact");
      header["exact"] = false;
    }
    LETHE_CHECK(r.m == mt && r.n == static_cast<int64_t>(rows.size()));
    header["n"] = r.n;
    header["describe"] = Describe(r.summary);
    header["solver"] = ToJson(r.summary);
    own_scores[s].assign(r.scores.begin(), r.scores.end());
    return Pack(header, values);
  };
  std::vector<double> p_label(static_cast<size_t>(S * mt));  // p_{s,y} at [s · mt + j]
  std::vector<ConstituentResult> results;
  bool exact = true;
  ForEachConstituent(S, work, [&](int s, const std::string& bytes) {
    nlohmann::json header;
    std::vector<double> values;
    Unpack(bytes, header, values);
    ConstituentResult cr;
    cr.shard = s;
    cr.n = header["n"].get<int64_t>();
    cr.grad_norm = values[0];
    cr.describe = header["describe"].get<std::string>();
    cr.solver = header["solver"];
    for (const auto& w : header["warnings"]) warnings.Add(w.get<std::string>());
    exact = exact && header["exact"].get<bool>();
    LETHE_CHECK(static_cast<int64_t>(values.size()) == 1 + mt);
    std::copy(values.begin() + 1, values.end(), p_label.begin() + s * mt);
    results.push_back(cr);
  });
  if (Distributed()) {
    std::string bytes(reinterpret_cast<const char*>(p_label.data()), p_label.size() * 8);
    Comm().Broadcast(&bytes, 0);
    std::memcpy(p_label.data(), bytes.data(), p_label.size() * 8);
  }
  // w[c][j]: the aggregation's weight of constituent c for test example j (above); every
  // rank computes the same bits from the same p_{s,y}.
  std::vector<std::vector<double>> w(S, std::vector<double>(mt, 1.0 / S));
  if (m.aggregate == sisa::Aggregate::kMean)
    for (int64_t j = 0; j < mt; ++j) {
      double mean = 0;
      for (int s = 0; s < S; ++s) mean += p_label[s * mt + j] / S;
      for (int s = 0; s < S; ++s) w[s][j] = p_label[s * mt + j] / (S * mean);
    }
  // The weighted scores, column i of the table being train's row i.
  HeldScores scores(mt, n);
  for (int s = 0; s < S; ++s) {
    if (own_scores[s].empty()) continue;  // computed on another rank
    const std::vector<int64_t> rows = shard_rows(s, row_of_id);
    const int64_t ns = static_cast<int64_t>(rows.size());
    LETHE_CHECK(static_cast<int64_t>(own_scores[s].size()) == mt * ns);
    std::vector<double>& sc = own_scores[s];
    for (int64_t j = 0; j < mt; ++j)
      for (int64_t i = 0; i < ns; ++i) sc[j * ns + i] = w[s][j] * sc[j * ns + i];
    for (int64_t i = 0; i < ns; ++i) scores.Add(rows[i], sc.data() + i, ns);
    std::vector<double>().swap(sc);
  }
  const std::vector<int64_t> scores_held = Comm().AllgatherInt64(scores.held());

  // The file, written by rank 0: the table by blocks of columns (.npy), or a CSV — a test's
  // K largest |score| merged from every rank's K, or every score, read back test by test from
  // a scratch copy of the table.
  const bool root = Comm().rank() == 0;
  const bool npy = out.size() >= 4 && out.compare(out.size() - 4, 4, ".npy") == 0;
  if (npy) {
    std::unique_ptr<ScoresNpy> file;
    OnRoot([&] { file = std::make_unique<ScoresNpy>(out, mt, n, false); });
    scores.WriteTo(file.get());
    OnRoot([&] { file->Commit(); });
  } else {
    std::unique_ptr<ScoresNpy> scratch;
    if (top_k <= 0) {
      OnRoot([&] { scratch = std::make_unique<ScoresNpy>(out, mt, n, true); });
      scores.WriteTo(scratch.get());
    }
    std::vector<std::vector<std::pair<int64_t, double>>> best(top_k > 0 ? mt : 0);
    for (int64_t j = 0; j < static_cast<int64_t>(best.size()); ++j)
      best[j] = scores.Best(j, top_k, true, true);
    OnRoot([&] {
      io::AtomicFile file(out);
      file.Write("test_id,train_id,score\n");
      std::vector<double> row(top_k > 0 ? 0 : n);
      for (int64_t j = 0; j < mt; ++j) {
        const std::string test_id = std::to_string(test.ids[test_rows[j]]) + ",";
        if (top_k > 0) {
          for (const auto& [i, score] : best[j])
            file.Write(test_id + std::to_string(train.ids[i]) + "," + io::FormatDouble(score) +
                       "\n");
          continue;
        }
        scratch->ReadRow(j, row.data());
        std::string lines;
        for (int64_t i = 0; i < n; ++i)
          lines += test_id + std::to_string(train.ids[i]) + "," + io::FormatDouble(row[i]) + "\n";
        file.Write(lines);
      }
      file.Commit();
    });
  }
  // The table's first 10 tests: their 3 most helpful and most harmful rows.
  const int64_t shown = common.json ? 0 : std::min<int64_t>(mt, 10);
  std::vector<std::vector<std::pair<int64_t, double>>> helpful(shown), harmful(shown);
  for (int64_t j = 0; j < shown; ++j) {
    helpful[j] = scores.Best(j, 3, true, false);
    harmful[j] = scores.Best(j, 3, false, false);
  }
  if (!root) return 0;  // rank 0 prints (docs/distributed.md)
  const char* weighting = m.aggregate == sisa::Aggregate::kMean
                              ? "p_c,y / (S p̄_y): the ensemble's log loss −log p̄_y"
                              : "1/S: the mean of the constituents' test losses (a vote has no "
                                "gradient)";
  if (common.json) {
    nlohmann::json j;
    j["out"] = out;
    j["m"] = mt;
    j["n"] = n;
    j["ensemble"] = {{"shards", S}, {"aggregate", sisa::Name(m.aggregate)}, {"weight", weighting}};
    j["exact"] = exact;
    j["constituents"] = nlohmann::json::array();
    for (const ConstituentResult& c : results)
      j["constituents"].push_back({{"shard", c.shard}, {"n", c.n}, {"grad_norm", c.grad_norm},
                                   {"solver", c.solver}});
    j["forgotten_excluded"] = static_cast<int64_t>(m.forgotten.ids.size());
    // Under mpirun: the training rows each rank held (its constituents' shards'), and the
    // scores (m per row of its shards: no rank holds the whole table).
    if (Distributed()) {
      j["rows_held_per_rank"] = held;
      j["scores_held_per_rank"] = scores_held;
    }
    j["warnings"] = warnings.all();
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  for (const ConstituentResult& c : results)
    std::cout << "constituent " << c.shard << " (" << c.n << " rows): " << c.describe
              << "; ‖∇L‖ " << Sci(c.grad_norm) << "\n";
  std::cout << "ensemble score = constituent score × " << weighting << "\n";
  for (int64_t j = 0; j < shown; ++j) {
    std::cout << "test id " << test.ids[test_rows[j]] << ": most helpful";
    for (const auto& [i, score] : helpful[j])
      std::cout << " " << train.ids[i] << " (" << Sci(score) << ")";
    std::cout << "; most harmful";
    for (const auto& [i, score] : harmful[j])
      std::cout << " " << train.ids[i] << " (" << Sci(score) << ")";
    std::cout << "\n";
  }
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace

int InfluenceEnsemble(const std::string& dir, const std::string& train_path,
                      const std::string& test_path, const std::vector<int64_t>& test_ids,
                      const SolverFlags& flags, const CommonOptions& common,
                      const std::string& out, int64_t top_k) {
  // Under mpirun every rank reads DIR, the test file, and of the training file every id and
  // label and the rows of its constituents' shards (sisa_rows.h; the whole file when it is
  // not the recorded one); the constituents are spread over the ranks (Run, above).
  const sisa::Manifest m = Collectively([&] { return ReadEnsemble(dir); });
  std::string path = train_path;
  // The training data: the recorded file or it less forgotten rows (cell hashes), then
  // without the forgotten ids.
  std::vector<int> all_shards;  // constituent s is job s
  for (int s = 0; s < m.partition.shards; ++s) all_shards.push_back(s);
  ShardData train =
      LoadEnsembleShards(m, dir, path, common, nullptr, ShardsOfThisRank(all_shards));
  Collectively([&] { ExcludeForgottenShards(m.forgotten, train, "influence", dir); });
  const io::Dataset test = Collectively([&] { return io::LoadDataset(test_path, common.Data()); });
  std::vector<int64_t> rows;
  if (!test_ids.empty()) {
    rows = test.RowsOf(test_ids, "--test-ids");
  } else {
    rows.resize(test.n);
    std::iota(rows.begin(), rows.end(), 0);
  }
  return common.F32() ? Run<float>(dir, m, train, test, rows, flags, common, train_path, out, top_k)
                      : Run<double>(dir, m, train, test, rows, flags, common, train_path, out, top_k);
}

}  // namespace lethe::cli
