#include "tools/lethe/train_dp.h"

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "engine/objective.h"
#include "engine/privacy/dp_sgd.h"
#include "engine/privacy/rdp_accountant.h"
#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {

void DpFlags::Add(po::options_description& desc) {
  desc.add_options()
    ("dp", po::bool_switch(&enabled), "differentially private training: DP-SGD (docs/privacy.md)")
    ("max-grad-norm", po::value(&max_grad_norm)->default_value(1.0),
     "--dp: clip every per-example gradient to this norm C")
    ("noise-multiplier", po::value(&noise_multiplier),
     "--dp: σ, the noise N(0, σ²C²) on the sum of clipped gradients")
    ("target-epsilon", po::value(&target_epsilon),
     "--dp: instead of σ, the smallest σ whose ε is at most this")
    ("delta", po::value(&delta), "--dp: δ of (ε, δ) (default 1/n rounded down to a power of ten)")
    ("sample-rate", po::value(&sample_rate),
     "--dp: Poisson sampling rate q (default --batch-size / n)");
}

void DpFlags::Check(const po::variables_map& vm) {
  auto given = [&](const char* name) { return vm.count(name) && !vm[name].defaulted(); };
  if (!enabled) {
    for (const char* name : {"max-grad-norm", "noise-multiplier", "target-epsilon", "delta", "sample-rate"})
      if (given(name)) Fail("--", name, " needs --dp");
    return;
  }
  for (const char* name : {"optimizer", "tolerance", "max-iterations", "no-polish"})
    if (given(name)) Fail("--", name, " does not apply to --dp (DP-SGD runs --epochs epochs)");
  if (given("noise-multiplier") == given("target-epsilon"))
    Fail("--dp needs --noise-multiplier S or --target-epsilon E (exactly one)");
  target_given = given("target-epsilon");
  sample_rate_given = given("sample-rate");
  delta_given = given("delta");
  if (given("sample-rate") && given("batch-size"))
    Fail("give --sample-rate or --batch-size with --dp, not both (q = batch size / n)");
}

namespace {

template <typename T>
privacy::DpSgdSummary Run(Model& model, const io::Dataset& data, const std::vector<int64_t>& rows,
                          const privacy::DpSgdOptions& options, const CommonOptions& common) {
  auto backend = kernels::MakeBackend<T>(common.Backend());
  Objective<T> objective(*backend, model.arch, UploadData(*backend, data, rows),
                         ObjectiveOptions{common.batch_size});
  Distribute(objective);  // under mpirun: engine/privacy/dp_sgd.cc
  std::vector<T> host(model.theta.begin(), model.theta.end());
  auto theta = backend->Allocate(1, model.arch.num_params);
  backend->Upload(host.data(), theta);
  Progress progress(common.quiet);
  progress.Announce("lethe train --dp: " + std::to_string(objective.global_examples()) +
                    " examples, " + std::to_string(model.arch.num_params) + " parameters, " +
                    std::to_string(options.Steps()) + " DP-SGD steps, " + common.dtype + ", " +
                    backend->Describe());
  std::function<void(const privacy::DpSgdProgress&)> report;
  // The per-epoch objective is a full pass over the data: only when someone watches. Under
  // mpirun it is collective: rank 0's terminal decides for every rank.
  bool watched = progress.enabled();
  if (Distributed()) {
    std::string flag(1, watched ? '1' : '0');
    Comm().Broadcast(&flag, 0);
    watched = flag == "1";
  }
  if (watched)
    report = [&](const privacy::DpSgdProgress& p) {
      progress.Update("  epoch " + std::to_string(p.epoch) + "  objective " +
                      Shortest(p.objective) + "  ‖∇L‖ " + Sci(p.grad_norm));
    };
  const privacy::DpSgdSummary s = privacy::TrainDpSgd(objective, theta, options, report);
  backend->Download(theta, host.data());
  model.theta.assign(host.begin(), host.end());
  return s;
}

}  // namespace

int TrainWithDp(Model model, const io::Dataset& data, const std::vector<int64_t>& rows,
                const DpFlags& flags, const DpRun& run, const CommonOptions& common,
                const std::string& out) {
  // n over every rank's rows under mpirun: q, δ and the record are the whole data's.
  const int64_t n = SumOverRanks(rows.empty() ? data.n : static_cast<int64_t>(rows.size()));
  privacy::DpSgdOptions o;
  o.max_grad_norm = flags.max_grad_norm;
  o.epochs = run.epochs;
  o.learning_rate = run.learning_rate_given ? run.learning_rate : kDpDefaultLearningRate;
  o.seed = run.seed;
  if (flags.sample_rate_given || !run.batch_size_given) {
    o.sample_rate = flags.sample_rate_given ? flags.sample_rate
                                          : std::min(1.0, static_cast<double>(run.batch_size) / n);
  } else {
    if (run.batch_size > n)
      Fail("--batch-size = ", run.batch_size, ": more than the ", n, " training examples");
    o.sample_rate = static_cast<double>(run.batch_size) / n;
  }
  if (!(o.sample_rate > 0 && o.sample_rate <= 1))
    Fail("--sample-rate = ", o.sample_rate, ": must be in (0, 1]");
  const double delta = flags.delta_given ? flags.delta : privacy::DefaultDelta(n);
  if (!(delta > 0 && delta < 1)) Fail("--delta = ", delta, ": must be in (0, 1)");
  if (o.epochs < 1) Fail("--epochs = ", o.epochs, ": --dp needs at least one epoch");
  o.noise_multiplier = flags.noise_multiplier > 0 ? flags.noise_multiplier : 1;  // validated
  o.Validate();

  privacy::SubsampledGaussian mechanism{o.noise_multiplier, o.sample_rate, o.Steps()};
  privacy::PrivacySpent spent;
  if (flags.target_given) {
    const privacy::NoiseSearchResult r =
        privacy::NoiseMultiplierForEpsilon(mechanism, delta, flags.target_epsilon);
    o.noise_multiplier = mechanism.noise_multiplier = r.noise_multiplier;
    spent = r.spent;
  } else {
    mechanism.noise_multiplier = o.noise_multiplier = flags.noise_multiplier;
    spent = privacy::ComputeEpsilon(mechanism, delta);  // validates σ > 0
  }

  const privacy::DpSgdSummary s = common.F32() ? Run<float>(model, data, rows, o, common)
                                               : Run<double>(model, data, rows, o, common);
  privacy::DpRecord record;
  record.accountant = privacy::kRdpAccountantName;
  record.accountant_version = privacy::kRdpAccountantVersion;
  record.epsilon = spent.epsilon;
  record.delta = delta;
  record.best_order = spent.best_order;
  record.noise_multiplier = o.noise_multiplier;
  record.max_grad_norm = o.max_grad_norm;
  record.sample_rate = o.sample_rate;
  record.steps = s.steps;
  record.epochs = o.epochs;
  record.examples = n;
  record.learning_rate = o.learning_rate;
  record.l2 = model.arch.spec.l2;
  model.dp = record;
  if (Comm().rank() == 0) SaveModel(out, model);  // every rank holds the same θ

  std::vector<std::string> warnings;
  if (spent.order_at_edge)
    warnings.push_back("the best RDP order " + Shortest(spent.best_order) +
                       " is at the edge of the orders searched: epsilon holds but may be loose");
  for (const std::string& w : warnings) Warn("train", w);
  const double mean_batch = s.steps ? static_cast<double>(s.sampled) / s.steps : 0;
  const double clipped = s.sampled ? static_cast<double>(s.clipped) / s.sampled : 0;
  if (common.json) {
    nlohmann::json j;
    j["out"] = out;
    j["n"] = n;
    j["num_params"] = model.arch.num_params;
    j["optimizer"] = "dp-sgd";
    j["dp"] = nlohmann::json::parse(record.ToJson());
    j["mean_batch"] = mean_batch;
    j["clipped_fraction"] = clipped;
    j["warnings"] = warnings;
    j["forgotten"] = static_cast<int64_t>(model.forgotten.ids.size());
    j["objective"] = s.objective;
    j["grad_norm"] = s.grad_norm;
    j["seconds"] = s.seconds;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "trained " << out << ": dp-sgd, " << s.steps << " steps (" << o.epochs
            << " epochs of " << o.StepsPerEpoch() << "), mean batch " << Fixed(mean_batch, 1)
            << ", " << Fixed(100 * clipped, 1) << "% of per-example gradients clipped, "
            << Fixed(s.seconds, 2) << " s\n  (epsilon, delta) = (" << Shortest(spent.epsilon)
            << ", " << Shortest(delta) << ") for adding or removing one of " << n
            << " examples: sigma " << Shortest(o.noise_multiplier) << ", C "
            << Shortest(o.max_grad_norm) << ", q " << Shortest(o.sample_rate) << "; accountant "
            << record.accountant << " v" << record.accountant_version << ", best order "
            << Shortest(spent.best_order) << "\n  objective " << Shortest(s.objective)
            << "   ‖∇L‖ " << Sci(s.grad_norm) << "   (on the training data: not private)\n";
  return 0;
}

}  // namespace lethe::cli
