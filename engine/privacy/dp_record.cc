#include "engine/privacy/dp_record.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "engine/metadata_record.h"

namespace lethe::privacy {

std::string DpRecord::ToJson() const {
  // ordered_json: the keys in the order a reader wants them, the guarantee first.
  nlohmann::ordered_json j;
  j["mechanism"] = mechanism;
  j["epsilon"] = epsilon;
  j["delta"] = delta;
  j["accountant"] = accountant;
  j["accountant_version"] = accountant_version;
  j["best_order"] = best_order;
  j["noise_multiplier"] = noise_multiplier;
  j["max_grad_norm"] = max_grad_norm;
  j["sample_rate"] = sample_rate;
  j["steps"] = steps;
  j["epochs"] = epochs;
  j["examples"] = examples;
  j["learning_rate"] = learning_rate;
  j["l2"] = l2;
  return j.dump();
}

DpRecord DpRecord::Parse(const std::string& text, const std::string& where) {
  DpRecord r;
  int64_t accountant_version = r.accountant_version;
  ParseMetadataRecord(
      text, where, "lethe_dp",
      {.text = {{"mechanism", &r.mechanism}, {"accountant", &r.accountant}},
       .real = {{"epsilon", &r.epsilon},
                {"delta", &r.delta},
                {"best_order", &r.best_order},
                {"noise_multiplier", &r.noise_multiplier},
                {"max_grad_norm", &r.max_grad_norm},
                {"sample_rate", &r.sample_rate},
                {"learning_rate", &r.learning_rate},
                {"l2", &r.l2}},
       .count = {{"accountant_version", &accountant_version},
                 {"steps", &r.steps},
                 {"epochs", &r.epochs},
                 {"examples", &r.examples}}});
  r.accountant_version = static_cast<int>(std::min<int64_t>(accountant_version, 1 << 30));
  return r;
}

}  // namespace lethe::privacy
