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

void CheckKeys(const json& object, const std::set<std::string>& allowed, const std::string& where) {
  for (auto it = object.begin(); it != object.end(); ++it)
    if (!allowed.count(it.key())) Fail(where, ": unknown key \"", Escape(it.key()), "\"");
}

std::string StringField(const json& object, const char* key, const std::string& where) {
  const json& v = object.at(key);
  if (!v.is_string()) Fail(where, ": \"", key, "\" must be a string");
  std::string s = v.get<std::string>();
  if (s.empty()) Fail(where, ": \"", key, "\" must not be empty");
  return s;
}

}  // namespace

ModelSpec ModelSpec::Parse(const std::string& json_text, const std::string& what) {
  const json root = ParseUntrustedJson(json_text, what, "");
  if (!root.is_object()) Fail(what, ": must be a JSON object");
  CheckKeys(root, {"format", "layers", "loss", "l2"}, what);
  if (!root.contains("format") || root["format"] != "lethe/1")
    Fail(what, ": \"format\" must be \"lethe/1\"");
  if (!root.contains("layers") || !root["layers"].is_array() || root["layers"].empty())
    Fail(what, ": \"layers\" must be a non-empty array");
  if (!root.contains("loss") || !root["loss"].is_string())
    Fail(what, ": \"loss\" must be one of cross_entropy, logistic, mse");

  ModelSpec spec;
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

  std::set<std::string> tensor_names;
  bool any_linear = false;
  for (size_t i = 0; i < root["layers"].size(); ++i) {
    const json& layer = root["layers"][i];
    const std::string where = what + ": layer " + std::to_string(i);
    if (!layer.is_object() || !layer.contains("type") || !layer["type"].is_string())
      Fail(where, ": must be an object with a string \"type\"");
    const std::string type = layer["type"].get<std::string>();
    LayerSpec ls;
    if (type == "linear") {
      CheckKeys(layer, {"type", "weight", "bias", "out"}, where);
      ls.type = LayerSpec::Type::kLinear;
      ls.weight = layer.contains("weight") ? StringField(layer, "weight", where)
                                           : std::to_string(i) + ".weight";
      if (layer.contains("bias")) ls.bias = StringField(layer, "bias", where);
      if (layer.contains("out")) {
        if (!layer["out"].is_number_integer() || layer["out"].get<int64_t>() <= 0)
          Fail(where, ": \"out\" must be a positive integer");
        ls.out = layer["out"].get<int64_t>();
      }
      for (const std::string* name : {&ls.weight, &ls.bias})
        if (!name->empty() && !tensor_names.insert(*name).second)
          Fail(where, ": tensor \"", Escape(*name), "\" is used twice");
      any_linear = true;
    } else {
      auto act = ParseActivation(type);
      if (!act)
        Fail(where, ": unknown layer type \"", Escape(type),
             "\" (known: linear, relu, tanh, sigmoid, gelu, softplus, identity)");
      CheckKeys(layer, {"type"}, where);
      ls.type = LayerSpec::Type::kActivation;
      ls.activation = *act;
    }
    spec.layers.push_back(ls);
  }
  if (!any_linear) Fail(what, ": needs at least one linear layer");
  return spec;
}

std::string ModelSpec::ToJson() const {
  json root;
  root["format"] = "lethe/1";
  root["layers"] = json::array();
  for (const LayerSpec& ls : layers) {
    json layer;
    if (ls.type == LayerSpec::Type::kLinear) {
      layer["type"] = "linear";
      layer["weight"] = ls.weight;
      if (!ls.bias.empty()) layer["bias"] = ls.bias;
      if (ls.out > 0) layer["out"] = ls.out;
    } else {
      layer["type"] = Name(ls.activation);
    }
    root["layers"].push_back(layer);
  }
  root["loss"] = Name(loss);
  root["l2"] = l2;
  return root.dump();
}

ModelSpec ReadSpecFile(const std::string& path) { return ModelSpec::Parse(ReadFile(path), path); }

}  // namespace lethe::io
