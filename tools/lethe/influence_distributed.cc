#include "tools/lethe/influence_distributed.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <numeric>
#include <unordered_map>

#include "engine/influence.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/npy.h"
#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {
namespace {

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
  if (job.out.ends_with(".npy")) {
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
    nlohmann::json j =
        ScoresProvenanceJson(options, model, job.common, summary, exact, grad_norm, warnings);
    j["out"] = job.out;
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

// Self-influence: the right-hand sides are every rank's own gᵢ, but a solve is collective
// (each curvature product sums over all ranks' rows for the SAME directions), so the solves
// go in rounds: in round k every rank contributes its k-th block of gradients, every rank
// receives them all (broadcast in rank order), all solve the P blocks together, and each
// takes its own rows' solutions for gᵢᵀ (C + λI)⁻¹ gᵢ.
template <typename T>
int Self(const InfluenceJob& job) {
  distributed::Communicator& comm = Comm();
  Warnings warnings("self-influence");
  Progress progress(job.common.quiet);
  const Model model = Collectively([&] {
    return LoadModel(job.model, job.spec.empty() ? std::nullopt : std::optional(job.spec));
  });
  const io::Dataset train = ExcludeForgottenRows(
      model.forgotten, LoadRows(job.train, job.common.Data()), "self-influence", job.model);
  Collectively([&] { CheckDataMatchesModel(model.arch, train); });
  std::vector<int64_t> wanted;  // --ids, in their order
  if (!job.ids.empty()) wanted = io::ParseIdList(job.ids, "--ids");
  if (!wanted.empty()) LocalRowsOf(train, wanted, "--ids");  // every id in some rank's rows
  Session<T> session(model, train, job.common);
  Distribute(*session.train);
  kernels::Backend<T>& be = *session.backend;
  const int64_t p = model.arch.num_params, N = session.train->global_examples(), n = train.n;
  InverseHvpOptions options = job.flags.Resolve(p);
  progress.Announce("lethe self-influence: " + std::to_string(N) + " training examples, " +
                    std::to_string(p) + " parameters, solver " + Name(options.solver) + ", " +
                    be.Describe() + ", " + std::to_string(comm.size()) + " processes");
  const double grad_norm = CheckStationary(
      session, warnings, job.train, job.model,
      "self-influence scores are first-order effects at a minimiser, so here they describe a "
      "nearby optimum rather than this model");
  options.progress = &progress;
  InverseHvp<T> inverse(*session.train, session.theta, options);

  const int64_t block = options.solver == SolverKind::kDirect ? 256 : 64;
  const std::vector<int64_t> sizes = comm.AllgatherInt64(n);
  int64_t rounds = 0;
  for (int64_t s : sizes) rounds = std::max(rounds, (s + block - 1) / block);
  std::vector<double> scores(static_cast<size_t>(n));
  SolveSummary summary;
  kernels::Matrix<T> g = be.Allocate(block, p);
  comm.ResetCounters();
  int64_t done = 0;
  for (int64_t k = 0; k < rounds; ++k) {
    std::vector<int64_t> counts(sizes.size()), offsets(sizes.size());
    int64_t total = 0;
    for (size_t r = 0; r < sizes.size(); ++r) {
      counts[r] = std::clamp<int64_t>(sizes[r] - k * block, 0, block);
      offsets[r] = total;
      total += counts[r];
    }
    const int64_t mine = counts[comm.rank()];
    kernels::Matrix<T> own = g.Rows(0, mine);
    if (mine > 0) session.train->PerExampleGradients(session.theta, k * block, mine, own);
    std::vector<double> own_host = mine > 0 ? session.Download(own) : std::vector<double>();
    std::vector<T> all(static_cast<size_t>(total * p));
    for (int r = 0; r < comm.size(); ++r) {
      std::string bytes;
      if (r == comm.rank()) bytes = Bytes(own_host.data(), mine * p);
      comm.Broadcast(&bytes, r);
      const double* v = reinterpret_cast<const double*>(bytes.data());
      std::copy(v, v + counts[r] * p, all.begin() + offsets[r] * p);
    }
    kernels::Matrix<T> G = be.Allocate(total, p), S = be.Allocate(total, p);
    be.Upload(all.data(), G);
    // The residual is checked in the first round (it is the same operator for all).
    const SolveSummary part = inverse.Solve(G, S, /*check_residual=*/k == 0);
    MergeBlockSummary(part, &summary, k == 0);
    if (part.termination == Termination::kNegativeCurvature &&
        options.solver != SolverKind::kCg)
      break;
    if (mine > 0) {
      kernels::Matrix<T> d = be.Allocate(mine, 1);
      be.RowDots(own, S.Rows(offsets[comm.rank()], mine), d);
      const std::vector<double> dots = session.Download(d);
      for (int64_t i = 0; i < mine; ++i)
        scores[k * block + i] = dots[i] / static_cast<double>(N);
    }
    done += total;
    progress.Report("self-influence examples", done, N);  // the global count
  }
  const distributed::Counters counters = comm.counters();
  const bool exact = CheckConverged(summary, job.flags.allow_inexact, warnings);

  // Rank 0 writes: every row in row order, or the --ids in their order (gathered).
  std::unique_ptr<io::AtomicFile> file;
  if (comm.rank() == 0) file = std::make_unique<io::AtomicFile>(job.out);
  const bool npy = job.out.ends_with(".npy");
  std::vector<Candidate> chosen;  // --ids: on rank 0, in the list's order
  if (!wanted.empty()) {
    std::unordered_map<int64_t, int64_t> position;
    for (size_t k = 0; k < wanted.size(); ++k) position.emplace(wanted[k], k);
    std::vector<Candidate> mine;
    for (int64_t i = 0; i < n; ++i)
      if (position.count(train.ids[i]))
        mine.push_back({train.ids[i], scores[i], train.y[i * train.target_width]});
    const std::vector<Candidate> all = GatherToRoot(mine);
    if (comm.rank() == 0) {
      std::unordered_map<int64_t, Candidate> by_id;
      for (const Candidate& c : all) by_id.emplace(c.id, c);
      for (int64_t id : wanted) chosen.push_back(by_id.at(id));
    }
  }
  const int64_t written = wanted.empty() ? N : static_cast<int64_t>(wanted.size());
  if (npy) {
    if (file) file->Write(io::SerializeNpyHeader(io::DType::kF64, {written}));
    if (wanted.empty()) {
      StreamPiece(file.get(), Bytes(scores.data(), n));
    } else if (file) {
      for (const Candidate& c : chosen) file->Write(Bytes(&c.score, 1));
    }
  } else {
    if (file) file->Write("train_id,score\n");
    if (wanted.empty()) {
      std::string piece;
      for (int64_t i = 0; i < n; ++i)
        piece += std::to_string(train.ids[i]) + "," + io::FormatDouble(scores[i]) + "\n";
      StreamPiece(file.get(), piece);
    } else if (file) {
      for (const Candidate& c : chosen)
        file->Write(std::to_string(c.id) + "," + io::FormatDouble(c.score) + "\n");
    }
  }
  if (file) file->Commit();

  // The top-k: merged over the ranks, or among the --ids.
  std::vector<Candidate> top;
  if (wanted.empty()) {
    top = TopK(train, scores, job.top_k, [](double x) { return x; });
  } else {
    top = chosen;
    const int64_t keep = std::min<int64_t>(job.top_k, static_cast<int64_t>(top.size()));
    std::partial_sort(top.begin(), top.begin() + keep, top.end(),
                      [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
    top.resize(keep);
  }
  if (comm.rank() != 0) return 0;
  if (job.common.json) {
    nlohmann::json j =
        ScoresProvenanceJson(options, model, job.common, summary, exact, grad_norm, warnings);
    j["out"] = job.out;
    j["communication"] = CommunicationJson(counters, summary);
    j["n"] = written;
    j["top"] = nlohmann::json::array();
    for (const Candidate& c : top)
      j["top"].push_back({{"train_id", c.id}, {"label", c.label}, {"score", c.score}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  PrintResultHeader(summary, exact, grad_norm);
  if (!top.empty()) {
    std::cout << "highest self-influence (candidates for mislabeled or memorised examples):\n";
    char header[128];
    std::snprintf(header, sizeof header, "  %12s %8s %12s", "train id", "label", "score");
    std::cout << header << "\n";
    for (const Candidate& c : top) {
      char line[128];
      std::snprintf(line, sizeof line, "  %12lld %8g %12.4e", static_cast<long long>(c.id),
                    c.label, c.score);
      std::cout << line << "\n";
    }
  }
  std::cout << "wrote " << job.out << "\n";
  return 0;
}

}  // namespace

int SelfInfluenceUnderMpi(const InfluenceJob& job) {
  return job.common.F32() ? Self<float>(job) : Self<double>(job);
}

int InfluenceUnderMpi(const InfluenceJob& job) {
  return job.common.F32() ? Influence<float>(job) : Influence<double>(job);
}

}  // namespace lethe::cli
