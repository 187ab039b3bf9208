#include "io/dataset_block.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>

#include "common/checked_alloc.h"
#include "common/error.h"
#include "common/quote.h"
#include "io/dataset_arrays.h"
#include "io/input_file.h"
#include "io/npy_format.h"
#include "io/zip.h"

namespace lethe::io {
namespace {

int64_t Begin(int64_t n, int rank, int size) {
  return static_cast<int64_t>(static_cast<__int128>(n) * rank / size);
}

// Rows [begin, end) of a whole dataset.
Dataset Slice(Dataset all, int64_t begin, int64_t end) {
  Dataset ds = std::move(all);
  const int64_t count = end - begin;
  HostVector<double> X;
  ResizeChecked(X, static_cast<uint64_t>(count * ds.d), ds.path + ": X block");
  std::copy(ds.X.begin() + begin * ds.d, ds.X.begin() + end * ds.d, X.begin());
  ds.X = std::move(X);
  ds.y = std::vector<double>(ds.y.begin() + begin * ds.target_width,
                             ds.y.begin() + end * ds.target_width);
  ds.ids = std::vector<int64_t>(ds.ids.begin() + begin, ds.ids.begin() + end);
  ds.n = count;
  ds.index_like_column.reset();  // a hint about the whole file's first column
  return ds;
}

DatasetBlock WholeThenSlice(const std::string& path, const DatasetOptions& options, int rank,
                            int size) {
  DatasetBlock b;
  Dataset all = LoadDataset(path, options);
  b.total_rows = all.n;
  if (all.n < size)
    Fail(path, ": ", all.n, " rows, fewer than the ", size, " processes (mpirun -np)");
  b.first_row = Begin(all.n, rank, size);
  b.data = Slice(std::move(all), b.first_row, Begin(b.total_rows, rank + 1, size));
  return b;
}

// A stored member's npy header, read in place; nullopt when it cannot be read by offset.
struct StoredMember {
  npy::Header header;
  uint64_t data_at = 0;  // file offset of its first data byte
};
std::optional<StoredMember> ReadStoredHeader(const InputFile& file, const zip::Entry& entry,
                                             const std::string& what) {
  if (entry.method != 0 || entry.compressed_size != entry.uncompressed_size) return std::nullopt;
  const uint64_t size = entry.uncompressed_size;
  const std::string first = file.ReadString(
      entry.data_offset, static_cast<size_t>(std::min<uint64_t>(size, npy::kPreambleSize)));
  const npy::Preamble preamble = npy::ParsePreamble(first, size, what);
  const std::string dict = file.ReadString(entry.data_offset + preamble.header_start,
                                           static_cast<size_t>(preamble.header_size));
  StoredMember m;
  m.header = npy::ParseHeader(dict, preamble, what);
  const uint64_t data_start = preamble.header_start + preamble.header_size;
  if (size - data_start != m.header.data_bytes) return std::nullopt;  // the whole load says why
  if (m.header.fortran_order && m.header.shape.size() > 1) return std::nullopt;
  if (m.header.shape.empty()) return std::nullopt;
  m.data_at = entry.data_offset + data_start;
  return m;
}

}  // namespace

DatasetBlock LoadDatasetBlock(const std::string& path, const DatasetOptions& options, int rank,
                              int size) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext != ".npz") return WholeThenSlice(path, options, rank, size);

  InputFile file(path);
  const std::vector<zip::Entry> entries = zip::ReadDirectory(file);
  std::map<std::string, const zip::Entry*> wanted;
  for (const zip::Entry& e : entries)
    for (const char* name : {"X", "y", "ids"})
      if (e.name == std::string(name) + ".npy") wanted[name] = &e;
  std::map<std::string, StoredMember> members;
  for (const auto& [name, entry] : wanted) {
    auto m = ReadStoredHeader(file, *entry, path + ": member " + Quote(entry->name));
    if (!m) return WholeThenSlice(path, options, rank, size);
    members.emplace(name, std::move(*m));
  }
  // Anything but consistent leading dimensions: the whole load names the problem.
  if (!members.count("X") || !members.count("y")) return WholeThenSlice(path, options, rank, size);
  const int64_t n = members.at("X").header.shape[0];
  for (const auto& [name, m] : members)
    if (m.header.shape[0] != n) return WholeThenSlice(path, options, rank, size);
  if (n < size) Fail(path, ": ", n, " rows, fewer than the ", size, " processes (mpirun -np)");

  DatasetBlock b;
  b.total_rows = n;
  b.first_row = Begin(n, rank, size);
  const int64_t count = Begin(n, rank + 1, size) - b.first_row;
  b.by_offset = true;
  std::map<std::string, Array> arrays;
  for (auto& [name, m] : members) {
    const uint64_t row_bytes = m.header.data_bytes / static_cast<uint64_t>(n);
    npy::Header header = m.header;
    header.shape[0] = count;
    header.data_bytes = row_bytes * static_cast<uint64_t>(count);
    HostVector<uint8_t> data;
    ResizeChecked(data, header.data_bytes, path + ": member " + Quote(name + ".npy") + " block");
    if (header.data_bytes > 0)
      file.ReadAt(m.data_at + row_bytes * static_cast<uint64_t>(b.first_row), data.data(),
                  static_cast<size_t>(header.data_bytes));
    arrays.emplace(name, npy::FromData(std::move(header), std::move(data)));
  }
  b.data = DatasetFromArrays(path, std::move(arrays), b.first_row);
  return b;
}

}  // namespace lethe::io
