// lethe unlearn --certified: a Newton removal with its certificate (Guo et al. 2020;
// engine/certified/removal_bound.h, docs/privacy.md "Certified removal"): the data-dependent
// bound on the kept objective's gradient residual, accumulated over sequential removals
// into β, and ε = c(δ)·β/σ checked against --epsilon-budget.
#pragma once

#include <string>
#include <vector>

namespace lethe::cli {

// Whether `args` ask lethe unlearn for a certified removal (--certified among them).
bool WantsCertifiedUnlearn(const std::vector<std::string>& args);
int RunUnlearnCertified(const std::vector<std::string>& args);

}  // namespace lethe::cli
