// The fuzz harnesses of the dataset readers (fuzz_npz, fuzz_csv) also read each input by
// rows picked by id (io/dataset_rows.h, SISA under mpirun) and compare: a file LoadDataset
// accepts must be accepted with the same ids, targets and rows, bit for bit (a difference
// aborts, so the fuzzer reports it); a file it refuses must be refused or, when X is read
// in part, at worst accepted with the rows read intact (a stored member's CRC-32 and the
// rows not selected are not looked at).
#pragma once

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "common/error.h"
#include "io/dataset.h"
#include "io/dataset_rows.h"

namespace lethe::fuzz {

inline void CheckRowsAgainstWhole(const std::string& path) {
  std::optional<io::Dataset> whole;
  try {
    whole = io::LoadDataset(path);
  } catch (const Error&) {
  }
  io::DatasetRows rows;
  try {
    rows = io::LoadDatasetRows(path, {}, [](int64_t id) { return id % 3 != 1; });
  } catch (const Error&) {
    if (whole) std::abort();  // accepted whole, refused by rows
    return;
  }
  if (!whole) return;
  const auto same = [](const auto& a, const auto& b) {
    return a.size() == b.size() &&
           (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0);
  };
  const io::Dataset& w = *whole;
  if (rows.nonfinite_row != -1 || rows.all.n != w.n || rows.all.d != w.d ||
      !same(rows.all.ids, w.ids) || !same(rows.all.y, w.y) || !rows.all.X.empty())
    std::abort();
  const io::Dataset& r = rows.rows;
  if (r.n != static_cast<int64_t>(rows.file_rows.size()) ||
      r.X.size() != rows.file_rows.size() * static_cast<size_t>(w.d))
    std::abort();
  for (size_t k = 0; k < rows.file_rows.size(); ++k) {
    const int64_t i = rows.file_rows[k];
    if (i < 0 || i >= w.n || w.ids[i] % 3 == 1 || r.ids[k] != w.ids[i] ||
        std::memcmp(r.X.data() + k * w.d, w.X.data() + i * w.d, sizeof(double) * w.d) != 0)
      std::abort();
  }
}

}  // namespace lethe::fuzz
