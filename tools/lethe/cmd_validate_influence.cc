// lethe validate-influence: influence scores against their ground truth, retraining
// (docs/influence.md, "Checking the scores against retraining").
//
// lethe's score(test, i) = (1/n) g_testᵀ (C + λI)⁻¹ gᵢ is the first-order prediction of
// the change of the test loss, l_test(θ₋ᵢ) − l_test(θ), when example i is removed and the
// model retrained (positive: removing it raises the loss). For a set S removed together the
// same first-order expansion (up-weighting each i ∈ S by ε = −1/n) predicts
//     Δθ ≈ (1/n) H⁻¹ Σ_{i∈S} gᵢ,   Δl_test ≈ Σ_{i∈S} score(test, i),
// the sum of the scores, neglecting (a) second-order terms in |S|/n and (b) that retraining
// minimises (1/(n−|S|)) Σ_{j∉S} lⱼ + (l2/2)‖θ‖², whose data term is rescaled by n/(n−|S|) relative
// to the perturbed one: to first order that adds (|S|/(n−|S|)) g_testᵀ H⁻¹ (l2 θ) and multiplies
// the rest by n/(n−|S|), the same for every set of the same size, so neither changes a
// correlation over examples (LOO: |S| = 1) or over subsets of one fraction.
//
// Two experiments, both warm-started from θ and trained to the `lethe train` tolerance:
// - leave-one-out (Koh & Liang 2017, Fig. 2): for each test example the K training examples
//   of largest |score| and K random ones (the same K for every test example), each removed
//   alone; Pearson and Spearman of predicted (score) against actual change;
// - the linear datamodeling score (Park et al. 2023): retrain on random subsets S_k holding a
//   fraction f of the data; for each test example Spearman of the predicted change (the sum
//   of the scores of the examples each subset leaves out) against the actual test loss of
//   the subset's model, then the mean over test examples.
// "Actual" changes are measured from the model retrained on all n examples by the same
// optimiser from θ (θ itself when θ already meets the tolerance), so that both ends of every
// difference are minimisers to the same tolerance.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <unordered_set>

#include "engine/influence.h"
#include "engine/stats/correlation.h"
#include "engine/trainer.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/forgotten_data.h"
#include "tools/lethe/scatter_png.h"
#include "tools/lethe/session.h"

namespace lethe::cli {
namespace {

struct Settings {
  std::string model_path, train_path, test_path, out, plot;
  int64_t remove = 50, subsets = 100;
  double fraction = 0.5;
  uint64_t seed = 0;
  TrainOptions retrain;
};

// Seeded draws that are the same on every platform: std::mt19937_64's sequence is fixed by
// the C++ standard, std::uniform_int_distribution's algorithm is not, so the bounded draw is
// our own (rejection of the top partial block: unbiased).
uint64_t Below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  // max − max % bound is a multiple of bound: draws in [0, limit) are uniform modulo bound.
  const uint64_t limit = max - max % bound;
  uint64_t r;
  do r = rng();
  while (r >= limit);
  return r % bound;
}

// k distinct indices of 0 … n−1, uniformly: the first k steps of a Fisher–Yates shuffle.
std::vector<int64_t> Sample(int64_t n, int64_t k, std::mt19937_64& rng) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  for (int64_t i = 0; i < k; ++i)
    std::swap(v[i], v[i + static_cast<int64_t>(Below(rng, static_cast<uint64_t>(n - i)))]);
  v.resize(k);
  return v;
}

// The k indices of largest |v|, largest first (ties: lower index first).
std::vector<int64_t> LargestMagnitude(const double* v, int64_t n, int64_t k) {
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min(k, n);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    const double ma = std::abs(v[a]), mb = std::abs(v[b]);
    return ma != mb ? ma > mb : a < b;
  });
  idx.resize(k);
  return idx;
}

// Retrains warm-started from θ on chosen rows and returns the test examples' losses there.
template <typename T>
class Retrainer {
 public:
  Retrainer(Session<T>& session, const Model& model, const io::Dataset& train,
            Objective<T>& tests, const TrainOptions& options, const CommonOptions& common)
      : session_(session), model_(model), train_(train), tests_(tests), options_(options),
        common_(common) {}

  std::vector<double> LossesAfterTraining(const std::vector<int64_t>& rows) {
    Objective<T> objective(*session_.backend, model_.arch,
                           UploadData(*session_.backend, train_, rows),
                           ObjectiveOptions{common_.batch_size});
    kernels::Matrix<T> theta = session_.backend->Allocate(1, model_.arch.num_params);
    session_.backend->Copy(session_.theta, theta);
    const TrainSummary s = lethe::Train(objective, theta, options_);
    ++count;
    seconds += s.seconds;
    iterations += s.iterations;
    if (!s.converged) ++unconverged;
    worst_grad_norm = std::max(worst_grad_norm, s.grad_norm);
    last_iterations = s.iterations;
    kernels::Matrix<T> losses = session_.backend->Allocate(tests_.num_examples(), 1);
    tests_.PerExampleLosses(theta, losses);
    return session_.Download(losses);
  }

  int64_t count = 0, iterations = 0, unconverged = 0, last_iterations = 0;
  double seconds = 0, worst_grad_norm = 0;

 private:
  Session<T>& session_;
  const Model& model_;
  const io::Dataset& train_;
  Objective<T>& tests_;
  const TrainOptions& options_;
  const CommonOptions& common_;
};

std::vector<int64_t> AllBut(int64_t n, const std::unordered_set<int64_t>& left_out) {
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i)
    if (!left_out.count(i)) rows.push_back(i);
  return rows;
}

struct Correlations {
  double pearson = NAN, spearman = NAN;
  int64_t points = 0;
};
Correlations Correlate(const std::vector<double>& predicted, const std::vector<double>& actual) {
  return {stats::Pearson(predicted, actual), stats::Spearman(predicted, actual),
          static_cast<int64_t>(predicted.size())};
}
nlohmann::json CorrelationsJson(const Correlations& c) {
  // NaN (undefined: fewer than two points or no variance) is written as null.
  return {{"pearson", c.pearson}, {"spearman", c.spearman}, {"points", c.points}};
}
double MeanOf(const std::vector<double>& v) {  // over the defined (non-NaN) values
  double sum = 0;
  int64_t count = 0;
  for (double x : v)
    if (std::isfinite(x)) sum += x, ++count;
  return count ? sum / count : NAN;
}
std::string Num(double v) { return std::isfinite(v) ? Fixed(v, 4) : std::string("undefined"); }

template <typename T>
int Validate(const Model& model, const io::Dataset& train, const io::Dataset& test,
             const std::vector<int64_t>& test_rows, const SolverFlags& flags,
             const CommonOptions& common, const Settings& s) {
  Warnings warnings("validate-influence");
  Progress progress(common.quiet);
  Session<T> session(model, train, common);
  const int64_t n = train.n, m = static_cast<int64_t>(test_rows.size());
  Objective<T> tests(*session.backend, model.arch, UploadData(*session.backend, test, test_rows),
                     ObjectiveOptions{common.batch_size});
  InverseHvpOptions options = flags.Resolve(model.arch.num_params);
  progress.Announce("lethe validate-influence: " + std::to_string(m) + " test × " +
                    std::to_string(n) + " training examples, " +
                    std::to_string(model.arch.num_params) + " parameters, solver " +
                    Name(options.solver) + ", " + session.backend->Describe());

  // Ground truth from a model that is not at a minimiser would measure the rest of its
  // training, not the removed examples: refused, where influence merely warns.
  kernels::Matrix<T> grad = session.backend->Allocate(1, model.arch.num_params);
  session.train->ValueAndGradient(session.theta, grad);
  const double grad_norm = static_cast<double>(kernels::Norm(*session.backend, grad));
  if (!(grad_norm <= kStationarityTolerance))
    Fail(s.model_path, ": not at a stationary point of its objective on ", s.train_path,
         " (‖∇L‖ = ", Sci(grad_norm), " > ", Sci(kStationarityTolerance, 0),
         "): retraining from it would also finish its training, and the measured changes would "
         "show that rather than the removed examples; `lethe train --init ", s.model_path,
         " --data ", s.train_path, " --out FINISHED.safetensors` finishes it first");

  // The scores, exactly as `lethe influence` computes them.
  options.progress = &progress;
  InverseHvp<T> inverse(*session.train, session.theta, options);
  const InfluenceResult r = InfluenceOnTests(*session.train, tests, session.theta, inverse);
  const SolveSummary& solve = r.summary;
  if (!solve.converged()) {
    const std::string what = std::string("the inverse-Hessian solve did not converge (") +
                             Name(solve.termination) +
                             (solve.message.empty() ? "" : "; " + solve.message) + ")";
    if (solve.termination == Termination::kNegativeCurvature ||
        solve.termination == Termination::kDiverged || !flags.allow_inexact)
      Fail(what, "; nothing written (raise --damping or use --curvature gauss-newton for a "
                 "curvature that is not positive definite; --allow-inexact validates stopped-"
                 "short scores)");
    warnings.Add(what + ": validating the inexact scores (--allow-inexact)");
  }
  auto score = [&](int64_t j, int64_t i) { return r.scores[j * n + i]; };

  Retrainer<T> retrainer(session, model, train, tests, s.retrain, common);
  progress.Announce("reference: retraining on all " + std::to_string(n) + " examples from θ");
  const std::vector<double> reference = retrainer.LossesAfterTraining({});
  const int64_t reference_iterations = retrainer.last_iterations;

  nlohmann::json report;
  report["model"] = s.model_path;
  report["train"] = s.train_path;
  report["test"] = s.test_path;
  report["n"] = n;
  report["num_params"] = model.arch.num_params;
  report["test_ids"] = nlohmann::json::array();
  for (int64_t row : test_rows) report["test_ids"].push_back(test.ids[row]);
  report["seed"] = s.seed;
  report["grad_norm"] = grad_norm;
  report["convention"] =
      "predicted = sum of lethe's scores (1/n) g_test^T (C + damping I)^-1 g_i over the removed "
      "examples, the first-order change of the test loss; actual = test loss retrained without "
      "them minus test loss retrained on all; positive = removing them raises the test loss";
  report["settings"] = {{"solver", Name(options.solver)},
                        {"curvature", options.curvature == Curvature::kHessian ? "hessian"
                                                                               : "gauss-newton"},
                        {"damping", options.damping},
                        {"dtype", common.dtype},
                        {"device", common.device}};
  report["solver"] = ToJson(solve);
  report["exact"] = solve.converged();

  // Leave-one-out.
  std::mt19937_64 rng(s.seed);
  std::vector<std::vector<int64_t>> top(m);
  std::vector<int64_t> random;
  std::vector<double> plot_predicted, plot_actual;
  std::vector<std::string> lines;  // the table, printed after everything succeeded
  if (s.remove > 0) {
    random = Sample(n, std::min(s.remove, n), rng);
    std::vector<int64_t> unique(random.begin(), random.end());
    for (int64_t j = 0; j < m; ++j) {
      top[j] = LargestMagnitude(r.scores.data() + j * n, n, s.remove);
      unique.insert(unique.end(), top[j].begin(), top[j].end());
    }
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
    progress.Announce("leave-one-out: retraining without each of " +
                      std::to_string(unique.size()) + " examples");
    std::map<int64_t, std::vector<double>> actual;  // row → change of each test loss
    for (size_t k = 0; k < unique.size(); ++k) {
      std::vector<double> losses = retrainer.LossesAfterTraining(AllBut(n, {unique[k]}));
      for (int64_t j = 0; j < m; ++j) losses[j] -= reference[j];
      actual[unique[k]] = std::move(losses);
      progress.Report("leave-one-out retrainings", static_cast<int64_t>(k + 1),
                      static_cast<int64_t>(unique.size()));
    }
    const std::unordered_set<int64_t> random_set(random.begin(), random.end());
    nlohmann::json loo;
    loo["remove"] = s.remove;
    loo["retrainings"] = static_cast<int64_t>(unique.size());
    loo["per_test"] = nlohmann::json::array();
    loo["points"] = nlohmann::json::array();
    std::vector<double> pearsons, spearmans;
    lines.push_back("leave-one-out (Koh & Liang): " + std::to_string(s.remove) +
                    " largest |score| + " + std::to_string(random.size()) +
                    " random training examples per test example, each removed and retrained");
    lines.push_back("  test id      points  Pearson  Spearman   (top: Pearson  Spearman)  "
                    "(random: Pearson  Spearman)");
    for (int64_t j = 0; j < m; ++j) {
      const std::unordered_set<int64_t> top_set(top[j].begin(), top[j].end());
      std::vector<int64_t> rows(top[j]);
      for (int64_t i : random)
        if (!top_set.count(i)) rows.push_back(i);
      std::vector<double> p_all, a_all, p_top, a_top, p_rand, a_rand;
      for (int64_t i : rows) {
        const double p = score(j, i), a = actual[i][j];
        p_all.push_back(p), a_all.push_back(a);
        if (top_set.count(i)) p_top.push_back(p), a_top.push_back(a);
        if (random_set.count(i)) p_rand.push_back(p), a_rand.push_back(a);
        const char* group = top_set.count(i) ? (random_set.count(i) ? "both" : "top") : "random";
        loo["points"].push_back({{"test_id", test.ids[test_rows[j]]},
                                 {"train_id", train.ids[i]},
                                 {"group", group},
                                 {"predicted", p},
                                 {"actual", a}});
      }
      plot_predicted.insert(plot_predicted.end(), p_all.begin(), p_all.end());
      plot_actual.insert(plot_actual.end(), a_all.begin(), a_all.end());
      const Correlations all = Correlate(p_all, a_all), t = Correlate(p_top, a_top),
                         rnd = Correlate(p_rand, a_rand);
      pearsons.push_back(all.pearson);
      spearmans.push_back(all.spearman);
      loo["per_test"].push_back({{"test_id", test.ids[test_rows[j]]},
                                 {"all", CorrelationsJson(all)},
                                 {"top", CorrelationsJson(t)},
                                 {"random", CorrelationsJson(rnd)}});
      char line[200];
      std::snprintf(line, sizeof line, "  %-12lld %6lld  %7s  %8s   (     %7s  %8s)  (        %7s  %8s)",
                    static_cast<long long>(test.ids[test_rows[j]]),
                    static_cast<long long>(all.points), Num(all.pearson).c_str(),
                    Num(all.spearman).c_str(), Num(t.pearson).c_str(), Num(t.spearman).c_str(),
                    Num(rnd.pearson).c_str(), Num(rnd.spearman).c_str());
      lines.push_back(line);
    }
    const Correlations pooled = Correlate(plot_predicted, plot_actual);
    loo["pooled"] = CorrelationsJson(pooled);
    loo["mean"] = {{"pearson", MeanOf(pearsons)}, {"spearman", MeanOf(spearmans)}};
    // Least-squares slope of actual on predicted: 1 when the scores have the right scale.
    double sxy = 0, sxx = 0;
    const double mp = MeanOf(plot_predicted), ma = MeanOf(plot_actual);
    for (size_t k = 0; k < plot_predicted.size(); ++k)
      sxy += (plot_predicted[k] - mp) * (plot_actual[k] - ma),
          sxx += (plot_predicted[k] - mp) * (plot_predicted[k] - mp);
    loo["slope"] = sxx > 0 ? sxy / sxx : NAN;
    report["leave_one_out"] = loo;
    lines.push_back("  all test examples pooled: Pearson " + Num(pooled.pearson) + ", Spearman " +
                    Num(pooled.spearman) + " over " + std::to_string(pooled.points) +
                    " points; mean over test examples: Pearson " + Num(MeanOf(pearsons)) +
                    ", Spearman " + Num(MeanOf(spearmans)) + "; slope (actual on predicted) " +
                    Num(loo["slope"].get<double>()));
  }

  // Linear datamodeling score.
  if (s.subsets > 0) {
    const int64_t size = static_cast<int64_t>(std::llround(s.fraction * static_cast<double>(n)));
    progress.Announce("linear datamodeling score: retraining on " + std::to_string(s.subsets) +
                      " random subsets of " + std::to_string(size) + " examples");
    std::vector<std::vector<double>> predicted(m), losses(m);
    for (int64_t k = 0; k < s.subsets; ++k) {
      std::vector<int64_t> kept = Sample(n, size, rng);
      std::sort(kept.begin(), kept.end());
      std::vector<char> in(n, 0);
      for (int64_t i : kept) in[i] = 1;
      const std::vector<double> l = retrainer.LossesAfterTraining(kept);
      for (int64_t j = 0; j < m; ++j) {
        double sum = 0;  // the scores of the examples this subset leaves out
        for (int64_t i = 0; i < n; ++i)
          if (!in[i]) sum += score(j, i);
        predicted[j].push_back(sum);
        losses[j].push_back(l[j]);
      }
      progress.Report("subset retrainings", k + 1, s.subsets);
    }
    nlohmann::json lds;
    lds["subsets"] = s.subsets;
    lds["fraction"] = s.fraction;
    lds["subset_size"] = size;
    lds["per_test"] = nlohmann::json::array();
    std::vector<double> spearmans, pearsons;
    for (int64_t j = 0; j < m; ++j) {
      std::vector<double> change(losses[j]);
      for (double& x : change) x -= reference[j];
      const Correlations c = Correlate(predicted[j], change);
      spearmans.push_back(c.spearman);
      pearsons.push_back(c.pearson);
      nlohmann::json e{{"test_id", test.ids[test_rows[j]]}, {"spearman", c.spearman},
                       {"pearson", c.pearson}, {"predicted", predicted[j]}, {"actual", change}};
      lds["per_test"].push_back(e);
    }
    lds["lds"] = MeanOf(spearmans);
    lds["mean_pearson"] = MeanOf(pearsons);
    report["linear_datamodeling"] = lds;
    lines.push_back("");
    lines.push_back("linear datamodeling score (Park et al.): " + std::to_string(s.subsets) +
                    " random subsets of " + std::to_string(size) + " of " + std::to_string(n) +
                    " examples (fraction " + Shortest(s.fraction) + "), each retrained");
    lines.push_back("  test id      Spearman  Pearson");
    for (int64_t j = 0; j < m; ++j) {
      char line[160];
      std::snprintf(line, sizeof line, "  %-12lld %8s  %7s",
                    static_cast<long long>(test.ids[test_rows[j]]), Num(spearmans[j]).c_str(),
                    Num(pearsons[j]).c_str());
      lines.push_back(line);
    }
    lines.push_back("  LDS (mean Spearman over test examples): " + Num(MeanOf(spearmans)));
  }

  report["retraining"] = {{"optimizer", Name(s.retrain.optimizer)},
                          {"tolerance", s.retrain.gradient_tolerance},
                          {"retrainings", retrainer.count},
                          {"unconverged", retrainer.unconverged},
                          {"worst_grad_norm", retrainer.worst_grad_norm},
                          {"iterations", retrainer.iterations},
                          {"reference_iterations", reference_iterations},
                          {"seconds", retrainer.seconds}};
  if (retrainer.unconverged > 0)
    warnings.Add(std::to_string(retrainer.unconverged) + " of " + std::to_string(retrainer.count) +
                 " retrainings did not reach ‖∇L‖ ≤ " + Sci(s.retrain.gradient_tolerance, 0) +
                 " (worst " + Sci(retrainer.worst_grad_norm) +
                 "): their actual changes are inexact; raise --max-iterations");
  report["warnings"] = warnings.all();

  // Everything computed: now the files (each atomically), then stdout.
  if (!s.plot.empty()) {
    std::string title = "Pearson " + Num(report["leave_one_out"]["pooled"]["pearson"].is_number()
                                             ? report["leave_one_out"]["pooled"]["pearson"].get<double>()
                                             : NAN) +
                        "  Spearman " +
                        Num(report["leave_one_out"]["pooled"]["spearman"].is_number()
                                ? report["leave_one_out"]["pooled"]["spearman"].get<double>()
                                : NAN) +
                        "  (" + std::to_string(plot_predicted.size()) + " points)";
    io::WriteFileAtomically(
        s.plot, ScatterPng(plot_predicted, plot_actual, title,
                           "predicted change of test loss", "actual change of test loss"));
  }
  if (!s.out.empty()) io::WriteFileAtomically(s.out, report.dump(2) + "\n");
  if (common.json) {
    std::cout << report.dump(2) << "\n";
    return 0;
  }
  std::cout << Describe(solve) << (solve.converged() ? "" : "   [INEXACT: --allow-inexact]")
            << "\n‖∇L(θ)‖ on the training data: " << Sci(grad_norm)
            << "; retrainings: " << retrainer.count << " (" << Name(s.retrain.optimizer)
            << ", warm start, ‖∇L‖ ≤ " << Sci(s.retrain.gradient_tolerance, 0) << "), "
            << Fixed(retrainer.seconds, 1) << " s\n"
            << "sign: predicted = sum of the removed examples' scores = first-order change of "
               "the test loss; positive = removing them raises it\n\n";
  for (const std::string& line : lines) std::cout << line << "\n";
  if (!s.out.empty()) std::cout << "wrote " << s.out << "\n";
  if (!s.plot.empty()) std::cout << "wrote " << s.plot << "\n";
  return 0;
}

}  // namespace

int RunValidateInfluence(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  SolverFlags flags;
  Settings s;
  std::string spec_path, test_ids, optimizer = "lbfgs";
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&s.model_path), "trained model (.safetensors), at a minimiser")
    ("train", po::value(&s.train_path), "training data the model was fitted to")
    ("test", po::value(&s.test_path), "test data")
    ("test-ids", po::value(&test_ids),
     "the test examples (each adds up to --remove leave-one-out retrainings)")
    ("remove", po::value(&s.remove)->default_value(50),
     "leave-one-out: the K of largest |score| per test example and K random ones (0: skip)")
    ("subsets", po::value(&s.subsets)->default_value(100),
     "linear datamodeling score: random subsets retrained (0: skip)")
    ("fraction", po::value(&s.fraction)->default_value(0.5),
     "the fraction of the training data each subset keeps")
    ("seed", po::value(&s.seed)->default_value(0), "chooses the random examples and subsets")
    ("tolerance", po::value(&s.retrain.gradient_tolerance)->default_value(1e-9),
     "retraining: stop when ‖∇L‖ ≤ this (as lethe train)")
    ("max-iterations", po::value(&s.retrain.max_iterations)->default_value(20000),
     "retraining: iteration limit (as lethe train)")
    ("optimizer", po::value(&optimizer)->default_value("lbfgs"),
     "retraining: lbfgs or newton-cg (as lethe train)")
    ("out", po::value(&s.out), "also write the report (the --json object) to this .json file")
    ("plot", po::value(&s.plot),
     "leave-one-out scatter (.png): predicted against actual change, y = x, correlations in the title")
    ("spec", po::value(&spec_path), "sidecar spec JSON");
  flags.Add(desc);
  common.Add(desc);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe validate-influence --model M --train T --test E --test-ids 3,17 [--remove 50] "
             "[--subsets 100 --fraction 0.5] [--plot loo.png] [--out report.json]",
             "lethe validate-influence --model examples/digits/model.safetensors --train "
             "examples/digits/train.npz --test examples/digits/test.npz --test-ids 100015 "
             "--remove 10 --subsets 5 --plot loo.png"))
    return 0;
  for (const char* name : {"model", "train", "test", "test-ids"}) Require(vm, name);
  if (s.remove < 0 || s.remove == 1)
    Fail("--remove ", s.remove, ": must be 0 (skip leave-one-out) or >= 2");
  if (s.subsets < 0 || s.subsets == 1 || s.subsets == 2)
    Fail("--subsets ", s.subsets, ": must be 0 (skip the datamodeling score) or >= 3");
  if (s.remove == 0 && s.subsets == 0) Fail("--remove 0 and --subsets 0: nothing to validate");
  if (!(s.fraction > 0 && s.fraction < 1)) Fail("--fraction ", s.fraction, ": must be in (0, 1)");
  if (!s.plot.empty() && s.remove == 0)
    Fail("--plot ", s.plot, ": the scatter shows leave-one-out, which --remove 0 skips");
  s.retrain.optimizer = ParseOptimizer(optimizer);
  if (s.retrain.optimizer == Optimizer::kAdam)
    Fail("--optimizer adam: has no stopping test; retraining must reach a minimiser (lbfgs or "
         "newton-cg)");
  s.retrain.Validate();
  const bool f32 = common.F32();
  common.Backend();
  std::vector<std::string> inputs = {s.model_path, s.train_path, s.test_path};
  if (!spec_path.empty()) inputs.push_back(spec_path);
  if (!s.out.empty()) {
    if (!s.out.ends_with(".json") && !io::IsExistingStream(s.out))
      Fail("--out ", s.out, ": must end in .json");
    io::CheckOutputIsNotAnInput(s.out, inputs);
    io::CheckOutputCanBeWritten(s.out);
  }
  if (!s.plot.empty()) {
    if (!s.plot.ends_with(".png") && !io::IsExistingStream(s.plot))
      Fail("--plot ", s.plot, ": must end in .png");
    io::CheckOutputIsNotAnInput(s.plot, inputs);
    io::CheckOutputCanBeWritten(s.plot);
    if (s.plot == s.out) Fail("--plot and --out name the same file");
  }
  const Model model = LoadModel(s.model_path, spec_path.empty() ? std::nullopt : std::optional(spec_path));
  const io::Dataset train = ExcludeForgotten(model.forgotten,
                                             io::LoadDataset(s.train_path, common.Data()),
                                             "validate-influence", s.model_path);
  const io::Dataset test = io::LoadDataset(s.test_path, common.Data());
  CheckDataMatchesModel(model.arch, train);
  CheckDataMatchesModel(model.arch, test);
  const std::vector<int64_t> rows = test.RowsOf(io::ParseIdList(test_ids, "--test-ids"), "--test-ids");
  if (s.remove > train.n)
    Fail("--remove ", s.remove, ": more than the ", train.n, " training examples of ", s.train_path);
  if (s.subsets > 0) {
    const int64_t size = std::llround(s.fraction * static_cast<double>(train.n));
    if (size < 1 || size >= train.n)
      Fail("--fraction ", s.fraction, ": keeps ", size, " of the ", train.n, " training examples of ",
           s.train_path, "; a subset must keep at least one and leave one out");
  }
  return f32 ? Validate<float>(model, train, test, rows, flags, common, s)
             : Validate<double>(model, train, test, rows, flags, common, s);
}

}  // namespace lethe::cli
