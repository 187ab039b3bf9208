// lethe inspect MODEL: what a model file holds.
#include <cstdio>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/model.h"
#include "io/sha256.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/sisa_dir.h"
#include "tools/lethe/ledger_history.h"

namespace lethe::cli {
namespace {

// The DP guarantee the model was trained under (engine/privacy/dp_record.h), or that it has
// none on record.
void PrintPrivacy(const Model& model) {
  if (!model.dp) {
    std::cout << "\n  privacy: no differential-privacy guarantee recorded\n";
    return;
  }
  const privacy::DpRecord& r = *model.dp;
  std::cout << "\n  privacy: (epsilon, delta) = (" << Shortest(r.epsilon) << ", "
            << Shortest(r.delta) << ")-DP, " << r.mechanism << " on " << r.examples
            << " examples (adding or removing one)\n    noise multiplier " << Shortest(r.noise_multiplier)
            << ", clip norm " << Shortest(r.max_grad_norm) << ", sample rate "
            << Shortest(r.sample_rate) << ", " << r.steps << " steps (" << r.epochs
            << " epochs), learning rate " << Shortest(r.learning_rate) << ", l2 " << Shortest(r.l2)
            << "\n    accountant " << r.accountant << " v" << r.accountant_version
            << ", best order " << Shortest(r.best_order) << "\n";
}

// Its certified-removal state (engine/certified/certified_record.h), when it has one.
void PrintCertified(const Model& model) {
  if (!model.certified) return;
  const certified::CertifiedRecord& r = *model.certified;
  std::cout << "\n  certified removal: trained on the objective + bᵀθ, b ~ N(0, " << Shortest(r.sigma)
            << "²I) (b secret, kept apart; SHA-256 " << r.b_sha256.substr(0, 16) << "…)\n    "
            << r.loss << ", γ = " << Shortest(r.gamma) << ", l2 = " << Shortest(r.l2) << ", "
            << r.examples_trained << " examples trained, " << r.examples << " now\n    ";
  if (r.removals == 0)
    std::cout << "no removals yet (β = 0)\n";
  else
    std::cout << r.removals << " certified removal(s) of " << r.removed << " example(s): β = "
              << Sci(r.beta) << ", (epsilon, delta) = (" << Shortest(r.epsilon) << ", "
              << Shortest(r.delta) << ") of budget " << Shortest(r.epsilon_budget) << "\n";
}

}  // namespace

int RunInspect(const std::vector<std::string>& args) {
  po::options_description desc("options");
  std::string model_path, spec_path, ledger;
  bool json = false;
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&model_path), "safetensors model (also the first positional argument)")
    ("spec", po::value(&spec_path), "sidecar spec JSON (overrides the embedded one)")
    ("ledger", po::value(&ledger), "also show the model's deletion history in this ledger "
     "(lethe unlearn --ledger)")
    ("json", po::bool_switch(&json), "JSON on stdout");
  po::positional_options_description pos;
  pos.add("model", 1);
  po::variables_map vm;
  if (!Parse(args, desc, &pos, vm, "lethe inspect MODEL [--spec SPEC] [--ledger FILE] [--json]",
             "lethe inspect examples/digits/model.safetensors"))
    return 0;
  Require(vm, "model");
  if (IsEnsembleDir(model_path)) return InspectEnsemble(model_path, json);  // lethe sisa
  const Model model =
      LoadModel(model_path, spec_path.empty() ? std::nullopt : std::optional(spec_path));
  const Architecture& a = model.arch;
  // Read before anything is printed: a broken ledger is one error line, nothing else.
  const std::string sha256 = ledger.empty() ? "" : io::Sha256File(model_path);
  if (!ledger.empty()) LedgerHistory(ledger, sha256);
  if (json) {
    nlohmann::json j;
    j["path"] = model_path;
    j["dtype"] = io::DTypeName(model.dtype);
    j["num_params"] = a.num_params;
    j["input_dim"] = a.input_dim;
    j["input_shape"] = a.input_shape;
    j["num_fixed_values"] = a.constants.size();
    j["output_dim"] = a.output_dim;
    j["loss"] = Name(a.spec.loss);
    j["l2"] = a.spec.l2;
    j["spec"] = nlohmann::json::parse(a.spec.ToJson());
    j["forgotten"] = nlohmann::json::parse(model.forgotten.ToJson());
    j["dp"] = model.dp ? nlohmann::json::parse(model.dp->ToJson()) : nlohmann::json();
    j["certified"] =
        model.certified ? nlohmann::json::parse(model.certified->ToJson()) : nlohmann::json();
    if (!ledger.empty()) j["ledger"] = {{"path", ledger}, {"history", LedgerHistory(ledger, sha256)}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << model_path << "\n  dtype " << io::DTypeName(model.dtype) << ", " << a.num_params
            << " parameters, loss " << Name(a.spec.loss) << ", l2 " << a.spec.l2 << "\n\n";
  std::cout << "  #     layer           output shape      parameters  tensors\n";
  // Depth-first, a residual body indented under its block; fixed tensors (frozen
  // parameters, BatchNorm statistics) marked, as they are not part of θ.
  std::function<void(const std::vector<LayerShape>&, const std::string&, int)> rows =
      [&](const std::vector<LayerShape>& ls, const std::string& prefix, int depth) {
        for (size_t i = 0; i < ls.size(); ++i) {
          const LayerShape& l = ls[i];
          std::string tensors;
          for (const TensorInfo& t : l.tensors)
            tensors += (tensors.empty() ? "" : ", ") + t.name + ShapeText(t.shape) +
                       (t.trainable ? "" : " (fixed)");
          const std::string index = prefix + std::to_string(i);
          char line[512];
          std::snprintf(line, sizeof line, "  %-5s %-15s %-16s  %10lld  %s", index.c_str(),
                        (std::string(2 * depth, ' ') + l.type() + (l.frozen ? "*" : "")).c_str(),
                        ShapeText(l.out).c_str(), static_cast<long long>(l.num_params()),
                        tensors.c_str());
          std::cout << line << "\n";
          rows(l.body, index + ".", depth + 1);
        }
      };
  rows(a.layers, "", 0);
  std::cout << "  input shape " << ShapeText(a.input_shape);
  if (!a.constants.empty())
    std::cout << "; " << a.constants.size()
              << " fixed values, not in θ (* frozen: not trained, patched or in l2)";
  std::cout << "\n";
  std::cout << "\n  spec: " << a.spec.ToJson() << "\n";
  PrintPrivacy(model);
  PrintCertified(model);
  const ForgetHistory& f = model.forgotten;
  if (f.empty()) {
    std::cout << "\n  forgotten: nothing (no deletion request recorded)\n";
    if (!ledger.empty()) PrintLedgerHistory(ledger, sha256);
    return 0;
  }
  std::cout << "\n  forgotten: " << f.ids.size() << " id(s) in " << f.requests.size()
            << " deletion request(s); every command that takes training data leaves them out\n";
  std::cout << "    #  utc                   method           k  parent sha256\n";
  for (size_t i = 0; i < f.requests.size(); ++i) {
    const ForgetRequest& r = f.requests[i];
    char line[256];
    std::snprintf(line, sizeof line, "    %-2zu %-21s %-12s %5lld  %.16s", i + 1, r.utc.c_str(),
                  r.method.c_str(), static_cast<long long>(r.k),
                  r.parent_sha256.empty() ? "-" : r.parent_sha256.c_str());
    std::cout << line << "\n";
  }
  std::string ids;
  for (size_t i = 0; i < f.ids.size() && i < 20; ++i) ids += (i ? "," : "") + std::to_string(f.ids[i]);
  std::cout << "    ids: " << ids << (f.ids.size() > 20 ? ",… (--json lists all)" : "") << "\n";
  if (!ledger.empty()) PrintLedgerHistory(ledger, sha256);
  return 0;
}

}  // namespace lethe::cli
