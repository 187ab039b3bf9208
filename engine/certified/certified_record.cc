#include "engine/certified/certified_record.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/error.h"

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
  // From a file: never quoted back, only the field named. One level deep.
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > 1) throw Error("nested");
      return true;
    });
  } catch (const nlohmann::json::exception&) {
    Fail(where, ": __metadata__[\"lethe_certified\"] is not valid JSON");
  } catch (const Error&) {
    Fail(where, ": __metadata__[\"lethe_certified\"] must be a flat object");
  }
  auto bad = [&](const std::string& what) -> void {
    Fail(where, ": __metadata__[\"lethe_certified\"]: ", what);
  };
  if (!j.is_object()) bad("must be an object");
  CertifiedRecord r;
  for (const auto& [key, v] : j.items()) {
    std::string* text_field = key == "mechanism"     ? &r.mechanism
                              : key == "b_sha256"    ? &r.b_sha256
                              : key == "b_generator" ? &r.b_generator
                              : key == "loss"        ? &r.loss
                                                     : nullptr;
    double* real = key == "sigma"             ? &r.sigma
                   : key == "gamma"           ? &r.gamma
                   : key == "l2"              ? &r.l2
                   : key == "beta"            ? &r.beta
                   : key == "delta"           ? &r.delta
                   : key == "epsilon"         ? &r.epsilon
                   : key == "epsilon_budget"  ? &r.epsilon_budget
                   : key == "x_norm_bound"    ? &r.x_norm_bound
                   : key == "train_grad_norm" ? &r.train_grad_norm
                                              : nullptr;
    int64_t* integer = key == "examples_trained" ? &r.examples_trained
                       : key == "examples"       ? &r.examples
                       : key == "removals"       ? &r.removals
                       : key == "removed"        ? &r.removed
                                                 : nullptr;
    if (text_field) {
      if (!v.is_string()) bad("\"" + key + "\" must be a string");
      *text_field = v.get<std::string>();
    } else if (real) {
      if (!v.is_number() || !(v.get<double>() >= 0)) bad("\"" + key + "\" must be a number >= 0");
      *real = v.get<double>();
    } else if (integer || key == "version") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0)
        bad("\"" + key + "\" must be an integer >= 0");
      if (integer)
        *integer = v.get<int64_t>();
      else
        r.version = static_cast<int>(std::min<int64_t>(v.get<int64_t>(), 1 << 30));
    } else {
      bad("unknown key (known: mechanism, version, epsilon, delta, beta, epsilon_budget, sigma, "
          "removals, removed, examples, examples_trained, loss, gamma, l2, x_norm_bound, "
          "train_grad_norm, b_sha256, b_generator)");
    }
  }
  if (r.version != 1) bad("version " + std::to_string(r.version) + " is not known (known: 1)");
  if (r.mechanism != "objective-perturbation") bad("unknown mechanism");
  if (!(r.sigma > 0)) bad("\"sigma\" must be > 0");
  if (r.b_sha256.size() != 64) bad("\"b_sha256\" must be 64 hex digits");
  return r;
}

}  // namespace lethe::certified
