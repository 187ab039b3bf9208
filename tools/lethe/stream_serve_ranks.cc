#include "tools/lethe/stream_serve_ranks.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/sha256.h"
#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {

std::string FromRoot(const std::function<std::string()>& f) {
  if (!Distributed()) return f();
  std::string value = Collectively([&] { return Comm().rank() == 0 ? f() : std::string(); });
  Comm().Broadcast(&value, 0);
  return value;
}

bool TryOnRoot(const std::function<std::string()>& f, std::string* result) {
  bool ok = true;
  if (Comm().rank() == 0) {
    try {
      *result = f();
    } catch (const Error& e) {
      ok = false;
      *result = e.what();
    }
  }
  if (!Distributed()) return ok;
  // One message: '1' or '0', then the value or the error.
  std::string message = Comm().rank() == 0 ? std::string(ok ? "1" : "0") + *result : "";
  Comm().Broadcast(&message, 0);
  *result = message.substr(1);
  return message[0] == '1';
}

void CheckSameOnEveryRank(const std::vector<double>& values, const std::string& what) {
  if (!Distributed()) return;
  const std::string mine = io::Sha256Hex(values.data(), values.size() * sizeof(double));
  std::string root = mine;
  Comm().Broadcast(&root, 0);
  Collectively([&] {
    if (mine != root)
      Fail(what, ": process ", Comm().rank(), " holds other values than process 0: the "
           "ranks diverged (do all processes read the same files, and run the same lethe "
           "build and backend? docs/distributed.md); nothing written");
  });
}

bool LoadDenseCacheKeyOnRoot(const std::string& model_path, const std::string& model_sha256,
                             const std::string& data_sha256, const DenseCacheFit& fit,
                             KeptGradient* gradient, std::vector<DenseFactorRef>* factors,
                             std::string* note) {
  if (!Distributed())
    return LoadDenseCacheKey(model_path, model_sha256, data_sha256, fit, gradient, factors, note);
  bool ok = false;
  // The key's fields as JSON (doubles print as the shortest string that reads back as the
  // same double), the gradient's p doubles as raw bytes.
  std::string key, bytes;
  if (Comm().rank() == 0) {
    ok = LoadDenseCacheKey(model_path, model_sha256, data_sha256, fit, gradient, factors, note);
    nlohmann::json j{{"ok", ok}, {"note", *note}, {"objective", gradient->objective},
                     {"examples", gradient->examples}, {"factors", nlohmann::json::array()}};
    for (const DenseFactorRef& r : *factors)
      j["factors"].push_back({{"dtype", r.dtype}, {"path", r.path}, {"sha256", r.sha256},
                              {"bytes", r.bytes}, {"age", r.age}});
    key = j.dump();
    bytes.resize(gradient->gradient.size() * sizeof(double));
    if (!bytes.empty()) std::memcpy(bytes.data(), gradient->gradient.data(), bytes.size());
  }
  Comm().Broadcast(&key, 0);
  Comm().Broadcast(&bytes, 0);
  if (Comm().rank() == 0) return ok;
  const nlohmann::json j = nlohmann::json::parse(key);
  *note = j["note"].get<std::string>();
  gradient->objective = j["objective"].get<double>();
  gradient->examples = j["examples"].get<int64_t>();
  gradient->gradient.resize(bytes.size() / sizeof(double));
  if (!bytes.empty()) std::memcpy(gradient->gradient.data(), bytes.data(), bytes.size());
  factors->clear();
  for (const auto& r : j["factors"])
    factors->push_back({r["dtype"].get<std::string>(), r["path"].get<std::string>(),
                        r["sha256"].get<std::string>(), r["bytes"].get<int64_t>(),
                        r["age"].get<int64_t>()});
  return j["ok"].get<bool>();
}

template <typename T>
std::unique_ptr<DensePreconditioner<T>> LoadDenseFactorOnRoot(const DenseFactorRef& ref,
                                                              kernels::Backend<T>& backend,
                                                              const DenseCacheFit& fit,
                                                              std::string* note) {
  if (!Distributed()) return LoadDenseFactor<T>(ref, backend, fit, note);
  std::unique_ptr<DensePreconditioner<T>> pre;
  std::string payload;  // "1" + the p² values, or "0" + rank 0's note
  if (Comm().rank() == 0) {
    pre = LoadDenseFactor<T>(ref, backend, fit, note);
    if (pre) {
      const std::vector<T> host = pre->Factor();
      payload.resize(1 + host.size() * sizeof(T));
      payload[0] = '1';
      std::memcpy(payload.data() + 1, host.data(), host.size() * sizeof(T));
    } else {
      payload = "0" + *note;
    }
  }
  Comm().Broadcast(&payload, 0);
  if (Comm().rank() == 0) return pre;
  if (payload[0] != '1') {
    *note = payload.substr(1);
    return nullptr;
  }
  note->clear();
  const int64_t p = fit.num_params;
  LETHE_CHECK(payload.size() == 1 + static_cast<size_t>(p * p) * sizeof(T));
  std::vector<T> host(static_cast<size_t>(p * p));
  std::memcpy(host.data(), payload.data() + 1, host.size() * sizeof(T));
  return std::make_unique<DensePreconditioner<T>>(backend, host, p, fit.curvature, fit.damping,
                                                  fit.l2);
}

template std::unique_ptr<DensePreconditioner<float>> LoadDenseFactorOnRoot<float>(
    const DenseFactorRef&, kernels::Backend<float>&, const DenseCacheFit&, std::string*);
template std::unique_ptr<DensePreconditioner<double>> LoadDenseFactorOnRoot<double>(
    const DenseFactorRef&, kernels::Backend<double>&, const DenseCacheFit&, std::string*);

}  // namespace lethe::cli
