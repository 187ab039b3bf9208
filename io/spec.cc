#include "io/spec.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "common/quote.h"
#include "io/atomic_file.h"
#include "io/untrusted_json.h"

namespace lethe::io {
namespace {

using nlohmann::json;

// Residual bodies nest; each level is two JSON levels (the object and its "layers"
// array), and ParseUntrustedJson bounds JSON nesting at 16, so this is never reached by a
// parsed file. It bounds specs built in code too.
constexpr int kMaxBodyDepth = 8;
constexpr int64_t kMaxInputDims = 4;

void CheckKeys(const json& object, const std::set<std::string>& allowed, const std::string& where) {
  for (auto it = object.begin(); it != object.end(); ++it)
    if (!allowed.count(it.key())) Fail(where, ": unknown key \"", Escape(it.key()), "\"");
}

LayerSpec ParseLayer(const json& layer, const std::string& where, int depth) {
  if (!layer.is_object() || !layer.contains("type") || !layer["type"].is_string())
    Fail(where, ": must be an object with a string \"type\"");
  LayerSpec ls;
  ls.type = layer["type"].get<std::string>();
  if (ls.type.empty()) Fail(where, ": \"type\" must not be empty");
  json keys = json::object();
  for (auto it = layer.begin(); it != layer.end(); ++it) {
    if (it.key() == "type") continue;
    if (it.key() == "layers") {
      if (depth >= kMaxBodyDepth) Fail(where, ": \"layers\" nest deeper than ", kMaxBodyDepth);
      if (!it->is_array()) Fail(where, ": \"layers\" must be an array of layers");
      ls.has_body = true;
      for (size_t i = 0; i < it->size(); ++i)
        ls.body.push_back(ParseLayer((*it)[i], where + "." + std::to_string(i), depth + 1));
      continue;
    }
    keys[it.key()] = *it;
  }
  ls.keys = keys.dump();
  return ls;
}

json LayerJson(const LayerSpec& ls) {
  json layer = json::parse(ls.keys);
  layer["type"] = ls.type;
  if (ls.has_body || !ls.body.empty()) {
    layer["layers"] = json::array();
    for (const LayerSpec& b : ls.body) layer["layers"].push_back(LayerJson(b));
  }
  return layer;
}

}  // namespace

LayerSpec LayerSpec::Linear(const std::string& weight, const std::string& bias, int64_t out) {
  json keys = json::object();
  keys["weight"] = weight;
  if (!bias.empty()) keys["bias"] = bias;
  if (out > 0) keys["out"] = out;
  return Of("linear", keys.dump());
}

LayerSpec LayerSpec::Of(const std::string& type, const std::string& keys) {
  LayerSpec ls;
  ls.type = type;
  ls.keys = keys;
  return ls;
}

ModelSpec ModelSpec::Parse(const std::string& json_text, const std::string& what) {
  const json root = ParseUntrustedJson(json_text, what, "");
  if (!root.is_object()) Fail(what, ": must be a JSON object");
  CheckKeys(root, {"format", "input", "layers", "loss", "l2"}, what);
  if (!root.contains("format") || root["format"] != "lethe/1")
    Fail(what, ": \"format\" must be \"lethe/1\"");
  if (!root.contains("layers") || !root["layers"].is_array() || root["layers"].empty())
    Fail(what, ": \"layers\" must be a non-empty array");
  if (!root.contains("loss") || !root["loss"].is_string())
    Fail(what, ": \"loss\" must be one of cross_entropy, logistic, mse");

  ModelSpec spec;
  spec.source = what;
  auto loss = ParseLoss(root["loss"].get<std::string>());
  if (!loss)
    Fail(what, ": unknown loss \"", Escape(root["loss"].get<std::string>()),
         "\" (known: cross_entropy, logistic, mse)");
  spec.loss = *loss;
  if (root.contains("l2")) {
    if (!root["l2"].is_number()) Fail(what, ": \"l2\" must be a number");
    spec.l2 = root["l2"].get<double>();
    if (!std::isfinite(spec.l2) || spec.l2 < 0) Fail(what, ": \"l2\" = ", spec.l2, ": must be >= 0");
  }
  if (root.contains("input")) {
    const json& in = root["input"];
    if (!in.is_array() || in.empty() || static_cast<int64_t>(in.size()) > kMaxInputDims)
      Fail(what, ": \"input\" must be an array of 1 to ", kMaxInputDims,
           " positive integers (one example's shape, e.g. [C, H, W])");
    for (const json& d : in) {
      if (!d.is_number_integer() || d.get<int64_t>() <= 0 || d.get<int64_t>() > (int64_t{1} << 31))
        Fail(what, ": \"input\" must hold positive integers up to 2^31");
      spec.input.push_back(d.get<int64_t>());
    }
  }
  for (size_t i = 0; i < root["layers"].size(); ++i)
    spec.layers.push_back(ParseLayer(root["layers"][i], what + ": layer " + std::to_string(i), 0));
  return spec;
}

std::string ModelSpec::ToJson() const {
  json root;
  root["format"] = "lethe/1";
  if (!input.empty()) root["input"] = input;
  root["layers"] = json::array();
  for (const LayerSpec& ls : layers) root["layers"].push_back(LayerJson(ls));
  root["loss"] = Name(loss);
  root["l2"] = l2;
  return root.dump();
}

ModelSpec ReadSpecFile(const std::string& path) { return ModelSpec::Parse(ReadFile(path), path); }

}  // namespace lethe::io
