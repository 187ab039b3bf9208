// lethe privacy: what DP-SGD's parameters cost, without training: ε for (σ, q, T, δ), or
// the σ that meets a target ε (engine/privacy/rdp_accountant.h, docs/privacy.md).
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/privacy/rdp_accountant.h"
#include "tools/lethe/commands.h"

namespace lethe::cli {

int RunPrivacy(const std::vector<std::string>& args) {
  po::options_description desc("options");
  privacy::SubsampledGaussian m;
  double delta = 0, target_epsilon = 0;
  bool json = false;
  desc.add_options()("help,h", "show this help")
    ("noise-multiplier", po::value(&m.noise_multiplier),
     "σ: noise standard deviation / clipping norm (or --target-epsilon)")
    ("sample-rate", po::value(&m.sample_rate), "q: each example's probability of being in a step's batch")
    ("steps", po::value(&m.steps), "T: number of noisy steps")
    ("delta", po::value(&delta), "δ of (ε, δ)-DP (lethe train --dp's default: 1/n rounded down "
                                 "to a power of ten)")
    ("target-epsilon", po::value(&target_epsilon),
     "find the smallest σ with ε ≤ this (σ to a relative 1e-6)")
    ("json", po::bool_switch(&json), "JSON on stdout");
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe privacy (--noise-multiplier S | --target-epsilon E) --sample-rate Q "
             "--steps T --delta D [--json]",
             "lethe privacy --noise-multiplier 1.5 --sample-rate 0.04 --steps 2250 --delta 1e-5"))
    return 0;
  Require(vm, "sample-rate");
  Require(vm, "steps");
  Require(vm, "delta");
  const bool search = vm.count("target-epsilon");
  if (search == static_cast<bool>(vm.count("noise-multiplier")))
    Fail("give --noise-multiplier or --target-epsilon, exactly one");
  if (search) m.noise_multiplier = 1;  // validated below, searched for
  m.Validate();

  privacy::PrivacySpent spent;
  privacy::NoiseSearchOptions search_options;
  if (search) {
    const privacy::NoiseSearchResult r =
        privacy::NoiseMultiplierForEpsilon(m, delta, target_epsilon, search_options);
    m.noise_multiplier = r.noise_multiplier;
    spent = r.spent;
  } else {
    spent = privacy::ComputeEpsilon(m, delta);
  }
  std::vector<std::string> warnings;
  if (spent.order_at_edge)
    warnings.push_back("the best RDP order " + Shortest(spent.best_order) +
                       " is at the edge of the orders searched (1.1 … 63): the bound holds but a "
                       "wider range could give a smaller epsilon");
  for (const std::string& w : warnings) Warn("privacy", w);
  if (json) {
    nlohmann::json j;
    j["accountant"] = privacy::kRdpAccountantName;
    j["accountant_version"] = privacy::kRdpAccountantVersion;
    j["noise_multiplier"] = m.noise_multiplier;
    j["sample_rate"] = m.sample_rate;
    j["steps"] = m.steps;
    j["delta"] = delta;
    j["epsilon"] = spent.epsilon;
    j["best_order"] = spent.best_order;
    if (search) {
      j["target_epsilon"] = target_epsilon;
      j["noise_multiplier_relative_tolerance"] = search_options.relative_tolerance;
    }
    j["warnings"] = warnings;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  if (search)
    std::cout << "noise multiplier " << Shortest(m.noise_multiplier)
              << " (the smallest meeting epsilon <= " << target_epsilon << ", to a relative "
              << search_options.relative_tolerance << ")\n";
  std::cout << "epsilon " << Shortest(spent.epsilon) << " at delta "
            << Shortest(delta) << "   (best order " << Shortest(spent.best_order)
            << "; sigma " << Shortest(m.noise_multiplier) << ", q "
            << Shortest(m.sample_rate) << ", " << m.steps << " steps; accountant "
            << privacy::kRdpAccountantName << " v" << privacy::kRdpAccountantVersion << ")\n";
  return 0;
}

}  // namespace lethe::cli
