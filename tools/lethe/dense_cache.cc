#include "tools/lethe/dense_cache.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "io/sha256.h"

namespace lethe::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kFormat = "lethe-dense/1";

std::string Num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

const std::string& Get(const std::map<std::string, std::string>& m, const std::string& key) {
  const auto it = m.find(key);
  if (it == m.end()) Fail("no \"", key, "\"");
  return it->second;
}

double GetNum(const std::map<std::string, std::string>& m, const std::string& key) {
  const std::string& s = Get(m, key);
  size_t used = 0;
  const double v = std::stod(s, &used);
  if (used != s.size() || !std::isfinite(v)) Fail("\"", key, "\" is not a finite number");
  return v;
}

int64_t GetInt(const std::map<std::string, std::string>& m, const std::string& key) {
  const std::string& s = Get(m, key);
  size_t used = 0;
  const long long v = std::stoll(s, &used);
  if (used != s.size() || v < 0) Fail("\"", key, "\" is not a count");
  return v;
}

const char* CurvatureName(Curvature c) { return c == Curvature::kHessian ? "hessian" : "gauss-newton"; }

std::string Short(const std::string& sha) { return sha.substr(0, 16) + "…"; }

}  // namespace

std::string DenseCacheKeyPath(const std::string& model_path) { return model_path + ".lethe-dense"; }
std::string DenseFactorPath(const std::string& model_path, const std::string& dtype) {
  return model_path + ".lethe-dense-" + dtype;
}

bool LoadDenseCacheKey(const std::string& model_path, const std::string& model_sha256,
                       const std::string& data_sha256, const DenseCacheFit& fit,
                       KeptGradient* gradient, std::vector<DenseFactorRef>* factors,
                       std::string* note) {
  note->clear();
  gradient->gradient.clear();
  factors->clear();
  const std::string path = DenseCacheKeyPath(model_path);
  std::error_code ec;
  if (!fs::exists(path, ec)) return false;
  io::SafetensorsFile f;
  try {
    f = io::ReadSafetensors(path);
    const auto& m = f.metadata;
    if (Get(m, "format") != kFormat) Fail("not a ", kFormat, " cache");
    // Keys first: a cache of another model or other data says so, whatever else it holds.
    if (Get(m, "model_sha256") != model_sha256) {
      *note = path + ": written for another model (sha256 " + Short(Get(m, "model_sha256")) +
              ", not " + Short(model_sha256) + "): ignored";
      return false;
    }
    if (Get(m, "data_sha256") != data_sha256) {
      *note = path + ": computed on other training data (sha256 " + Short(Get(m, "data_sha256")) +
              ", not " + Short(data_sha256) + "): ignored";
      return false;
    }
    if (GetInt(m, "num_params") != fit.num_params || GetNum(m, "l2") != fit.l2 ||
        GetNum(m, "damping") != fit.damping || Get(m, "curvature") != CurvatureName(fit.curvature)) {
      *note = path + ": computed for another p, l2, damping or curvature: ignored";
      return false;
    }
    if (const io::Array* g = f.Find("kept_gradient")) {
      if (g->dtype != io::DType::kF64 || g->NumElements() != fit.num_params)
        Fail("kept_gradient is not ", fit.num_params, " f64 values");
      gradient->gradient = g->ToDouble("kept_gradient");
      gradient->objective = GetNum(m, "kept_objective");
      gradient->examples = GetInt(m, "kept_examples");
      for (double v : gradient->gradient)
        if (!std::isfinite(v)) Fail("kept_gradient holds NaN or Inf");
    }
    const int64_t count = GetInt(m, "factors");
    if (count > 2) Fail("more than two factors");
    const fs::path dir = fs::path(model_path).parent_path();
    for (int64_t i = 0; i < count; ++i) {
      const std::string p = "factor" + std::to_string(i) + ".";
      DenseFactorRef r;
      r.dtype = Get(m, p + "dtype");
      if (r.dtype != "f32" && r.dtype != "f64") Fail(p, "dtype is not f32 or f64");
      r.path = (dir / Get(m, p + "file")).string();
      r.sha256 = Get(m, p + "sha256");
      r.bytes = GetInt(m, p + "bytes");
      r.age = GetInt(m, p + "age");
      factors->push_back(r);
    }
  } catch (const std::exception& e) {  // lethe::Error, or std::stod's
    gradient->gradient.clear();
    factors->clear();
    *note = path + ": unreadable cache (" + e.what() + "): ignored";
    return false;
  }
  return true;
}

template <typename T>
std::unique_ptr<DensePreconditioner<T>> LoadDenseFactor(const DenseFactorRef& ref,
                                                        kernels::Backend<T>& backend,
                                                        const DenseCacheFit& fit, std::string* note) {
  note->clear();
  const int64_t p = fit.num_params;
  const int64_t bytes = p * p * static_cast<int64_t>(sizeof(T));
  auto refuse = [&](const std::string& why) {
    *note = ref.path + ": " + why + ": the dense preconditioner is rebuilt";
    return nullptr;
  };
  if (ref.bytes != bytes) return refuse("the key names " + std::to_string(ref.bytes) +
                                        " bytes, not p² · " + std::to_string(sizeof(T)) + " = " +
                                        std::to_string(bytes));
  std::error_code ec;
  const auto size = fs::file_size(ref.path, ec);
  if (ec) return refuse("cannot read (" + ec.message() + ")");
  if (static_cast<int64_t>(size) != bytes)
    return refuse("holds " + std::to_string(size) + " bytes, not " + std::to_string(bytes) +
                  " (truncated?)");
  std::vector<T> host(static_cast<size_t>(p * p));
  {
    std::ifstream in(ref.path, std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(host.data()), bytes)) return refuse("cannot read");
  }
  if (io::Sha256Hex(host.data(), static_cast<size_t>(bytes)) != ref.sha256)
    return refuse("its SHA-256 is not the one its key names (changed or corrupted)");
  // A factor written by lethe is finite with a positive diagonal (a Cholesky factor of a
  // positive definite matrix); the hash already vouches for that, this keeps a forged key
  // from feeding CG a NaN.
  for (int64_t i = 0; i < p; ++i)
    if (!(host[static_cast<size_t>(i * p + i)] > 0)) return refuse("a diagonal entry is not positive");
  for (T v : host)
    if (!std::isfinite(static_cast<double>(v))) return refuse("holds NaN or Inf");
  return std::make_unique<DensePreconditioner<T>>(backend, host, p, fit.curvature, fit.damping,
                                                  fit.l2);
}

template <typename T>
DenseFactorRef SaveDenseFactor(const std::string& path, const std::vector<T>& factor) {
  DenseFactorRef r;
  r.dtype = sizeof(T) == sizeof(float) ? "f32" : "f64";
  r.path = path;
  r.bytes = static_cast<int64_t>(factor.size() * sizeof(T));
  r.sha256 = io::Sha256Hex(factor.data(), factor.size() * sizeof(T));
  r.age = 1;
  io::AtomicFile file(path);
  file.Write(factor.data(), factor.size() * sizeof(T));
  file.Commit();
  return r;
}

void SaveDenseCacheKey(const std::string& model_path, const std::string& model_sha256,
                       const std::string& data_sha256, const DenseCacheFit& fit,
                       const KeptGradient* gradient, const std::vector<DenseFactorRef>& factors) {
  io::SafetensorsFile f;
  auto& m = f.metadata;
  m["format"] = kFormat;
  m["model_sha256"] = model_sha256;
  m["data_sha256"] = data_sha256;
  m["num_params"] = std::to_string(fit.num_params);
  m["l2"] = Num(fit.l2);
  m["damping"] = Num(fit.damping);
  m["curvature"] = CurvatureName(fit.curvature);
  if (gradient && !gradient->gradient.empty()) {
    m["kept_objective"] = Num(gradient->objective);
    m["kept_examples"] = std::to_string(gradient->examples);
    f.tensors.emplace_back("kept_gradient",
                           io::Array::FromDouble(gradient->gradient, {fit.num_params}, io::DType::kF64));
  }
  // The factor files relative to the key's directory, so that the stream's directory can move.
  const fs::path dir = fs::absolute(fs::path(model_path)).parent_path();
  m["factors"] = std::to_string(factors.size());
  for (size_t i = 0; i < factors.size(); ++i) {
    const DenseFactorRef& r = factors[i];
    const std::string p = "factor" + std::to_string(i) + ".";
    m[p + "dtype"] = r.dtype;
    m[p + "file"] = fs::absolute(fs::path(r.path)).lexically_relative(dir).string();
    m[p + "sha256"] = r.sha256;
    m[p + "bytes"] = std::to_string(r.bytes);
    m[p + "age"] = std::to_string(r.age);
  }
  io::WriteSafetensors(DenseCacheKeyPath(model_path), f);
}

template std::unique_ptr<DensePreconditioner<float>> LoadDenseFactor<float>(
    const DenseFactorRef&, kernels::Backend<float>&, const DenseCacheFit&, std::string*);
template std::unique_ptr<DensePreconditioner<double>> LoadDenseFactor<double>(
    const DenseFactorRef&, kernels::Backend<double>&, const DenseCacheFit&, std::string*);
template DenseFactorRef SaveDenseFactor<float>(const std::string&, const std::vector<float>&);
template DenseFactorRef SaveDenseFactor<double>(const std::string&, const std::vector<double>&);

}  // namespace lethe::cli
