#include "tools/lethe/memory_budget.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iostream>

#include "common/checked_alloc.h"
#include "common/error.h"
#include "common/quote.h"
#include "io/dataset_stream.h"
#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {

void AddMaxMemory(po::options_description& desc, CommonOptions& common) {
  desc.add_options()("max-memory", po::value(&common.max_memory),
                     "memory bound in bytes (400M, 2G): training data beyond it are streamed "
                     "from the .npz a chunk at a time (default: 80% of the machine's memory)");
}

int64_t ParseMemorySize(const std::string& text) {
  auto bad = [&](const char* why) -> int64_t {
    Fail("--max-memory ", Quote(text), ": ", why, " (bytes, or with K, M, G, T: 400M, 2G)");
  };
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return bad("not a size");
  double value = 0;
  try {
    size_t used = 0;
    value = std::stod(text.substr(0, i), &used);
    if (used != i) return bad("not a size");
  } catch (const std::exception&) {
    return bad("not a size");
  }
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.ends_with("IB")) unit.resize(unit.size() - 2);
  else if (unit.size() > 1 && unit.ends_with("B")) unit.resize(unit.size() - 1);
  else if (unit == "B") unit.clear();
  double scale = 1;
  if (unit == "K") scale = 1024.0;
  else if (unit == "M") scale = 1024.0 * 1024;
  else if (unit == "G") scale = 1024.0 * 1024 * 1024;
  else if (unit == "T") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty()) return bad("unknown unit");
  const double bytes = std::floor(value * scale);
  if (!(bytes >= 1)) return bad("must be at least one byte");
  if (bytes > 9.0e18) return bad("too large");
  return static_cast<int64_t>(bytes);
}

int64_t MemoryBudget(const CommonOptions& common) {
  if (!common.max_memory.empty()) return ParseMemorySize(common.max_memory);
  // Physical memory, or LETHE_MAX_MEMORY (common/checked_alloc.h) when set.
  double limit = static_cast<double>(MemoryLimitBytes());
  for (int resource : {RLIMIT_AS, RLIMIT_DATA}) {
    rlimit r{};
    if (getrlimit(resource, &r) == 0 && r.rlim_cur != RLIM_INFINITY)
      limit = std::min(limit, static_cast<double>(r.rlim_cur));
  }
  return static_cast<int64_t>(0.8 * limit);
}

io::Dataset LoadTrainingRows(const std::string& path, const CommonOptions& common,
                             int64_t value_bytes) {
  if (Distributed()) {
    if (!common.max_memory.empty())
      Fail("--max-memory: not under mpirun (each rank holds its own block of rows in memory; "
           "docs/distributed.md)");
    return LoadRows(path, common.Data());
  }
  const int64_t budget = MemoryBudget(common);
  const int64_t elements = io::NpzXElements(path);
  // Held, X costs its doubles (io::Dataset) and its copy on the device, in T.
  const double held = static_cast<double>(std::max<int64_t>(elements, 0)) *
                      static_cast<double>(8 + value_bytes);
  if (elements < 0 || held <= 0.5 * static_cast<double>(budget))
    return io::LoadDataset(path, common.Data());
  io::Dataset meta;
  Progress progress(common.quiet);
  progress.Announce("lethe: " + path + " (X " + std::to_string(elements) +
                    " values) is larger than half of the memory bound: streamed from the file");
  // The opening pass (a check of every value; a deflated X inflated to a temporary file)
  // in blocks of at most 1/16 of the budget.
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(budget / 16, int64_t{64} << 20));
  std::shared_ptr<const io::StreamedX> x = io::StreamedX::Open(
      path, &meta, block, [&](int64_t done, int64_t total) {
        progress.Report("reading X", done, total);
      });
  meta.streamed = std::move(x);
  return meta;
}

ObjectiveOptions BudgetedObjectiveOptions(const io::Dataset& data, const Architecture& arch,
                                          const CommonOptions& common, int64_t value_bytes,
                                          const ExtraMemory& extra) {
  ObjectiveOptions o{common.batch_size};
  if (!data.streamed) return o;
  const int64_t budget = MemoryBudget(common);
  const double T = static_cast<double>(value_bytes);
  const double n = static_cast<double>(data.n), d = static_cast<double>(data.d);
  const double B = static_cast<double>(std::min<int64_t>(common.batch_size, data.n));
  // The widths of every layer boundary; the objective keeps four B × width buffers at each
  // (x, δ, R{x}, R{δ}), and the layers about as much again (σ', σ'', scratch).
  double widths = static_cast<double>(arch.input_dim), kfac = 0;
  for (const LayerShape& l : arch.layers) {
    widths += static_cast<double>(l.out_width());
    if (l.num_params() > 0) {  // K-FAC's factors: (in + 1)² and out², with eigenvectors
      const double in = static_cast<double>(l.in_width()) + 1, out = static_cast<double>(l.out_width());
      kfac += 2 * (in * in + out * out) * 8;
    }
  }
  // One chunk: the file's bytes, their doubles, the T copy and the device batch buffer,
  // and the boundaries' buffers.
  const double chunk = B * (d * (8 + 8 + 2 * T) + 8 * widths * T);
  // Per row, held for all n: the labels (double and T), the id, the file row.
  const double rows = n * (static_cast<double>(data.target_width) * (8 + T) + 8 + 8);
  // The model: θ, the gradient and a solver's few vectors, and the preconditioner.
  const double model = static_cast<double>(arch.num_params) * T * 16 + kfac;
  // The grouped first-layer products: four buffers (two of the objective's, two of the
  // layer's) of at most group_elements each, B × (directions in a group) × its width.
  double first_width = 0;
  for (const LayerShape& l : arch.layers)
    if (l.num_params() > 0) {
      first_width = static_cast<double>(l.out_width());
      break;
    }
  const double group =
      4 * T * std::min(static_cast<double>(o.group_elements), B * first_width * static_cast<double>(std::max<int64_t>(1, extra.directions)));
  const double need = chunk + rows + model + group + static_cast<double>(extra.bytes);
  if (need > static_cast<double>(budget))
    Fail("--max-memory ", common.max_memory.empty() ? std::to_string(budget) : common.max_memory,
         ": too small for ", data.path, ": one chunk of ", static_cast<int64_t>(B),
         " rows needs about ", static_cast<int64_t>(chunk), " bytes, the ", data.n,
         " rows' labels and ids ", static_cast<int64_t>(rows), ", the model ",
         static_cast<int64_t>(model), ", the grouped products ", static_cast<int64_t>(group),
         extra.bytes > 0 ? ", " + extra.what + " " + std::to_string(extra.bytes) : std::string(),
         " (", static_cast<int64_t>(need), " in all); raise --max-memory or lower --chunk-size");
  // The rest goes to the forward-pass cache (beyond it the passes recompute: the same
  // bits). The grouped first-layer products keep their size (a group of directions is one
  // wide GEMM whose rounding depends on its width), so they are counted above.
  const double rest = static_cast<double>(budget) - need;
  o.cache_elements = std::min<int64_t>(o.cache_elements, static_cast<int64_t>(rest / T));
  return o;
}

}  // namespace lethe::cli
