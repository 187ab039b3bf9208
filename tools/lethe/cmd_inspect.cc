// lethe inspect MODEL: what a model file holds.
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/model.h"
#include "tools/lethe/commands.h"

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

}  // namespace

int RunInspect(const std::vector<std::string>& args) {
  po::options_description desc("options");
  std::string model_path, spec_path;
  bool json = false;
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&model_path), "safetensors model (also the first positional argument)")
    ("spec", po::value(&spec_path), "sidecar spec JSON (overrides the embedded one)")
    ("json", po::bool_switch(&json), "JSON on stdout");
  po::positional_options_description pos;
  pos.add("model", 1);
  po::variables_map vm;
  if (!Parse(args, desc, &pos, vm, "lethe inspect MODEL [--spec SPEC] [--json]",
             "lethe inspect examples/digits/model.safetensors"))
    return 0;
  Require(vm, "model");
  const Model model =
      LoadModel(model_path, spec_path.empty() ? std::nullopt : std::optional(spec_path));
  const Architecture& a = model.arch;
  if (json) {
    nlohmann::json j;
    j["path"] = model_path;
    j["dtype"] = io::DTypeName(model.dtype);
    j["num_params"] = a.num_params;
    j["input_dim"] = a.input_dim;
    j["output_dim"] = a.output_dim;
    j["loss"] = Name(a.spec.loss);
    j["l2"] = a.spec.l2;
    j["spec"] = nlohmann::json::parse(a.spec.ToJson());
    j["forgotten"] = nlohmann::json::parse(model.forgotten.ToJson());
    j["dp"] = model.dp ? nlohmann::json::parse(model.dp->ToJson()) : nlohmann::json();
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << model_path << "\n  dtype " << io::DTypeName(model.dtype) << ", " << a.num_params
            << " parameters, loss " << Name(a.spec.loss) << ", l2 " << a.spec.l2 << "\n\n";
  std::cout << "  #  layer      shape             parameters  tensors\n";
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerShape& l = a.layers[i];
    char line[256];
    if (l.is_linear()) {
      const int64_t params = l.out * l.in + (l.bias_offset >= 0 ? l.out : 0);
      std::string tensors = a.spec.layers[i].weight;
      if (!a.spec.layers[i].bias.empty()) tensors += ", " + a.spec.layers[i].bias;
      std::snprintf(line, sizeof line, "  %-2zu linear     %6lld -> %-6lld  %10lld  %s", i,
                    static_cast<long long>(l.in), static_cast<long long>(l.out),
                    static_cast<long long>(params), tensors.c_str());
    } else {
      std::snprintf(line, sizeof line, "  %-2zu %-10s %6lld            %10d", i, Name(l.activation),
                    static_cast<long long>(l.in), 0);
    }
    std::cout << line << "\n";
  }
  std::cout << "\n  spec: " << a.spec.ToJson() << "\n";
  PrintPrivacy(model);
  const ForgetHistory& f = model.forgotten;
  if (f.empty()) {
    std::cout << "\n  forgotten: nothing (no deletion request recorded)\n";
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
  return 0;
}

}  // namespace lethe::cli
