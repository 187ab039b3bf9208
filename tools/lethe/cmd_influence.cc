// lethe influence / lethe self-influence: which training examples made the model say
// this (docs/influence.md for the maths and the sign convention).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <numeric>

#include "engine/influence.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/npy.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/example_pictures.h"
#include "tools/lethe/forgotten_data.h"
#include "tools/lethe/influence_distributed.h"
#include "tools/lethe/png_canvas.h"
#include "tools/lethe/score_selection.h"
#include "tools/lethe/session.h"
#include "tools/lethe/sisa_dir.h"

namespace lethe::cli {
namespace {

// --png FILE (empty: none), --png-top K, --png-tests M, and the image shape of one example.
struct PngRequest {
  std::string path;
  int64_t top = 0, tests = 0;
  ImageShape shape;
};

// --png's checks, before any work: the file, the counts, and where pictures are not drawn.
void CheckPng(const PngRequest& png, std::vector<std::string> inputs, const std::string& out,
              const std::string& model_path) {
  std::erase(inputs, std::string());
  CheckPngOutput(png.path, inputs, {out});
  // Bounded so that the canvas stays a picture (a few thousand pixels a side), not a buffer
  // of gigabytes.
  if (png.top < 1 || png.top > kMaxPngTiles)
    Fail("--png-top ", png.top, ": must be in [1, ", kMaxPngTiles, "]");
  if (IsEnsembleDir(model_path)) Fail("--png: not for an ensemble DIR (draw one constituent's model)");
  if (Distributed()) Fail("--png: not under mpirun (docs/distributed.md); run it as one process");
}

// Right-hand sides per self-influence solve: the direct solver's are cheap.
int64_t SelfInfluenceBlock(bool direct) { return direct ? 256 : 64; }

// What self-influence holds beyond the objective, for --max-memory: the n scores (and
// their selection), a block of right-hand sides and solutions, and the direct solver's
// p × p matrix and its factor.
ExtraMemory SelfInfluenceMemory(const io::Dataset& train, const SolverFlags& flags, int64_t p,
                                int64_t value_bytes) {
  const bool direct = flags.Resolve(p).solver == SolverKind::kDirect;
  const int64_t block = SelfInfluenceBlock(direct);
  ExtraMemory e;
  e.directions = direct ? std::max(block, p) : block;
  e.bytes = train.n * 16 + block * p * 2 * value_bytes;
  e.what = "the " + std::to_string(train.n) + " scores and a block of " + std::to_string(block) +
           " solves";
  if (direct) {
    e.bytes += 3 * p * p * value_bytes;
    e.what += " and the direct solver's " + std::to_string(p) + " × " + std::to_string(p) +
              " matrices (--solver cg needs none)";
  }
  return e;
}

void CheckOutputName(const std::string& out) {
  if (io::IsExistingStream(out)) return;  // /dev/null, a FIFO: takes the CSV form
  if (!out.ends_with(".csv") && !out.ends_with(".npy"))
    Fail("--out ", out, ": must end in .csv or .npy");
}

// Where a command's inputs came from, for messages and --json.
struct Paths {
  std::string model, train, out;
};

// The model's prediction for `rows` of `data`, for the test images' captions: the class
// (arg max of the outputs; one output: its sign, as engine/audit.cc), or for mse the
// output itself.
template <typename T>
std::vector<double> Predictions(Session<T>& session, const Model& model, const io::Dataset& data,
                                const std::vector<int64_t>& rows) {
  Objective<T> objective(*session.backend, model.arch, UploadData(*session.backend, data, rows),
                         ObjectiveOptions{});
  const int64_t n = objective.num_examples(), w = model.arch.output_dim;
  kernels::Matrix<T> f = session.backend->Allocate(n, w);
  objective.Outputs(session.theta, f);
  std::vector<T> host(f.size());
  session.backend->Download(f, host.data());
  std::vector<double> out;
  for (int64_t i = 0; i < n; ++i) {
    const T* row = host.data() + i * w;
    out.push_back(model.arch.spec.loss == LossKind::kMse ? static_cast<double>(row[0])
                  : w == 1                               ? (row[0] > 0 ? 1.0 : 0.0)
                          : static_cast<double>(std::max_element(row, row + w) - row));
  }
  return out;
}

// What influence and self-influence share: the --json fields about how the scores were
// computed, and the lines above their tables.
nlohmann::json ResultJson(const Paths& paths, const InverseHvpOptions& options, const Model& model,
                          const CommonOptions& common, const SolveSummary& summary, bool exact,
                          double grad_norm, const Warnings& warnings) {
  nlohmann::json j =
      ScoresProvenanceJson(options, model, common, summary, exact, grad_norm, warnings);
  j["out"] = paths.out;
  return j;
}

void PrintResultHeader(const SolveSummary& summary, bool exact, double grad_norm) {
  std::cout << Describe(summary) << (exact ? "" : "   [INEXACT: --allow-inexact]") << "\n"
            << "‖∇L(θ)‖ on the training data: " << Sci(grad_norm)
            << (grad_norm <= kStationarityTolerance ? " (stationary)"
                                                    : " (NOT stationary: see the warning)")
            << "\n\n";
}

// Announces the run, checks stationarity, and resolves the solver options (with progress).
struct Prepared {
  InverseHvpOptions options;
  double grad_norm = 0;
};
template <typename T>
Prepared Prepare(Session<T>& session, const Model& model, const SolverFlags& flags,
                    const Paths& paths, Progress& progress, Warnings& warnings,
                    const std::string& what, const std::string& scores) {
  Prepared p;
  p.options = flags.Resolve(model.arch.num_params);
  progress.Announce("lethe " + warnings.command() + ": " + what + ", " +
                    std::to_string(model.arch.num_params) + " parameters, solver " +
                    Name(p.options.solver) + ", " + session.backend->Describe());
  p.grad_norm = CheckStationary(session, warnings, paths.train, paths.model,
                                scores + " are first-order effects at a minimiser, so here they "
                                         "describe a nearby optimum rather than this model");
  p.options.progress = &progress;
  return p;
}

template <typename T>
int Influence(const Model& model, const io::Dataset& train, const io::Dataset& test,
              const std::vector<int64_t>& test_rows, const SolverFlags& flags,
              const CommonOptions& common, const Paths& paths, int64_t top_k,
              const PngRequest& png) {
  Warnings warnings("influence");
  Progress progress(common.quiet);
  Session<T> session(model, train, common);
  Objective<T> tests(*session.backend, model.arch, UploadData(*session.backend, test, test_rows),
                     ObjectiveOptions{common.batch_size});
  const Prepared prepared =
      Prepare(session, model, flags, paths, progress, warnings,
              std::to_string(test_rows.size()) + " test × " + std::to_string(train.n) +
                  " training examples",
              "influence scores");
  const InverseHvpOptions& options = prepared.options;
  const double grad_norm = prepared.grad_norm;
  InverseHvp<T> inverse(*session.train, session.theta, options);
  const InfluenceResult r = InfluenceOnTests(*session.train, tests, session.theta, inverse);
  const bool exact = CheckConverged(r.summary, flags.allow_inexact, warnings);

  const int64_t m = r.m, n = r.n;
  // The picture is drawn before any file is written, and written last.
  std::string picture;
  if (!png.path.empty()) {
    const int64_t shown = std::min(m, png.tests);
    const std::vector<int64_t> rows(test_rows.begin(), test_rows.begin() + shown);
    const std::vector<double> predicted = Predictions(session, model, test, rows);
    std::vector<InfluenceRow> picture_rows;
    for (int64_t t = 0; t < shown; ++t) {
      const double* row = r.scores.data() + t * n;
      InfluenceRow pr{rows[t], predicted[t], {}, {}};
      for (int64_t i : Extremes(row, n, png.top, true)) pr.helpful.push_back({i, row[i]});
      for (int64_t i : Extremes(row, n, png.top, false)) pr.harmful.push_back({i, row[i]});
      picture_rows.push_back(std::move(pr));
    }
    picture = InfluencePng(train, test, png.shape, picture_rows,
                           model.arch.spec.loss == LossKind::kMse);
  }
  if (paths.out.ends_with(".npy")) {
    io::WriteNpy(paths.out, io::Array::FromDouble(r.scores, {m, n}, io::DType::kF64));
  } else {
    io::AtomicFile file(paths.out);
    file.Write("test_id,train_id,score\n");
    for (int64_t j = 0; j < m; ++j) {
      const double* row = r.scores.data() + j * n;
      std::vector<int64_t> order;
      if (top_k > 0) {  // the K of largest |score|
        std::vector<double> mag(row, row + n);
        for (double& x : mag) x = std::abs(x);
        order = Extremes(mag.data(), n, top_k, true);
      } else {
        order.resize(n);
        std::iota(order.begin(), order.end(), 0);
      }
      for (int64_t i : order)
        file.Write(std::to_string(test.ids[test_rows[j]]) + "," + std::to_string(train.ids[i]) +
                   "," + io::FormatDouble(row[i]) + "\n");
    }
    file.Commit();
  }
  if (!png.path.empty()) io::WriteFileAtomically(png.path, picture);
  // The table (and --json) show the 5 most helpful and most harmful examples of the first
  // 10 test examples.
  const int64_t show = 5, shown_tests = std::min<int64_t>(m, 10);
  auto example = [&](int64_t i, const double* row) {
    return nlohmann::json{{"train_id", train.ids[i]}, {"score", row[i]},
                          {"label", train.y[i * train.target_width]}};
  };
  if (common.json) {
    nlohmann::json j =
        ResultJson(paths, options, model, common, r.summary, exact, grad_norm, warnings);
    j["m"] = m;
    j["n"] = n;
    if (!png.path.empty()) j["png"] = png.path;
    j["top"] = nlohmann::json::array();
    for (int64_t t = 0; t < shown_tests; ++t) {
      const double* row = r.scores.data() + t * n;
      nlohmann::json e{{"test_id", test.ids[test_rows[t]]}, {"helpful", nlohmann::json::array()},
                       {"harmful", nlohmann::json::array()}};
      for (int64_t i : Extremes(row, n, show, true)) e["helpful"].push_back(example(i, row));
      for (int64_t i : Extremes(row, n, show, false)) e["harmful"].push_back(example(i, row));
      j["top"].push_back(e);
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  PrintResultHeader(r.summary, exact, grad_norm);
  for (int64_t j = 0; j < shown_tests; ++j) {
    const double* row = r.scores.data() + j * n;
    const int64_t row_index = test_rows[j];
    std::cout << "test id " << test.ids[row_index] << " (label " << test.y[row_index * test.target_width]
              << ")\n  most helpful (removing raises its loss)    most harmful (removing lowers it)\n";
    const auto help = Extremes(row, n, show, true), harm = Extremes(row, n, show, false);
    for (int64_t k = 0; k < std::min<int64_t>(show, n); ++k) {
      char line[160];
      std::snprintf(line, sizeof line, "  id %-8lld %+.3e (label %g)         id %-8lld %+.3e (label %g)",
                    static_cast<long long>(train.ids[help[k]]), row[help[k]],
                    train.y[help[k] * train.target_width], static_cast<long long>(train.ids[harm[k]]),
                    row[harm[k]], train.y[harm[k] * train.target_width]);
      std::cout << line << "\n";
    }
  }
  if (m > 10) std::cout << "(" << m - 10 << " more test examples in " << paths.out << ")\n";
  std::cout << "wrote " << paths.out << "\n";
  if (!png.path.empty()) std::cout << "wrote " << png.path << "\n";
  return 0;
}

// Influence with the training data streamed (--max-memory): the scores are never held.
// They arrive a block of training rows at a time (InfluenceOnTestsByBlocks); --top-k and
// the table keep their extremes in bounded heaps (TopK: O(m·K)), an .npy is written by
// blocks of columns, and a full CSV goes through a scratch .npy read back one test at a
// time (O(n)). Every number written is the in-memory run's, bit for bit, in the same order.
template <typename T>
int InfluenceStreamed(const Model& model, const io::Dataset& train, const io::Dataset& test,
                      const std::vector<int64_t>& test_rows, const SolverFlags& flags,
                      const CommonOptions& common, const Paths& paths, int64_t top_k) {
  Warnings warnings("influence");
  Progress progress(common.quiet);
  const int64_t m = static_cast<int64_t>(test_rows.size()), n = train.n;
  const int64_t batch = std::min<int64_t>(common.batch_size, n);
  // Blocks of whole batches, up to ~16k rows, their scores within an eighth of the budget.
  const int64_t per_batch = batch * m * (2 * static_cast<int64_t>(sizeof(T)) + 8);
  const int64_t block_batches = std::clamp<int64_t>(
      MemoryBudget(common) / 8 / std::max<int64_t>(1, per_batch), 1, std::max<int64_t>(1, 16384 / batch));
  const int64_t block = std::min(n, block_batches * batch);
  const bool npy = paths.out.ends_with(".npy");
  ExtraMemory extra;
  extra.directions = m;
  extra.bytes = block * m * (2 * static_cast<int64_t>(sizeof(T)) + 8) +
                (npy ? 0 : top_k > 0 ? m * top_k * 24 : n * 8) + 2 * 10 * 5 * 24;
  extra.what = "the score blocks of " + std::to_string(block) + " rows" +
               (npy || top_k > 0 ? "" : " and one test's row of the full CSV");
  const int64_t p = model.arch.num_params;
  if (flags.Resolve(p).solver == SolverKind::kDirect) {
    extra.directions = std::max(m, p);
    extra.bytes += 3 * p * p * static_cast<int64_t>(sizeof(T));
    extra.what += " and the direct solver's " + std::to_string(p) + " × " + std::to_string(p) +
                  " matrices (--solver cg needs none)";
  }
  Session<T> session(model, train, common, {}, extra);
  Objective<T> tests(*session.backend, model.arch, UploadData(*session.backend, test, test_rows),
                     ObjectiveOptions{common.batch_size});
  const Prepared prepared = Prepare(session, model, flags, paths, progress, warnings,
                                    std::to_string(m) + " test × " + std::to_string(n) +
                                        " training examples (streamed)",
                                    "influence scores");
  const InverseHvpOptions& options = prepared.options;
  InverseHvp<T> inverse(*session.train, session.theta, options);
  std::unique_ptr<ScoresNpy> file;
  if (npy || top_k == 0) file = std::make_unique<ScoresNpy>(paths.out, m, n, /*scratch=*/!npy);
  const int64_t shown_tests = std::min<int64_t>(m, 10), show = 5;
  std::vector<TopK> by_magnitude, helpful, harmful;
  if (!npy && top_k > 0) by_magnitude.assign(m, TopK(top_k, true));
  helpful.assign(shown_tests, TopK(show, true));
  harmful.assign(shown_tests, TopK(show, false));
  const SolveSummary summary = InfluenceOnTestsByBlocks<T>(
      *session.train, tests, session.theta, inverse, block_batches,
      [&](int64_t begin, int64_t count, const double* scores) {
        if (file) file->WriteBlock(begin, count, scores);
        for (int64_t j = 0; j < m; ++j) {
          const double* row = scores + j * count;
          for (int64_t i = 0; i < count; ++i) {
            if (!by_magnitude.empty()) by_magnitude[j].Push(begin + i, std::abs(row[i]), row[i]);
            if (j < shown_tests) {
              helpful[j].Push(begin + i, row[i], row[i]);
              harmful[j].Push(begin + i, row[i], row[i]);
            }
          }
        }
        progress.Report("influence training rows", begin + count, n);
      });
  const bool exact = CheckConverged(summary, flags.allow_inexact, warnings);
  if (npy) {
    file->Commit();
  } else {
    io::AtomicFile csv(paths.out);
    csv.Write("test_id,train_id,score\n");
    std::vector<double> row(top_k > 0 ? 0 : static_cast<size_t>(n));
    for (int64_t j = 0; j < m; ++j) {
      const std::string test_id = std::to_string(test.ids[test_rows[j]]) + ",";
      if (top_k > 0) {
        for (const auto& [i, score] : by_magnitude[j].Sorted())
          csv.Write(test_id + std::to_string(train.ids[i]) + "," + io::FormatDouble(score) + "\n");
        continue;
      }
      file->ReadRow(j, row.data());
      for (int64_t i = 0; i < n; ++i)
        csv.Write(test_id + std::to_string(train.ids[i]) + "," + io::FormatDouble(row[i]) + "\n");
    }
    csv.Commit();
  }
  auto label = [&](int64_t i) { return train.y[i * train.target_width]; };
  if (common.json) {
    nlohmann::json j = ResultJson(paths, options, model, common, summary, exact,
                                  prepared.grad_norm, warnings);
    j["m"] = m;
    j["n"] = n;
    j["top"] = nlohmann::json::array();
    for (int64_t t = 0; t < shown_tests; ++t) {
      nlohmann::json e{{"test_id", test.ids[test_rows[t]]}, {"helpful", nlohmann::json::array()},
                       {"harmful", nlohmann::json::array()}};
      for (const auto& [i, score] : helpful[t].Sorted())
        e["helpful"].push_back({{"train_id", train.ids[i]}, {"score", score}, {"label", label(i)}});
      for (const auto& [i, score] : harmful[t].Sorted())
        e["harmful"].push_back({{"train_id", train.ids[i]}, {"score", score}, {"label", label(i)}});
      j["top"].push_back(e);
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  PrintResultHeader(summary, exact, prepared.grad_norm);
  for (int64_t j = 0; j < shown_tests; ++j) {
    const int64_t row_index = test_rows[j];
    std::cout << "test id " << test.ids[row_index] << " (label " << test.y[row_index * test.target_width]
              << ")\n  most helpful (removing raises its loss)    most harmful (removing lowers it)\n";
    const auto help = helpful[j].Sorted(), harm = harmful[j].Sorted();
    for (size_t k = 0; k < help.size(); ++k) {
      char line[160];
      std::snprintf(line, sizeof line, "  id %-8lld %+.3e (label %g)         id %-8lld %+.3e (label %g)",
                    static_cast<long long>(train.ids[help[k].first]), help[k].second,
                    label(help[k].first), static_cast<long long>(train.ids[harm[k].first]),
                    harm[k].second, label(harm[k].first));
      std::cout << line << "\n";
    }
  }
  if (m > 10) std::cout << "(" << m - 10 << " more test examples in " << paths.out << ")\n";
  std::cout << "wrote " << paths.out << "\n";
  return 0;
}

template <typename T>
int Self(const Model& model, const io::Dataset& train, const std::vector<int64_t>& rows,
         const SolverFlags& flags, const CommonOptions& common, const Paths& paths,
         int64_t top_k, const PngRequest& png) {
  Warnings warnings("self-influence");
  Progress progress(common.quiet);
  Session<T> session(model, train, common, {},
                     SelfInfluenceMemory(train, flags, model.arch.num_params, sizeof(T)));
  const Prepared prepared =
      Prepare(session, model, flags, paths, progress, warnings,
              std::to_string(train.n) + " training examples", "self-influence scores");
  const InverseHvpOptions& options = prepared.options;
  const double grad_norm = prepared.grad_norm;
  InverseHvp<T> inverse(*session.train, session.theta, options);
  const int64_t block = SelfInfluenceBlock(options.solver == SolverKind::kDirect);
  const InfluenceResult r = SelfInfluence(*session.train, session.theta, inverse, block,
                                          [&](int64_t done) {
                                            progress.Report("self-influence examples", done, train.n);
                                          });
  const bool exact = CheckConverged(r.summary, flags.allow_inexact, warnings);
  // Selected ids (--ids) or all, in data order.
  std::vector<int64_t> chosen = rows;
  if (chosen.empty()) {
    chosen.resize(train.n);
    std::iota(chosen.begin(), chosen.end(), 0);
  }
  std::vector<double> scores;
  for (int64_t i : chosen) scores.push_back(r.scores[i]);
  if (paths.out.ends_with(".npy")) {
    io::WriteNpy(paths.out, io::Array::FromDouble(scores, {static_cast<int64_t>(scores.size())},
                                                  io::DType::kF64));
  } else {
    io::AtomicFile file(paths.out);
    file.Write("train_id,score\n");
    for (size_t k = 0; k < chosen.size(); ++k)
      file.Write(std::to_string(train.ids[chosen[k]]) + "," + io::FormatDouble(scores[k]) + "\n");
    file.Commit();
  }
  const std::vector<int64_t> top =
      Extremes(scores.data(), static_cast<int64_t>(scores.size()), top_k, true);
  if (!png.path.empty()) {
    std::vector<Shown> shown;
    for (int64_t k : Extremes(scores.data(), static_cast<int64_t>(scores.size()), png.top, true))
      shown.push_back({chosen[k], scores[k]});
    io::WriteFileAtomically(png.path, SelfInfluencePng(train, png.shape, shown));
  }
  if (common.json) {
    nlohmann::json j =
        ResultJson(paths, options, model, common, r.summary, exact, grad_norm, warnings);
    j["n"] = static_cast<int64_t>(scores.size());
    if (!png.path.empty()) j["png"] = png.path;
    j["top"] = nlohmann::json::array();
    for (int64_t k : top)
      j["top"].push_back({{"train_id", train.ids[chosen[k]]},
                          {"label", train.y[chosen[k] * train.target_width]},
                          {"score", scores[k]}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  PrintResultHeader(r.summary, exact, grad_norm);
  if (!top.empty()) {
    std::cout << "highest self-influence (candidates for mislabeled or memorised examples):\n";
    char header[128];
    std::snprintf(header, sizeof header, "  %12s %8s %12s", "train id", "label", "score");
    std::cout << header << "\n";
    for (int64_t k : top) {
      char line[128];
      std::snprintf(line, sizeof line, "  %12lld %8g %12.4e",
                    static_cast<long long>(train.ids[chosen[k]]),
                    train.y[chosen[k] * train.target_width], scores[k]);
      std::cout << line << "\n";
    }
  }
  std::cout << "wrote " << paths.out << "\n";
  if (!png.path.empty()) std::cout << "wrote " << png.path << "\n";
  return 0;
}

}  // namespace

int RunInfluence(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  SolverFlags flags;
  std::string model_path, train_path, test_path, out, spec_path, test_ids;
  int64_t top_k = 0;
  PngRequest png;
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&model_path), "safetensors model, or a SISA ensemble DIR")
    ("train", po::value(&train_path), "training data the model was fitted to")
    ("test", po::value(&test_path), "test data")
    ("test-ids", po::value(&test_ids), "score only these test ids (default: all)")
    ("out", po::value(&out), "scores: .csv (test_id,train_id,score) or .npy ([m, n] float64)")
    ("top-k", po::value(&top_k)->default_value(0), "csv: only the K of largest |score| per test example")
    ("png", po::value(&png.path),
     "image data: also a picture (.png), each test image beside its most helpful and most "
     "harmful training images, captioned with id, label and score")
    ("png-top", po::value(&png.top)->default_value(4),
     "--png: helpful and harmful images per test example (at most 64)")
    ("png-tests", po::value(&png.tests)->default_value(4),
     "--png: rows, the first M test examples (at most 64)")
    ("spec", po::value(&spec_path), "sidecar spec JSON");
  flags.Add(desc);
  common.Add(desc);
  AddMaxMemory(desc, common);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe influence --model M --train T --test E [--test-ids 3,17] --out scores.csv",
             "lethe influence --model examples/digits/model.safetensors --train "
             "examples/digits/train.npz --test examples/digits/test.npz --test-ids 100000 "
             "--out scores.csv"))
    return 0;
  for (const char* name : {"model", "train", "test", "out"}) Require(vm, name);
  CheckOutputName(out);
  if (top_k < 0) Fail("--top-k ", top_k, ": must be >= 0");
  io::CheckOutputIsNotAnInput(out, {model_path, train_path, test_path});
  if (!png.path.empty()) {
    CheckPng(png, {model_path, train_path, test_path, spec_path}, out, model_path);
    if (png.tests < 1 || png.tests > kMaxPngTiles)
      Fail("--png-tests ", png.tests, ": must be in [1, ", kMaxPngTiles, "]");
  }
  if (!common.max_memory.empty() && (Distributed() || IsEnsembleDir(model_path)))
    Fail("--max-memory: one process and one model only (not under mpirun, not a SISA ensemble)");
  // A SISA ensemble directory: per-constituent influence (tools/lethe/sisa_influence.cc),
  // under mpirun the constituents spread over the ranks (tools/lethe/sisa_distributed.h).
  if (IsEnsembleDir(model_path)) {
    if (!spec_path.empty()) Fail("--spec: not for an ensemble DIR (its manifest holds the spec)");
    return InfluenceEnsemble(model_path, train_path, test_path,
                             test_ids.empty() ? std::vector<int64_t>{}
                                              : io::ParseIdList(test_ids, "--test-ids"),
                             flags, common, out, top_k);
  }
  if (Distributed())  // under mpirun (docs/distributed.md)
    return InfluenceUnderMpi({model_path, train_path, test_path, out, spec_path, test_ids, top_k,
                              flags, common});
  const bool f32 = common.F32();
  const Model model = LoadModel(model_path, spec_path.empty() ? std::nullopt : std::optional(spec_path));
  const io::Dataset train = ExcludeForgotten(
      model.forgotten, LoadTrainingRows(train_path, common, f32 ? 4 : 8), "influence", model_path);
  const io::Dataset test = io::LoadDataset(test_path, common.Data());
  CheckDataMatchesModel(model.arch, train);
  CheckDataMatchesModel(model.arch, test);
  if (!png.path.empty()) {
    if (train.streamed)
      Fail("--png draws the training images: not with the data streamed (--max-memory)");
    png.shape = ImageShapeOf(model.arch, train);
  }
  std::vector<int64_t> rows;
  if (!test_ids.empty()) {
    rows = test.RowsOf(io::ParseIdList(test_ids, "--test-ids"), "--test-ids");
  } else {
    rows.resize(test.n);
    std::iota(rows.begin(), rows.end(), 0);
  }
  const Paths paths{model_path, train_path, out};
  if (train.streamed)  // larger than --max-memory
    return f32 ? InfluenceStreamed<float>(model, train, test, rows, flags, common, paths, top_k)
               : InfluenceStreamed<double>(model, train, test, rows, flags, common, paths, top_k);
  return f32 ? Influence<float>(model, train, test, rows, flags, common, paths, top_k, png)
             : Influence<double>(model, train, test, rows, flags, common, paths, top_k, png);
}

int RunSelfInfluence(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  SolverFlags flags;
  std::string model_path, train_path, out, spec_path, ids;
  int64_t top_k = 10;
  PngRequest png;
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&model_path), "safetensors model")
    ("train", po::value(&train_path), "training data the model was fitted to")
    ("ids", po::value(&ids), "write only these training ids (default: all)")
    ("out", po::value(&out), "scores: .csv (train_id,score) or .npy ([n] float64)")
    ("top-k", po::value(&top_k)->default_value(10), "how many to print")
    ("png", po::value(&png.path),
     "image data: also a picture (.png) of the examples of highest self-influence, captioned "
     "with id, label and score")
    ("png-top", po::value(&png.top)->default_value(16), "--png: how many examples (at most 64)")
    ("spec", po::value(&spec_path), "sidecar spec JSON");
  flags.Add(desc);
  common.Add(desc);
  AddMaxMemory(desc, common);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm, "lethe self-influence --model M --train T --out self.csv",
             "lethe self-influence --model examples/digits/model.safetensors --train "
             "examples/digits/train.npz --out self.csv"))
    return 0;
  for (const char* name : {"model", "train", "out"}) Require(vm, name);
  CheckOutputName(out);
  if (top_k < 0) Fail("--top-k ", top_k, ": must be >= 0");
  io::CheckOutputIsNotAnInput(out, {model_path, train_path});
  if (!png.path.empty()) CheckPng(png, {model_path, train_path, spec_path}, out, model_path);
  // Self-influence is defined for one model (its own training rows); an ensemble's
  // constituents are model files of their own (lethe inspect DIR names them).
  if (IsEnsembleDir(model_path))
    Fail(model_path, ": a SISA ensemble DIR; self-influence takes one model file (a "
         "constituent's file: lethe inspect ", model_path, " names them)");
  if (!common.max_memory.empty() && Distributed())
    Fail("--max-memory: one process only (not under mpirun)");
  if (Distributed())  // under mpirun (docs/distributed.md)
    return SelfInfluenceUnderMpi({model_path, train_path, "", out, spec_path, ids, top_k, flags,
                                  common});
  const bool f32 = common.F32();
  const Model model = LoadModel(model_path, spec_path.empty() ? std::nullopt : std::optional(spec_path));
  const io::Dataset train = ExcludeForgotten(
      model.forgotten, LoadTrainingRows(train_path, common, f32 ? 4 : 8), "self-influence",
      model_path);
  CheckDataMatchesModel(model.arch, train);
  if (!png.path.empty()) {
    if (train.streamed)
      Fail("--png draws the training images: not with the data streamed (--max-memory)");
    png.shape = ImageShapeOf(model.arch, train);
  }
  std::vector<int64_t> rows;
  if (!ids.empty()) rows = train.RowsOf(io::ParseIdList(ids, "--ids"), "--ids");
  const Paths paths{model_path, train_path, out};
  return f32 ? Self<float>(model, train, rows, flags, common, paths, top_k, png)
             : Self<double>(model, train, rows, flags, common, paths, top_k, png);
}

}  // namespace lethe::cli
