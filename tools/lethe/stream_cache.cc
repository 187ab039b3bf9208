#include "tools/lethe/stream_cache.h"

#include <filesystem>

#include "common/error.h"
#include "io/safetensors.h"

namespace lethe::cli {
namespace {

constexpr const char* kFormat = "lethe-cache/1 kfac";

std::string Num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

double ParseNum(const std::map<std::string, std::string>& m, const std::string& key) {
  const auto it = m.find(key);
  if (it == m.end()) Fail("no \"", key, "\"");
  size_t used = 0;
  const double v = std::stod(it->second, &used);
  if (used != it->second.size()) Fail("\"", key, "\" is not a number");
  return v;
}

std::string Get(const std::map<std::string, std::string>& m, const std::string& key) {
  const auto it = m.find(key);
  if (it == m.end()) Fail("no \"", key, "\"");
  return it->second;
}

// The cache's contents, or a lethe::Error saying what is wrong with them.
StreamCache Parse(const io::SafetensorsFile& f) {
  const auto& m = f.metadata;
  if (Get(m, "format") != kFormat) Fail("not a ", kFormat, " cache");
  StreamCache c;
  c.origin_sha256 = Get(m, "origin_sha256");
  c.age = static_cast<int64_t>(ParseNum(m, "age"));
  KfacState& s = c.kfac;
  s.num_params = static_cast<int64_t>(ParseNum(m, "num_params"));
  s.damping = ParseNum(m, "damping");
  s.l2 = ParseNum(m, "l2");
  s.uncovered_scale = ParseNum(m, "uncovered_scale");
  const int64_t layers = static_cast<int64_t>(ParseNum(m, "layers"));
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "layer" + std::to_string(i) + ".";
    KfacState::Layer l;
    l.block.out = static_cast<int64_t>(ParseNum(m, p + "out"));
    l.block.in = static_cast<int64_t>(ParseNum(m, p + "in"));
    l.block.weight_offset = static_cast<int64_t>(ParseNum(m, p + "weight_offset"));
    l.block.bias_offset = static_cast<int64_t>(ParseNum(m, p + "bias_offset"));
    l.k = static_cast<int64_t>(ParseNum(m, p + "k"));
    for (auto [name, v] : {std::pair{"out_vectors", &l.out_vectors}, {"in_vectors", &l.in_vectors},
                           {"pivots", &l.pivots}, {"multipliers", &l.multipliers}}) {
      const io::Array* a = f.Find(p + name);
      if (!a || a->dtype != io::DType::kF64) Fail("no f64 tensor ", p, name);
      *v = a->ToDouble(p + name);
    }
    s.layers.push_back(std::move(l));
  }
  return c;
}

}  // namespace

std::string StreamCachePath(const std::string& model_path) { return model_path + ".lethe-cache"; }

std::optional<StreamCache> LoadStreamCache(const std::string& model_path,
                                           const std::string& model_sha256,
                                           const std::string& data_sha256, int64_t max_age,
                                           std::string* note) {
  note->clear();
  const std::string path = StreamCachePath(model_path);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  // The cache is an optimisation: whatever is wrong with it costs only its use.
  io::SafetensorsFile f;
  StreamCache c;
  try {
    f = io::ReadSafetensors(path);
    c = Parse(f);
  } catch (const std::exception& e) {  // lethe::Error, or std::stod's
    *note = path + ": unreadable cache (" + e.what() + "): ignored";
    return std::nullopt;
  }
  const std::string model_key = f.metadata.count("model_sha256") ? f.metadata.at("model_sha256") : "";
  const std::string data_key = f.metadata.count("data_sha256") ? f.metadata.at("data_sha256") : "";
  if (model_key != model_sha256) {
    *note = path + ": written for another model (sha256 " + model_key.substr(0, 16) + "…, not " +
            model_sha256.substr(0, 16) + "…): ignored";
    return std::nullopt;
  }
  if (data_key != data_sha256) {
    *note = path + ": computed on other training data (sha256 " + data_key.substr(0, 16) +
            "…, not " + data_sha256.substr(0, 16) + "…): ignored";
    return std::nullopt;
  }
  if (c.age >= max_age) {
    *note = path + ": " + std::to_string(c.age) + " requests old (--cache-max-age " +
            std::to_string(max_age) + "): recomputed";
    return std::nullopt;
  }
  return c;
}

void SaveStreamCache(const std::string& model_path, const std::string& model_sha256,
                     const std::string& data_sha256, const StreamCache& c) {
  io::SafetensorsFile f;
  auto& m = f.metadata;
  m["format"] = kFormat;
  m["model_sha256"] = model_sha256;
  m["data_sha256"] = data_sha256;
  m["origin_sha256"] = c.origin_sha256;
  m["age"] = std::to_string(c.age);
  const KfacState& s = c.kfac;
  m["num_params"] = std::to_string(s.num_params);
  m["damping"] = Num(s.damping);
  m["l2"] = Num(s.l2);
  m["uncovered_scale"] = Num(s.uncovered_scale);
  m["layers"] = std::to_string(s.layers.size());
  for (size_t i = 0; i < s.layers.size(); ++i) {
    const KfacState::Layer& l = s.layers[i];
    const std::string p = "layer" + std::to_string(i) + ".";
    m[p + "out"] = std::to_string(l.block.out);
    m[p + "in"] = std::to_string(l.block.in);
    m[p + "weight_offset"] = std::to_string(l.block.weight_offset);
    m[p + "bias_offset"] = std::to_string(l.block.bias_offset);
    m[p + "k"] = std::to_string(l.k);
    const int64_t out = l.block.out;
    f.tensors.emplace_back(p + "out_vectors", io::Array::FromDouble(l.out_vectors, {out, out}, io::DType::kF64));
    f.tensors.emplace_back(p + "in_vectors", io::Array::FromDouble(l.in_vectors, {l.k, l.k}, io::DType::kF64));
    f.tensors.emplace_back(p + "pivots", io::Array::FromDouble(l.pivots, {out, l.k}, io::DType::kF64));
    f.tensors.emplace_back(p + "multipliers", io::Array::FromDouble(l.multipliers, {out, l.k}, io::DType::kF64));
  }
  io::WriteSafetensors(StreamCachePath(model_path), f);
}

}  // namespace lethe::cli
