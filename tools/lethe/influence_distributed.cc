#include "tools/lethe/influence_distributed.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <numeric>

#include "engine/influence.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/npy.h"
#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// As cmd_influence.cc's: whether the scores may be written after solve `s`.
bool CheckConverged(const SolveSummary& s, bool allow_inexact, Warnings& warnings) {
  if (s.converged()) return true;
  const std::string what = std::string("the inverse-Hessian solve did not converge (") +
                           Name(s.termination) +
                           (std::isfinite(s.relative_residual)
                                ? ", relative residual " + Sci(s.relative_residual)
                                : std::string(", residual not computed")) +
                           (s.message.empty() ? "" : "; " + s.message) + ")";
  if (s.termination == Termination::kNegativeCurvature)
    Fail(what, "; nothing written",
         s.message.empty() ? ": the curvature is not positive definite here (is the model at a "
                             "minimum?); raise --damping or use --curvature gauss-newton"
                           : "");
  if (s.termination == Termination::kDiverged)
    Fail(what, "; nothing written: a diverged solve approximates nothing");
  if (!allow_inexact)
    Fail(what, "; nothing written (--allow-inexact writes the scores, marked inexact)");
  warnings.Add(what + ": writing the scores anyway (--allow-inexact); they are inexact, "
               "by about the relative residual");
  return false;
}

nlohmann::json SettingsJson(const InverseHvpOptions& o, const Architecture& arch,
                            const CommonOptions& common) {
  nlohmann::json j;
  j["solver"] = Name(o.solver);
  j["curvature"] = o.curvature == Curvature::kHessian ? "hessian" : "gauss-newton";
  j["damping"] = o.damping;
  if (o.solver == SolverKind::kCg) {
    j["preconditioner"] = Name(ResolvePreconditioner(o.preconditioner, arch));
    j["cg_tolerance"] = o.cg.relative_tolerance;
    j["cg_max_iterations"] = o.cg.max_iterations;
  }
  if (o.solver == SolverKind::kLissa) {
    j["lissa_depth"] = o.lissa.depth;
    j["lissa_repeats"] = o.lissa.repeats;
    j["lissa_batch"] = o.lissa.batch_size;
    j["lissa_scale"] = o.lissa.scale;
  }
  if (o.solver == SolverKind::kLanczos) j["rank"] = o.lanczos.rank;
  j["dtype"] = common.dtype;
  j["device"] = common.device;
  return j;
}

// What the reductions cost (engine/distributed/communicator.h: Counters).
nlohmann::json CommunicationJson(const distributed::Counters& c, const SolveSummary& s) {
  nlohmann::json j;
  j["processes"] = Comm().size();
  j["allreduces"] = c.allreduces;
  j["allreduce_values"] = c.allreduce_values;
  j["bytes_sent"] = c.bytes_sent;
  j["bytes_received"] = c.bytes_received;
  j["solver_iterations"] = s.iterations;
  return j;
}

void PrintResultHeader(const SolveSummary& summary, bool exact, double grad_norm) {
  std::cout << Describe(summary) << (exact ? "" : "   [INEXACT: --allow-inexact]") << "\n"
            << "‖∇L(θ)‖ on the training data: " << Sci(grad_norm)
            << (grad_norm <= kStationarityTolerance ? " (stationary)"
                                                    : " (NOT stationary: see the warning)")
            << "\n\n";
}

// A training example as the tables show it.
struct Candidate {
  int64_t id = 0;
  double score = 0, label = 0;
};

// Every rank's candidates on rank 0 (empty elsewhere), rank order.
std::vector<Candidate> GatherToRoot(const std::vector<Candidate>& mine) {
  std::vector<Candidate> all;
  bool sent = false;
  Comm().StreamToRoot(
      [&](std::string* chunk) {
        if (sent) return false;
        chunk->assign(reinterpret_cast<const char*>(mine.data()), mine.size() * sizeof(Candidate));
        sent = true;
        return true;
      },
      [&](const std::string& chunk) {
        const size_t count = chunk.size() / sizeof(Candidate);
        const size_t at = all.size();
        all.resize(at + count);
        if (count) std::memcpy(all.data() + at, chunk.data(), count * sizeof(Candidate));
      });
  return all;
}

// The k candidates of this rank's `values` (n_local) that rank highest by `key`, then the
// k highest of every rank's on rank 0: the one-process top k (up to ties).
std::vector<Candidate> TopK(const io::Dataset& train, const std::vector<double>& values,
                            int64_t k, const std::function<double(double)>& key) {
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t kk = std::min(k, n);
  std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(),
                    [&](int64_t a, int64_t b) { return key(values[a]) > key(values[b]); });
  std::vector<Candidate> mine;
  for (int64_t t = 0; t < kk; ++t)
    mine.push_back({train.ids[idx[t]], values[idx[t]], train.y[idx[t] * train.target_width]});
  std::vector<Candidate> all = GatherToRoot(mine);
  const int64_t keep = std::min<int64_t>(k, static_cast<int64_t>(all.size()));
  std::partial_sort(all.begin(), all.begin() + keep, all.end(),
                    [&](const Candidate& a, const Candidate& b) { return key(a.score) > key(b.score); });
  all.resize(keep);
  return all;
}

// Rank 0 writes, in row order, what each rank's produce() gives for one piece at a time.
void StreamPiece(io::AtomicFile* file, const std::string& piece) {
  bool sent = false;
  Comm().StreamToRoot(
      [&](std::string* chunk) {
        if (sent) return false;
        *chunk = piece;
        sent = true;
        return true;
      },
      [&](const std::string& chunk) {
        if (file) file->Write(chunk);
      });
}

std::string Bytes(const double* v, int64_t count) {
  return std::string(reinterpret_cast<const char*>(v), static_cast<size_t>(count) * 8);
}

template <typename T>
std::vector<double> ToHost(Session<T>& session, const kernels::Matrix<T>& m) {
  return session.Download(m);
}

template <typename T>
int Influence(const InfluenceJob& job) {
  distributed::Communicator& comm = Comm();
  Warnings warnings("influence");
  Progress progress(job.common.quiet);
  const Model model = Collectively([&] {
    return LoadModel(job.model, job.spec.empty() ? std::nullopt : std::optional(job.spec));
  });
  const io::Dataset train = ExcludeForgottenRows(
      model.forgotten, LoadRows(job.train, job.common.Data()), "influence", job.model);
  Collectively([&] { CheckDataMatchesModel(model.arch, train); });
  // The test side lives on rank 0 alone.
  io::Dataset test;
  std::vector<int64_t> test_rows;
  Collectively([&] {
    if (comm.rank() != 0) return;
    test = io::LoadDataset(job.test, job.common.Data());
    CheckDataMatchesModel(model.arch, test);
    if (!job.ids.empty()) {
      test_rows = test.RowsOf(io::ParseIdList(job.ids, "--test-ids"), "--test-ids");
    } else {
      test_rows.resize(test.n);
      std::iota(test_rows.begin(), test_rows.end(), 0);
    }
  });
  Session<T> session(model, train, job.common);
  Distribute(*session.train);
  kernels::Backend<T>& be = *session.backend;
  const int64_t p = model.arch.num_params, N = session.train->global_examples();

  // g_test on rank 0, broadcast (m × p doubles): every rank solves the same right-hand sides.
  std::string g_bytes;
  if (comm.rank() == 0) {
    Objective<T> tests(be, model.arch, UploadData(be, test, test_rows),
                       ObjectiveOptions{job.common.batch_size});
    kernels::Matrix<T> G0 = be.Allocate(static_cast<int64_t>(test_rows.size()), p);
    tests.PerExampleGradients(session.theta, 0, G0.rows(), G0);
    const std::vector<double> g = ToHost(session, G0);
    g_bytes = Bytes(g.data(), static_cast<int64_t>(g.size()));
  }
  comm.Broadcast(&g_bytes, 0);
  const int64_t m = static_cast<int64_t>(g_bytes.size() / 8) / p;
  kernels::Matrix<T> G = be.Allocate(m, p), S = be.Allocate(m, p);
  {
    std::vector<T> host(static_cast<size_t>(m * p));
    const double* g = reinterpret_cast<const double*>(g_bytes.data());
    std::copy(g, g + m * p, host.begin());
    be.Upload(host.data(), G);
  }

  InverseHvpOptions options = job.flags.Resolve(p);
  RefuseUnderMpi(options.solver == SolverKind::kLissa && options.lissa.batch_size != 0,
                 "--solver lissa with --lissa-batch > 0 (minibatches of one rank's rows)");
  progress.Announce("lethe influence: " + std::to_string(m) + " test × " + std::to_string(N) +
                    " training examples, " + std::to_string(p) + " parameters, solver " +
                    Name(options.solver) + ", " + be.Describe() + ", " +
                    std::to_string(comm.size()) + " processes");
  const double grad_norm = CheckStationary(
      session, warnings, job.train, job.model,
      "influence scores are first-order effects at a minimiser, so here they describe a nearby "
      "optimum rather than this model");
  options.progress = &progress;
  InverseHvp<T> inverse(*session.train, session.theta, options);
  comm.ResetCounters();  // the solve's communication alone
  const SolveSummary summary = inverse.Solve(G, S);
  const distributed::Counters counters = comm.counters();
  const bool exact = CheckConverged(summary, job.flags.allow_inexact, warnings);

  // This rank's scores, n_local × m, then by test row: scores[j][i] = gᵢᵀ s_j / N.
  const int64_t n = train.n;
  kernels::Matrix<T> D = be.Allocate(n, m);
  session.train->PerExampleGradientDots(session.theta, S, D);
  const std::vector<double> dots = ToHost(session, D);
  std::vector<std::vector<double>> scores(m, std::vector<double>(n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) scores[j][i] = dots[i * m + j] / static_cast<double>(N);

  std::unique_ptr<io::AtomicFile> file;
  if (comm.rank() == 0) file = std::make_unique<io::AtomicFile>(job.out);
  if (EndsWith(job.out, ".npy")) {
    if (file) file->Write(io::SerializeNpyHeader(io::DType::kF64, {m, N}));
    for (int64_t j = 0; j < m; ++j) StreamPiece(file.get(), Bytes(scores[j].data(), n));
  } else {
    if (file) file->Write("test_id,train_id,score\n");
    // The test id travels with rank 0's piece (only rank 0 has the test data).
    for (int64_t j = 0; j < m; ++j) {
      std::string test_id;
      if (comm.rank() == 0) test_id = std::to_string(test.ids[test_rows[j]]);
      comm.Broadcast(&test_id, 0);
      if (job.top_k > 0) {  // the K of largest |score|, over every rank's rows
        const std::vector<Candidate> top =
            TopK(train, scores[j], job.top_k, [](double x) { return std::abs(x); });
        if (file)
          for (const Candidate& c : top)
            file->Write(test_id + "," + std::to_string(c.id) + "," + io::FormatDouble(c.score) +
                        "\n");
        continue;
      }
      std::string piece;
      for (int64_t i = 0; i < n; ++i)
        piece += test_id + "," + std::to_string(train.ids[i]) + "," +
                 io::FormatDouble(scores[j][i]) + "\n";
      StreamPiece(file.get(), piece);
    }
  }
  if (file) file->Commit();

  // The tables: the 5 most helpful and most harmful of the first 10 test examples.
  const int64_t show = 5, shown_tests = std::min<int64_t>(m, 10);
  std::vector<std::vector<Candidate>> help(shown_tests), harm(shown_tests);
  for (int64_t t = 0; t < shown_tests; ++t) {
    help[t] = TopK(train, scores[t], show, [](double x) { return x; });
    harm[t] = TopK(train, scores[t], show, [](double x) { return -x; });
  }
  if (comm.rank() != 0) return 0;
  if (job.common.json) {
    nlohmann::json j;
    j["out"] = job.out;
    j["settings"] = SettingsJson(options, model.arch, job.common);
    j["solver"] = ToJson(summary);
    j["exact"] = exact;
    j["grad_norm"] = grad_norm;
    j["forgotten_excluded"] = static_cast<int64_t>(model.forgotten.ids.size());
    j["warnings"] = warnings.all();
    j["communication"] = CommunicationJson(counters, summary);
    j["m"] = m;
    j["n"] = N;
    j["top"] = nlohmann::json::array();
    for (int64_t t = 0; t < shown_tests; ++t) {
      nlohmann::json e{{"test_id", test.ids[test_rows[t]]},
                       {"helpful", nlohmann::json::array()},
                       {"harmful", nlohmann::json::array()}};
      for (const Candidate& c : help[t])
        e["helpful"].push_back({{"train_id", c.id}, {"score", c.score}, {"label", c.label}});
      for (const Candidate& c : harm[t])
        e["harmful"].push_back({{"train_id", c.id}, {"score", c.score}, {"label", c.label}});
      j["top"].push_back(e);
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  PrintResultHeader(summary, exact, grad_norm);
  for (int64_t t = 0; t < shown_tests; ++t) {
    const int64_t row_index = test_rows[t];
    std::cout << "test id " << test.ids[row_index] << " (label "
              << test.y[row_index * test.target_width]
              << ")\n  most helpful (removing raises its loss)    most harmful (removing lowers it)\n";
    for (size_t k = 0; k < std::min(help[t].size(), harm[t].size()); ++k) {
      char line[160];
      std::snprintf(line, sizeof line,
                    "  id %-8lld %+.3e (label %g)         id %-8lld %+.3e (label %g)",
                    static_cast<long long>(help[t][k].id), help[t][k].score, help[t][k].label,
                    static_cast<long long>(harm[t][k].id), harm[t][k].score, harm[t][k].label);
      std::cout << line << "\n";
    }
  }
  if (m > 10) std::cout << "(" << m - 10 << " more test examples in " << job.out << ")\n";
  std::cout << "wrote " << job.out << "\n";
  return 0;
}

}  // namespace

int InfluenceUnderMpi(const InfluenceJob& job) {
  return job.common.F32() ? Influence<float>(job) : Influence<double>(job);
}

}  // namespace lethe::cli
