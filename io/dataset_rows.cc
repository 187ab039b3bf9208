#include "io/dataset_rows.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/checked_alloc.h"
#include "common/error.h"
#include "common/quote.h"
#include "io/dataset_arrays.h"
#include "io/input_file.h"
#include "io/npy.h"
#include "io/npy_format.h"
#include "io/npz_member.h"
#include "io/zip.h"

namespace lethe::io {
namespace {

// X is read (or inflated) this many bytes of rows at a time: the only buffer besides the
// selected rows.
constexpr int64_t kBlockBytes = int64_t{1} << 20;

// Every field of `all` but X, the rows `file_rows` of its y and ids, and `X` (those rows').
Dataset Subset(const Dataset& all, const std::vector<int64_t>& file_rows, HostVector<double> X) {
  Dataset r;
  r.path = all.path;
  r.d = all.d;
  r.example_shape = all.example_shape;
  r.integer_features = all.integer_features;
  r.target_width = all.target_width;
  r.integer_targets = all.integer_targets;
  r.n = static_cast<int64_t>(file_rows.size());
  r.X = std::move(X);
  r.y.reserve(file_rows.size() * static_cast<size_t>(all.target_width));
  r.ids.reserve(file_rows.size());
  for (int64_t i : file_rows) {
    r.y.insert(r.y.end(), all.y.begin() + i * all.target_width,
               all.y.begin() + (i + 1) * all.target_width);
    r.ids.push_back(all.ids[i]);
  }
  return r;
}

std::vector<int64_t> Selected(const Dataset& all, const std::function<bool(int64_t)>& keep) {
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < all.n; ++i)
    if (keep(all.ids[i])) rows.push_back(i);
  return rows;
}

// The whole file loaded (LoadDataset, its checks), then the rows selected.
DatasetRows WholeThenSelect(const std::string& path, const DatasetOptions& options,
                            const std::function<bool(int64_t)>& keep) {
  DatasetRows out;
  out.all = LoadDataset(path, options);
  out.file_rows = Selected(out.all, keep);
  HostVector<double> X;
  ResizeChecked(X, out.file_rows.size() * static_cast<uint64_t>(out.all.d), path + ": X rows");
  for (size_t k = 0; k < out.file_rows.size(); ++k)
    std::copy_n(out.all.X.begin() + out.file_rows[k] * out.all.d, out.all.d,
                X.begin() + static_cast<int64_t>(k) * out.all.d);
  out.all.X = HostVector<double>();
  out.all.index_like_column.reset();
  out.rows = Subset(out.all, out.file_rows, std::move(X));
  return out;
}

DatasetRows LoadNpzRows(const std::string& path, const std::function<bool(int64_t)>& keep) {
  InputFile file(path);
  const std::vector<zip::Entry> entries = zip::ReadDirectory(file);
  const zip::Entry* entry = &XMember(entries, path);
  const std::string what = path + ": member " + Quote(entry->name);
  zip::MemberReader reader(file, *entry);
  uint64_t data_start = 0;
  const npy::Header header = ReadNpyMemberHeader(reader, *entry, what, &data_start);
  if (header.fortran_order && header.shape.size() > 1) return WholeThenSelect(path, {}, keep);

  // Every row's y and ids, and every check LoadDataset makes of them and of X's dtype and
  // shape (as io/dataset_stream.cc does).
  DatasetRows out;
  out.all = NpzDatasetMeta(path, header);
  const int64_t n = out.all.n, d = out.all.d;
  // The header's size was checked against the member's declared size; the rows' bytes must
  // be exactly that size before any offset is computed from them.
  const uint64_t row_bytes = static_cast<uint64_t>(d) * static_cast<uint64_t>(DTypeSize(header.dtype));
  if (row_bytes == 0 || header.data_bytes / row_bytes != static_cast<uint64_t>(n) ||
      header.data_bytes % row_bytes != 0)
    Fail(what, ": ", header.data_bytes, " data bytes are not ", n, " rows of ", row_bytes);
  out.file_rows = Selected(out.all, keep);
  const std::vector<int64_t>& rows = out.file_rows;
  HostVector<double> X;
  ResizeChecked(X, rows.size() * static_cast<uint64_t>(d), path + ": X rows");
  const int64_t block_rows =
      std::max<int64_t>(1, kBlockBytes / static_cast<int64_t>(row_bytes));
  Array block;
  block.dtype = header.dtype;
  if (entry->method == 0) {
    // Stored: the data lie at data_offset + data_start, inside the member (its sizes were
    // checked against the file by ReadDirectory, data_start + data_bytes against its size).
    if (entry->compressed_size != entry->uncompressed_size ||
        data_start + header.data_bytes != entry->uncompressed_size)
      Fail(what, ": stored member's sizes disagree (", entry->compressed_size, " and ",
           entry->uncompressed_size, " bytes)");
    const uint64_t data_at = entry->data_offset + data_start;
    for (size_t k = 0; k < rows.size();) {
      // A run of consecutive file rows, at most a block.
      size_t end = k + 1;
      while (end < rows.size() && rows[end] == rows[end - 1] + 1 &&
             static_cast<int64_t>(end - k) < block_rows)
        ++end;
      const uint64_t count = end - k;
      block.shape = {static_cast<int64_t>(count) * d};
      block.bytes.resize(static_cast<size_t>(count * row_bytes));
      file.ReadAt(data_at + static_cast<uint64_t>(rows[k]) * row_bytes, block.bytes.data(),
                  block.bytes.size());
      block.ToDouble(path + ": X", X.data() + static_cast<int64_t>(k) * d);
      k = end;
    }
  } else if (!rows.empty()) {
    // Deflated: inflated from the start, a block of rows at a time, the selected rows kept.
    std::vector<double> values;
    size_t k = 0;
    for (int64_t row = 0; row < n; row += block_rows) {
      const int64_t count = std::min(block_rows, n - row);
      block.shape = {count * d};
      block.bytes.resize(static_cast<size_t>(static_cast<uint64_t>(count) * row_bytes));
      reader.Read(block.bytes.data(), block.bytes.size());
      if (k == rows.size() || rows[k] >= row + count) continue;  // none selected here
      values.resize(static_cast<size_t>(count * d));
      block.ToDouble(path + ": X", values.data());
      for (; k < rows.size() && rows[k] < row + count; ++k)
        std::copy_n(values.begin() + (rows[k] - row) * d, d,
                    X.begin() + static_cast<int64_t>(k) * d);
    }
    reader.Finish();  // the member's end and its CRC-32
  }
  for (size_t k = 0; k < rows.size() && out.nonfinite_row < 0; ++k)
    for (int64_t j = 0; j < d; ++j)
      if (!std::isfinite(X[static_cast<int64_t>(k) * d + j])) {
        out.nonfinite_row = rows[k];
        break;
      }
  out.rows = Subset(out.all, rows, std::move(X));
  return out;
}

}  // namespace

std::string NonFiniteXMessage(const std::string& path, int64_t row) {
  return path + ": X contains NaN or Inf at row " + std::to_string(row);
}

DatasetRows LoadDatasetRows(const std::string& path, const DatasetOptions& options,
                            const std::function<bool(int64_t)>& keep) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext == ".npz") return LoadNpzRows(path, keep);
  if (ext != ".csv") return WholeThenSelect(path, options, keep);  // LoadDataset's refusal
  DatasetRows out;
  HostVector<double> X;
  out.all = LoadCsvRows(path, options, keep, &X, &out.file_rows);
  out.rows = Subset(out.all, out.file_rows, std::move(X));
  out.rows.index_like_column = out.all.index_like_column;  // CheckDataMatchesModel's hint
  return out;
}

}  // namespace lethe::io
