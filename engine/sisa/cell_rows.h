// Per-cell hashes of a SISA ensemble's training rows (docs/unlearning.md, "SISA"): what lets
// `lethe sisa unlearn` (and `lethe unlearn --model DIR`) accept a data file from which the
// forgotten rows were physically deleted, while refusing any other change.
//
// A cell's hash covers exactly the rows it trains on: for each of its ids, ascending,
//   id (int64, little-endian), the row's features x (d float64), its targets y (float64 each)
// after a header "lethe-cell-rows/1", d and the target width (int64 each). The whole-file
// SHA-256 can only say "same file"; the cells say "the same rows for every id that is still
// trained on", which is what exact retraining needs: a forgotten id's row is never read again.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/sisa/manifest.h"
#include "io/dataset.h"

namespace lethe::sisa {

// The hash above of `ids` (ascending; each must be in row_of_id).
std::string CellRowsSha256(const io::Dataset& data,
                           const std::unordered_map<int64_t, int64_t>& row_of_id,
                           const std::vector<int64_t>& ids);

// Sets every checkpoint's rows_sha256 from `data` (which must hold every listed id).
void FillCellHashes(Manifest& m, const io::Dataset& data,
                    const std::unordered_map<int64_t, int64_t>& row_of_id);

// Checks a data file that is not byte for byte the recorded one: every id a cell lists
// must be present with the rows its rows_sha256 records, and every other id must be one the
// ensemble has forgotten. Throws lethe::Error "PATH: ... cell (shard s, slice r) ..." naming
// the first mismatch (cells in shard, then slice order). The manifest must be lethe-sisa/2.
void CheckCells(const Manifest& m, const io::Dataset& data,
                const std::unordered_map<int64_t, int64_t>& row_of_id, const std::string& path);

// CheckCells' first mismatch, split for ranks that each hold some shards' rows (lethe
// sisa under mpirun): `all` has every row's id (its X may be empty), `rows` X of the rows
// of the shards in `hashed` (every shard when null), whose cells alone are hashed here; the
// id checks read `all`. `key` orders the mismatches as CheckCells meets them (cell s·R + r:
// 2·cell for a lacking id, 2·cell + 1 for its hash; then 2·S·R + row for a gained id), so
// the smallest over ranks that together hash every shard is CheckCells' error.
struct CellMismatch {
  int64_t key = 0;
  std::string message;
};
std::optional<CellMismatch> FirstCellMismatch(const Manifest& m, const io::Dataset& all,
                                              const std::unordered_map<int64_t, int64_t>& all_of,
                                              const io::Dataset& rows,
                                              const std::unordered_map<int64_t, int64_t>& rows_of,
                                              const std::string& path, const std::set<int>* hashed);

}  // namespace lethe::sisa
