#include "engine/layers/plan.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/quote.h"
#include "io/untrusted_json.h"

namespace lethe::layers {

using nlohmann::json;

struct SpecKeys::Impl {
  json keys;
  std::set<std::string> known;
};

SpecKeys::SpecKeys(const io::LayerSpec& spec, std::string where)
    : impl_(std::make_unique<Impl>()), where_(std::move(where)) {
  // The keys were parsed from (and are re-dumped by) io/spec.cc; a spec built in code
  // could hold anything, so this is checked too.
  impl_->keys = json::parse(spec.keys, nullptr, /*allow_exceptions=*/false);
  if (!impl_->keys.is_object()) Fail("the layer's keys are not a JSON object");
}

SpecKeys::~SpecKeys() = default;

std::optional<std::string> SpecKeys::String(const std::string& key) {
  impl_->known.insert(key);
  if (!impl_->keys.contains(key)) return std::nullopt;
  const json& v = impl_->keys[key];
  if (!v.is_string()) Fail("\"", key, "\" must be a string, not ", io::JsonKind(v));
  std::string s = v.get<std::string>();
  if (s.empty()) Fail("\"", key, "\" must not be empty");
  return s;
}

std::optional<int64_t> SpecKeys::Int(const std::string& key, int64_t min, int64_t max) {
  impl_->known.insert(key);
  if (!impl_->keys.contains(key)) return std::nullopt;
  const json& v = impl_->keys[key];
  // nlohmann keeps integers beyond int64 (but within uint64) as unsigned: refuse those too.
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(max)))
    Fail("\"", key, "\" must be an integer in [", min, ", ", max, "]");
  const int64_t x = v.get<int64_t>();
  if (x < min || x > max) Fail("\"", key, "\" = ", x, ": must be in [", min, ", ", max, "]");
  return x;
}

std::optional<std::pair<int64_t, int64_t>> SpecKeys::IntOrPair(const std::string& key,
                                                               int64_t min, int64_t max) {
  impl_->known.insert(key);
  if (!impl_->keys.contains(key)) return std::nullopt;
  const json& v = impl_->keys[key];
  auto element = [&](const json& e) {
    if (!e.is_number_integer() || (e.is_number_unsigned() && e.get<uint64_t>() > uint64_t(max)) ||
        e.get<int64_t>() < min || e.get<int64_t>() > max)
      Fail("\"", key, "\" must be an integer or a pair [a, b] of integers in [", min, ", ", max,
           "]");
    return e.get<int64_t>();
  };
  if (v.is_array()) {
    if (v.size() != 2)
      Fail("\"", key, "\" must be an integer or a pair [a, b] of integers in [", min, ", ", max,
           "]");
    return std::make_pair(element(v[0]), element(v[1]));
  }
  const int64_t k = element(v);
  return std::make_pair(k, k);
}

std::optional<double> SpecKeys::Number(const std::string& key, double min, double max) {
  impl_->known.insert(key);
  if (!impl_->keys.contains(key)) return std::nullopt;
  const json& v = impl_->keys[key];
  if (!v.is_number()) Fail("\"", key, "\" must be a number");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < min || x > max)
    Fail("\"", key, "\" = ", x, ": must be in [", min, ", ", max, "]");
  return x;
}

std::optional<bool> SpecKeys::Bool(const std::string& key) {
  impl_->known.insert(key);
  if (!impl_->keys.contains(key)) return std::nullopt;
  const json& v = impl_->keys[key];
  if (!v.is_boolean()) Fail("\"", key, "\" must be true or false");
  return v.get<bool>();
}

std::optional<std::string> SpecKeys::Choice(const std::string& key,
                                            const std::vector<std::string>& allowed) {
  std::optional<std::string> s = String(key);
  if (!s) return s;
  std::string list;
  for (const std::string& a : allowed) {
    if (*s == a) return s;
    list += (list.empty() ? "" : ", ") + a;
  }
  Fail("\"", key, "\" = ", Quote(*s), ": must be one of ", list);
}

void SpecKeys::SetInt(const std::string& key, int64_t value) {
  impl_->known.insert(key);
  impl_->keys[key] = value;
}

void SpecKeys::SetString(const std::string& key, const std::string& value) {
  impl_->known.insert(key);
  impl_->keys[key] = value;
}

void SpecKeys::Done() const {
  std::string known;
  for (const std::string& k : impl_->known)  // "frozen" is every layer's, documented apart
    if (k != "frozen") known += (known.empty() ? "" : ", ") + k;
  for (auto it = impl_->keys.begin(); it != impl_->keys.end(); ++it)
    if (!impl_->known.count(it.key()))
      Fail("unknown key \"", Escape(it.key()), "\" (this layer type takes: ",
           known.empty() ? "no keys" : known, ")");
}

std::string SpecKeys::Dump() const { return impl_->keys.dump(); }

double* Initializer::Values(const TensorInfo& t) {
  std::vector<double>& v = t.trainable ? theta_ : constants_;
  LETHE_CHECK(t.offset >= 0 && t.offset + t.size() <= static_cast<int64_t>(v.size()));
  return v.data() + t.offset;
}

void Initializer::Uniform(const TensorInfo& t, double bound) {
  double* v = Values(t);
  for (int64_t k = 0; k < t.size(); ++k) v[k] = (2 * Uniform01() - 1) * bound;
}

void Initializer::Normal(const TensorInfo& t, double stddev) {
  double* v = Values(t);
  // Box–Muller: two uniforms give two independent standard normals. 1 − u ∈ (0, 1], so the
  // logarithm is finite.
  for (int64_t k = 0; k < t.size(); k += 2) {
    const double r = std::sqrt(-2 * std::log(1 - Uniform01())), a = 2 * M_PI * Uniform01();
    v[k] = stddev * r * std::cos(a);
    if (k + 1 < t.size()) v[k + 1] = stddev * r * std::sin(a);
  }
}

void Initializer::Fill(const TensorInfo& t, double value) {
  double* v = Values(t);
  std::fill(v, v + t.size(), value);
}

}  // namespace lethe::layers
