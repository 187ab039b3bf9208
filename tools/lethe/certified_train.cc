#include "tools/lethe/certified_train.h"

#include <cstring>
#include <filesystem>
#include <sys/stat.h>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "engine/certified/perturbation.h"
#include "engine/certified/removal_bound.h"
#include "engine/objective.h"
#include "io/atomic_file.h"
#include "io/npy.h"
#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {

void CertifiedTrainFlags::Add(po::options_description& desc) {
  desc.add_options()
    ("certified", po::bool_switch(&enabled),
     "train for certified removal: objective + bᵀθ, b ~ N(0, σ²I) written to --b-out "
     "(docs/privacy.md)")
    ("sigma", po::value(&sigma), "--certified: σ of the perturbation b")
    ("b-out", po::value(&b_out), "--certified: where b goes (default MODEL.b.npy next to --out)");
}

void CertifiedTrainFlags::Check(const po::variables_map& vm) {
  auto given = [&](const char* name) { return vm.count(name) && !vm[name].defaulted(); };
  if (!enabled) {
    for (const char* name : {"sigma", "b-out"})
      if (given(name)) Fail("--", name, " needs --certified");
    return;
  }
  if (vm.count("dp") && vm["dp"].as<bool>()) Fail("give --certified or --dp, not both");
  if (!given("sigma")) Fail("--certified needs --sigma S (the scale of the secret perturbation b)");
  if (!(sigma > 0) || !std::isfinite(sigma)) Fail("--sigma = ", sigma, ": must be > 0");
  if (given("optimizer") && vm["optimizer"].as<std::string>() == "adam")
    Fail("--optimizer adam does not apply to --certified: the certificate is about the "
         "minimiser (lbfgs or newton-cg)");
}

std::string PerturbationPathFor(const std::string& model_path) {
  std::filesystem::path p(model_path);
  if (p.extension() == ".safetensors") p.replace_extension();
  return p.string() + ".b.npy";
}

void WritePerturbation(const std::string& path, const std::vector<double>& b) {
  {
    // The temporary file that io::WriteNpy renames into place is created owner-only, so b
    // is never readable by others, not even between the rename and the chmod below.
    struct UmaskGuard {
      mode_t old = ::umask(077);
      ~UmaskGuard() { ::umask(old); }
    } owner_only;
    io::WriteNpy(path, io::Array::FromDouble(b, {static_cast<int64_t>(b.size())}, io::DType::kF64));
  }
  std::error_code ec;  // a secret: owner only (best effort where the file system has no modes)
  std::filesystem::permissions(path,
                               std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::replace, ec);
}

namespace {

// p doubles as bytes for Communicator::Broadcast, and back.
std::string DoublesToBytes(const std::vector<double>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(double));
}

std::vector<double> BytesToDoubles(const std::string& bytes) {
  std::vector<double> v(bytes.size() / sizeof(double));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(double));
  return v;
}

// One process's b on every rank: `make` runs on rank 0 alone (an error there is every
// rank's, AgreedError), and its values are broadcast bit for bit.
template <typename F>
std::vector<double> OnRootThenBroadcast(F&& make) {
  if (!Distributed()) return make();
  std::vector<double> b;
  Collectively([&] {
    if (Comm().rank() == 0) b = make();
  });
  std::string bytes = Comm().rank() == 0 ? DoublesToBytes(b) : std::string();
  Comm().Broadcast(&bytes, 0);
  return BytesToDoubles(bytes);
}

}  // namespace

std::vector<double> DrawPerturbationOnRoot(uint64_t seed, int64_t p, double sigma) {
  return OnRootThenBroadcast([&] { return certified::DrawPerturbation(seed, p, sigma); });
}

void WritePerturbationOnRoot(const std::string& path, const std::vector<double>& b) {
  Collectively([&] {
    if (Comm().rank() == 0) WritePerturbation(path, b);
  });
}

std::vector<double> ReadPerturbation(const std::string& path, const Model& model,
                                     const std::string& model_path) {
  return OnRootThenBroadcast([&] { return ReadPerturbationHere(path, model, model_path); });
}

std::vector<double> ReadPerturbationHere(const std::string& path, const Model& model,
                                         const std::string& model_path) {
  if (!model.certified) Fail(model_path, ": not trained with --certified; it has no perturbation b");
  const io::Array a = io::ReadNpy(path);
  if (a.dtype != io::DType::kF64 || a.shape.size() != 1 || a.shape[0] != model.arch.num_params)
    Fail(path, ": not a perturbation for ", model_path, " (need a float64 vector of ",
         model.arch.num_params, " values)");
  std::vector<double> b = a.ToDouble(path);
  for (double v : b)
    if (!std::isfinite(v)) Fail(path, ": contains NaN or Inf");
  if (certified::PerturbationSha256(b) != model.certified->b_sha256)
    Fail(path, ": not the perturbation ", model_path,
         " was trained with (its SHA-256 differs from the model's b_sha256)");
  return b;
}

void CheckCertifiable(const Model& model, const CommonOptions& common, const std::string& what) {
  if (common.F32()) Fail("--certified needs --dtype f64 (the bound's rounding analysis is in f64)");
  const std::string why = certified::OutsideTheory(model.arch);
  if (!why.empty()) Fail(what, ": outside certified removal's theory: ", why);
}

TrainSummary FitCertified(Model& model, const io::Dataset& data, const std::vector<int64_t>& rows,
                          const TrainOptions& options, const std::vector<double>& b, double sigma,
                          const CommonOptions& common) {
  auto backend = kernels::MakeBackend<double>(common.Backend());
  Objective<double> objective(*backend, model.arch, UploadData(*backend, data, rows),
                              ObjectiveOptions{common.batch_size});
  // Under mpirun each rank holds its block of rows and every sum is reduced
  // (docs/distributed.md); bᵀθ/N is added once, after the reduction, with N the global count
  // (Objective::ValueAndGradientSums), so the objective is one process's.
  Distribute(objective);
  objective.SetLinearTerm(b);
  auto theta = backend->Allocate(1, model.arch.num_params);
  backend->Upload(model.theta.data(), theta);
  Comm().ResetCounters();  // --json's `communication`: the optimisation alone
  const TrainSummary s = lethe::Train(objective, theta, options);
  backend->Download(theta, model.theta.data());
  certified::CertifiedRecord r;
  r.sigma = sigma;
  r.b_sha256 = certified::PerturbationSha256(b);
  r.b_generator = certified::kPerturbationGenerator;
  r.loss = Name(model.arch.spec.loss);
  r.gamma = certified::HessianLipschitz(model.arch.spec.loss);
  r.l2 = model.arch.spec.l2;
  r.examples_trained = r.examples = objective.global_examples();
  r.train_grad_norm = s.grad_norm;
  model.certified = r;
  model.dp.reset();
  return s;
}

int TrainCertified(Model model, const io::Dataset& data, const std::vector<int64_t>& rows,
                   const TrainOptions& options, const CertifiedTrainFlags& flags, uint64_t seed,
                   const CommonOptions& common, const std::string& out) {
  CheckCertifiable(model, common, "--certified");
  const std::string b_path = flags.b_out.empty() ? PerturbationPathFor(out) : flags.b_out;
  if (b_path == out) Fail("--b-out and --out name the same file");
  io::CheckOutputCanBeWritten(b_path);
  // Under mpirun rank 0 draws b (from the seed every rank shares) and sends it: every rank
  // holds the same bits, and only rank 0 writes.
  const std::vector<double> b = DrawPerturbationOnRoot(seed, model.arch.num_params, flags.sigma);
  const TrainSummary s = FitCertified(model, data, rows, options, b, flags.sigma, common);
  const distributed::Counters counters = Comm().counters();
  // b first: a model whose b is lost can never be certified-patched again. A failure on
  // rank 0 stops every rank with its line.
  Collectively([&] {
    if (Comm().rank() != 0) return;
    WritePerturbation(b_path, b);
    SaveModel(out, model);
  });
  std::vector<std::string> warnings;
  if (!s.converged)
    warnings.push_back("NOT converged: ‖∇L‖ = " + Sci(s.grad_norm) + " > tolerance " +
                       Sci(options.gradient_tolerance) + "; the certificate is about the "
                       "minimiser of the perturbed objective");
  for (const std::string& w : warnings) Warn("train", w);
  if (common.json) {
    nlohmann::json j;
    j["out"] = out;
    j["b"] = b_path;
    j["n"] = model.certified->examples;
    j["num_params"] = model.arch.num_params;
    j["optimizer"] = s.optimizer;
    j["converged"] = s.converged;
    j["certified"] = nlohmann::json::parse(model.certified->ToJson());
    j["warnings"] = warnings;
    j["iterations"] = s.iterations;
    j["objective"] = s.objective;
    j["grad_norm"] = s.grad_norm;
    j["seconds"] = s.seconds;
    if (Distributed())  // what the reductions cost (docs/distributed.md)
      j["communication"] = {{"processes", Comm().size()}, {"allreduces", counters.allreduces},
                            {"allreduce_values", counters.allreduce_values},
                            {"bytes_sent", counters.bytes_sent},
                            {"bytes_received", counters.bytes_received}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "trained " << out << " for certified removal: " << s.optimizer << ", "
            << s.iterations << " iterations, " << Fixed(s.seconds, 2) << " s\n  objective "
            << Shortest(s.objective) << " (with bᵀθ/n)   ‖∇L‖ " << Sci(s.grad_norm)
            << (s.converged ? "   (converged)" : "   (NOT converged)") << "\n  perturbation b ~ N(0, "
            << Shortest(flags.sigma) << "²I) written to " << b_path
            << " (secret: lethe unlearn --certified needs it; whoever holds it can undo the "
               "certificate)\n  loss " << model.certified->loss << ", γ = "
            << Shortest(model.certified->gamma) << ", l2 = " << Shortest(model.certified->l2)
            << ", n = " << model.certified->examples << "\n";
  return 0;
}

}  // namespace lethe::cli
