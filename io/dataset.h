// Training and test data: features X [n, d], targets y and example ids.
//
// .npz: X [n, d...] float32/float64, or an integer dtype for token ids (trailing dims
// flattened row-major; their shape is kept as example_shape); y [n] int32/int64
// labels, or float [n] / [n, k] targets (mse); optional ids [n] int64 (unique; default
// the row index). .csv: a header row; the label column (default "label", several
// columns for mse targets are not supported in CSV), an optional id column, every
// other column a feature.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/host_memory.h"

namespace lethe::io {

class StreamedX;  // io/dataset_stream.h

struct DatasetOptions {
  std::string label_column = "label";  // CSV only
  std::string id_column;               // CSV only; empty: ids are row indices
};

struct Dataset {
  std::string path;
  int64_t n = 0;                // examples
  int64_t d = 0;                // features per example
  HostVector<double> X;         // [n, d] row-major (common/host_memory.h: it can be large)
  // X's trailing shape as stored: [n, H, W] gives {H, W}, [n, d] gives {d}, a 1-D X [n]
  // gives {} (one value per example); the product is always d. CSV: {d}.
  std::vector<int64_t> example_shape;
  // X came with an integer dtype (an .npz int8 … uint64 array): token ids for an embedding
  // layer, exact as doubles up to 2⁵³. Never set for CSV, whose numbers have no dtype (a
  // CSV of whole numbers is still ordinary features).
  bool integer_features = false;
  int64_t target_width = 1;     // 1 for labels or y [n]; k for y [n, k]
  bool integer_targets = true;  // y came as integers (class labels)
  std::vector<double> y;        // [n, target_width] row-major
  std::vector<int64_t> ids;     // [n], unique
  // CSV only: the name of the first feature column when it looks like the index pandas
  // writes by default (header "" or "Unnamed: 0", values 0, 1, ..., n-1), for the hint
  // in a feature-count mismatch.
  std::optional<std::string> index_like_column;
  // Data larger than memory (--max-memory; io/dataset_stream.h): X is empty and its rows
  // are read from `streamed` a block at a time (engine/streamed_rows.h); row i is the
  // file's row x_rows[i] (x_rows empty: row i). Only code that never reads X takes such a
  // Dataset: UploadData streams it, and the commands that accept --max-memory say which.
  std::shared_ptr<const StreamedX> streamed;
  std::vector<int64_t> x_rows;

  // Row index of each id in `wanted`; throws lethe::Error naming the first unknown id.
  std::vector<int64_t> RowsOf(const std::vector<int64_t>& wanted, const std::string& what) const;
};

// Throws lethe::Error "PATH: problem" for a missing or malformed file, a missing X or y,
// n mismatches, NaN/Inf in X or y, or duplicate ids.
Dataset LoadDataset(const std::string& path, const DatasetOptions& options = {});

// Forget sets: one id per line, '#' starts a comment, blank lines ignored.
std::vector<int64_t> ReadIdFile(const std::string& path);
// "3,17,42" (spaces allowed). `what` names the option in error messages.
std::vector<int64_t> ParseIdList(const std::string& list, const std::string& what);

}  // namespace lethe::io
