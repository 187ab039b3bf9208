#include "engine/privacy/dp_record.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/error.h"

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
  // From a file: never quoted back, only the field named. One level deep: the callback
  // refuses anything nested before it is built.
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > 1) throw Error("nested");
      return true;
    });
  } catch (const nlohmann::json::exception&) {
    Fail(where, ": __metadata__[\"lethe_dp\"] is not valid JSON");
  } catch (const Error&) {
    Fail(where, ": __metadata__[\"lethe_dp\"] must be a flat object");
  }
  auto bad = [&](const std::string& what) -> void {
    Fail(where, ": __metadata__[\"lethe_dp\"]: ", what);
  };
  if (!j.is_object()) bad("must be an object");
  DpRecord r;
  for (const auto& [key, v] : j.items()) {
    std::string* text_field = key == "mechanism"    ? &r.mechanism
                              : key == "accountant" ? &r.accountant
                                                    : nullptr;
    double* real = key == "epsilon"            ? &r.epsilon
                   : key == "delta"            ? &r.delta
                   : key == "best_order"       ? &r.best_order
                   : key == "noise_multiplier" ? &r.noise_multiplier
                   : key == "max_grad_norm"    ? &r.max_grad_norm
                   : key == "sample_rate"      ? &r.sample_rate
                   : key == "learning_rate"    ? &r.learning_rate
                   : key == "l2"               ? &r.l2
                                               : nullptr;
    int64_t* integer = key == "steps"      ? &r.steps
                       : key == "epochs"   ? &r.epochs
                       : key == "examples" ? &r.examples
                                           : nullptr;
    if (text_field) {
      if (!v.is_string()) bad("\"" + key + "\" must be a string");
      *text_field = v.get<std::string>();
    } else if (real) {
      if (!v.is_number()) bad("\"" + key + "\" must be a number");
      *real = v.get<double>();
    } else if (integer || key == "accountant_version") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0)
        bad("\"" + key + "\" must be an integer >= 0");
      if (integer)
        *integer = v.get<int64_t>();
      else
        r.accountant_version = static_cast<int>(std::min<int64_t>(v.get<int64_t>(), 1 << 30));
    } else {
      bad("unknown key (known: mechanism, epsilon, delta, accountant, accountant_version, "
          "best_order, noise_multiplier, max_grad_norm, sample_rate, steps, epochs, examples, "
          "learning_rate, l2)");
    }
  }
  return r;
}

}  // namespace lethe::privacy
