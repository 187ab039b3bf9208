// The rows of a dataset file that a filter on their ids selects, for a process that works on
// a scattered subset of them: SISA under mpirun (docs/distributed.md, "SISA ensembles"),
// where a shard's rows are spread over the file by the keyed hash of their ids, so the
// contiguous block reader (io/dataset_block.h) does not apply.
//
// What comes back: every row's id and targets (what the partition, the model's output width
// and the label checks need: 8 bytes per id and per target) and X of the selected rows only.
// How X is read:
// - .npz, X stored (numpy.savez): the npy header parsed and checked as for the whole file,
//   then only the selected rows' bytes, one read per run of consecutive rows. A member read
//   in part cannot have its zip CRC-32 checked (it covers the whole member); its sizes are.
// - .npz, X deflated (numpy.savez_compressed), which cannot be entered in the middle:
//   inflated from start to end a block of rows at a time, the selected rows kept; the end
//   and the CRC-32 checked.
// - .csv: parsed row by row exactly as LoadDataset parses it, every field of every row
//   checked, the selected rows' features kept. The CSV reader holds the file's text while
//   it parses (as for every CSV load); the parsed X is the selected rows'.
// - Fortran-ordered X (rows not contiguous): loaded whole, then the rows selected (the whole
//   array for a moment).
// Errors are LoadDataset's "PATH: problem", naming file rows, except a NaN or Inf in an
// .npz's X: only the selected rows are looked at, and the first such row is returned, not
// thrown, so that processes holding different rows can agree on the file's first one
// (NonFiniteXMessage gives the one-process line).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/dataset.h"

namespace lethe::io {

struct DatasetRows {
  // n, d, example_shape, the dtypes' flags, every row's ids and y; X empty.
  Dataset all;
  // The selected rows in file order: X, y, ids (the file's), path; n may be 0.
  Dataset rows;
  // File row of each of rows' rows.
  std::vector<int64_t> file_rows;
  // The first selected file row with a NaN or Inf in X (.npz only), or -1.
  int64_t nonfinite_row = -1;
};

// Throws lethe::Error as LoadDataset does (above).
DatasetRows LoadDatasetRows(const std::string& path, const DatasetOptions& options,
                            const std::function<bool(int64_t id)>& keep);

// LoadDataset's message for a NaN or Inf in X at file row `row`.
std::string NonFiniteXMessage(const std::string& path, int64_t row);

}  // namespace lethe::io
