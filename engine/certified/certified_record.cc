#include "engine/certified/certified_record.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "engine/metadata_record.h"

namespace lethe::certified {

std::string CertifiedRecord::ToJson() const {
  nlohmann::ordered_json j;  // in the order a reader wants: the guarantee first
  j["mechanism"] = mechanism;
  j["version"] = version;
  j["epsilon"] = epsilon;
  j["delta"] = delta;
  j["beta"] = beta;
  j["epsilon_budget"] = epsilon_budget;
  j["sigma"] = sigma;
  j["removals"] = removals;
  j["removed"] = removed;
  j["examples"] = examples;
  j["examples_trained"] = examples_trained;
  j["loss"] = loss;
  j["gamma"] = gamma;
  j["l2"] = l2;
  j["x_norm_bound"] = x_norm_bound;
  j["train_grad_norm"] = train_grad_norm;
  j["b_sha256"] = b_sha256;
  j["b_generator"] = b_generator;
  return j.dump();
}

CertifiedRecord CertifiedRecord::Parse(const std::string& text, const std::string& where) {
  CertifiedRecord r;
  int64_t version = r.version;  // absent: the struct's default
  ParseMetadataRecord(text, where, "lethe_certified",
                      {.text = {{"mechanism", &r.mechanism},
                                {"b_sha256", &r.b_sha256},
                                {"b_generator", &r.b_generator},
                                {"loss", &r.loss}},
                       .real = {{"epsilon", &r.epsilon},
                                {"delta", &r.delta},
                                {"beta", &r.beta},
                                {"epsilon_budget", &r.epsilon_budget},
                                {"sigma", &r.sigma},
                                {"gamma", &r.gamma},
                                {"l2", &r.l2},
                                {"x_norm_bound", &r.x_norm_bound},
                                {"train_grad_norm", &r.train_grad_norm}},
                       .count = {{"version", &version},
                                 {"removals", &r.removals},
                                 {"removed", &r.removed},
                                 {"examples", &r.examples},
                                 {"examples_trained", &r.examples_trained}},
                       .reals_nonnegative = true});
  r.version = static_cast<int>(std::min<int64_t>(version, 1 << 30));
  auto bad = [&](const std::string& what) { MetadataRecordError(where, "lethe_certified", what); };
  if (r.version != 1) bad("version " + std::to_string(r.version) + " is not known (known: 1)");
  if (r.mechanism != "objective-perturbation") bad("unknown mechanism");
  if (!(r.sigma > 0)) bad("\"sigma\" must be > 0");
  if (r.b_sha256.size() != 64) bad("\"b_sha256\" must be 64 hex digits");
  return r;
}

}  // namespace lethe::certified
