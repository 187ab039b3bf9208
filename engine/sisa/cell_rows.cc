#include "engine/sisa/cell_rows.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "io/sha256.h"

namespace lethe::sisa {
namespace {

template <typename V>
void Append(std::string& out, V v) {
  // Little-endian on every platform lethe builds for (x86-64, aarch64).
  char bytes[sizeof(V)];
  std::memcpy(bytes, &v, sizeof(V));
  out.append(bytes, sizeof(V));
}

}  // namespace

std::string CellRowsSha256(const io::Dataset& data,
                           const std::unordered_map<int64_t, int64_t>& row_of_id,
                           const std::vector<int64_t>& ids) {
  std::string bytes = "lethe-cell-rows/1";
  Append<int64_t>(bytes, data.d);
  Append<int64_t>(bytes, data.target_width);
  bytes.reserve(bytes.size() + ids.size() * 8 * (1 + data.d + data.target_width));
  for (int64_t id : ids) {
    auto it = row_of_id.find(id);
    LETHE_CHECK(it != row_of_id.end());
    const int64_t row = it->second;
    Append<int64_t>(bytes, id);
    for (int64_t j = 0; j < data.d; ++j) Append<double>(bytes, data.X[row * data.d + j]);
    for (int64_t j = 0; j < data.target_width; ++j)
      Append<double>(bytes, data.y[row * data.target_width + j]);
  }
  return io::Sha256Hex(bytes);
}

void FillCellHashes(Manifest& m, const io::Dataset& data,
                    const std::unordered_map<int64_t, int64_t>& row_of_id) {
  for (Shard& s : m.shards)
    for (Checkpoint& c : s.slices) c.rows_sha256 = CellRowsSha256(data, row_of_id, c.ids);
}

std::optional<CellMismatch> FirstCellMismatch(const Manifest& m, const io::Dataset& all,
                                              const std::unordered_map<int64_t, int64_t>& all_of,
                                              const io::Dataset& rows,
                                              const std::unordered_map<int64_t, int64_t>& rows_of,
                                              const std::string& path,
                                              const std::set<int>* hashed) {
  LETHE_CHECK(m.version >= 2);
  const int64_t R = m.partition.slices;
  for (int s = 0; s < m.partition.shards; ++s)
    for (int r = 0; r < R; ++r) {
      const Checkpoint& c = m.shards[s].slices[r];
      const int64_t cell = s * R + r;
      for (int64_t id : c.ids)
        if (!all_of.count(id))
          return CellMismatch{
              2 * cell,
              ::lethe::detail::Concat(path, ": cell (shard ", s, ", slice ", r, ") lacks id ", id,
                                      ", which the ensemble still "
                                      "trains on (only forgotten rows may be deleted)")};
      if ((!hashed || hashed->count(s)) && CellRowsSha256(rows, rows_of, c.ids) != c.rows_sha256)
        return CellMismatch{
            2 * cell + 1,
            ::lethe::detail::Concat(path, ": cell (shard ", s, ", slice ", r,
                                    ") rows differ from "
                                    "the ones the ensemble was trained on (SHA-256 of the cell's "
                                    "rows)")};
    }
  // Every id of the file is either listed (checked above) or forgotten: any other is new.
  const int64_t after_cells = 2 * m.partition.shards * R;
  for (int64_t i = 0; i < all.n; ++i) {
    const int64_t id = all.ids[i];
    if (m.forgotten.Contains(id)) continue;
    const Cell cell = Assign(id, m.partition);
    const auto& ids = m.shards[cell.shard].slices[cell.slice].ids;
    if (!std::binary_search(ids.begin(), ids.end(), id))
      return CellMismatch{
          after_cells + i,
          ::lethe::detail::Concat(path, ": cell (shard ", cell.shard, ", slice ", cell.slice,
                                  ") gains id ", id, ", which the ensemble was not trained on")};
  }
  return std::nullopt;
}

void CheckCells(const Manifest& m, const io::Dataset& data,
                const std::unordered_map<int64_t, int64_t>& row_of_id, const std::string& path) {
  if (const auto e = FirstCellMismatch(m, data, row_of_id, data, row_of_id, path, nullptr))
    throw Error(e->message);
}

}  // namespace lethe::sisa
