// --max-memory: the training data larger than memory (docs/design.md, "Data larger than
// memory"). A command that honours it loads its training rows with LoadTrainingRows: held
// in memory when X fits in half the budget, else streamed from the file a chunk at a time
// (io/dataset_stream.h), with every result bit for bit the in-memory run's. The objective's
// options then fit its buffers and the forward-pass cache in the rest
// (BudgetedObjectiveOptions), or the command refuses in one line.
#pragma once

#include <cstdint>
#include <string>

#include "engine/architecture.h"
#include "engine/objective.h"
#include "io/dataset.h"
#include "tools/lethe/cli.h"

namespace lethe::cli {

// Offers --max-memory BYTES to a command that honours it (the others refuse the option).
void AddMaxMemory(po::options_description& desc, CommonOptions& common);

// "400M", "2G", "1.5G", "123456" (K, M, G, T are powers of 1024; a trailing B or iB is
// allowed). Throws lethe::Error naming the option for 0, a negative, garbage, overflow.
int64_t ParseMemorySize(const std::string& text);

// The budget: --max-memory, else 80% of the machine's physical memory (or of
// LETHE_MAX_MEMORY, or of the limits RLIMIT_AS and RLIMIT_DATA, whichever is lowest).
int64_t MemoryBudget(const CommonOptions& common);

// The training rows of PATH for a command running in `value_bytes`-byte values (4 or 8):
// io::LoadDataset when X fits in half the budget, else the dataset streamed
// (io::Dataset::streamed). Under mpirun, --max-memory is refused (each rank holds its block).
io::Dataset LoadTrainingRows(const std::string& path, const CommonOptions& common,
                             int64_t value_bytes);

// What the bound covers beyond the objective's own buffers (the command's results: n × m
// influence scores, the direct solver's p × p matrix …), in bytes.
struct ExtraMemory {
  int64_t bytes = 0;
  std::string what;  // for the error message, e.g. "the n × m influence scores"
  // Directions the curvature products take at once (influence: m; self-influence: its
  // block; the direct solver: p), for the grouped products' buffers.
  int64_t directions = 1;
};

// ObjectiveOptions{--chunk-size} for `data`; streamed, also within the budget: the batch
// buffers, the rows' labels and ids, the model and `extra` must fit (else one error line:
// raise --max-memory or lower --chunk-size), and the forward-pass cache gets at most the
// rest. The batch and the grouping of directions stay the in-memory run's (they decide
// the order of sums and the width of GEMMs, so the bits).
ObjectiveOptions BudgetedObjectiveOptions(const io::Dataset& data, const Architecture& arch,
                                          const CommonOptions& common, int64_t value_bytes,
                                          const ExtraMemory& extra = {});

}  // namespace lethe::cli
