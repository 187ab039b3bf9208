// io/dataset_rows.h: the rows of a dataset picked by id are LoadDataset's rows, bit for bit,
// read by offset (stored .npz), by inflating block by block (deflated .npz), row by row
// (.csv) or whole (Fortran order); every row's ids and y come along; a NaN in X is returned
// as the first selected row, not thrown; sizes from the file are checked before use.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "io/csv.h"
#include "io/dataset.h"
#include "io/dataset_rows.h"
#include "io/npy.h"
#include "test_util.h"

namespace lethe::io {
namespace {

using testing::BuildZip;
using testing::TempDir;
using testing::WriteBytes;
using testing::ZipMember;

ZipMember Member(const std::string& name, const std::string& data, uint16_t method) {
  ZipMember m;
  m.name = name;
  m.data = data;
  m.method = method;
  return m;
}

// n rows of d features (f32 or f64), y labels, ids 1000 + 7i (not row indices).
struct Data {
  int64_t n, d;
  std::vector<double> X, y;
  std::vector<int64_t> ids;
};
Data MakeData(int64_t n, int64_t d, DType dtype) {
  Data data{n, d, {}, {}, {}};
  std::mt19937_64 rng(3);
  std::normal_distribution<double> g;
  for (int64_t i = 0; i < n * d; ++i)
    data.X.push_back(dtype == DType::kF32 ? static_cast<float>(g(rng)) : g(rng));
  for (int64_t i = 0; i < n; ++i) {
    data.y.push_back(static_cast<double>(i % 3));
    data.ids.push_back(1000 + 7 * i);
  }
  return data;
}

std::string Npz(const Data& data, DType dtype, uint16_t method) {
  std::vector<int64_t> labels(data.y.begin(), data.y.end());
  return BuildZip({Member("X.npy", SerializeNpy(Array::FromDouble(data.X, {data.n, data.d}, dtype)), method),
                   Member("y.npy", SerializeNpy(Array::FromInt64(labels, {data.n})), method),
                   Member("ids.npy", SerializeNpy(Array::FromInt64(data.ids, {data.n})), method)});
}

bool Keep(int64_t id) { return (id / 7) % 5 == 1 || (id / 7) % 5 == 2; }  // runs of two rows

// LoadDatasetRows against LoadDataset of the same file.
void ExpectSameRows(const std::string& path, const DatasetOptions& options = {}) {
  const Dataset whole = LoadDataset(path, options);
  const DatasetRows got = LoadDatasetRows(path, options, Keep);
  EXPECT_EQ(got.all.n, whole.n);
  EXPECT_EQ(got.all.d, whole.d);
  EXPECT_EQ(got.all.ids, whole.ids);
  EXPECT_EQ(got.all.y, whole.y);
  EXPECT_TRUE(got.all.X.empty());
  EXPECT_EQ(got.nonfinite_row, -1);
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < whole.n; ++i)
    if (Keep(whole.ids[i])) rows.push_back(i);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(got.file_rows, rows);
  ASSERT_EQ(got.rows.n, static_cast<int64_t>(rows.size()));
  ASSERT_EQ(got.rows.X.size(), rows.size() * whole.d);
  for (size_t k = 0; k < rows.size(); ++k) {
    EXPECT_EQ(got.rows.ids[k], whole.ids[rows[k]]);
    EXPECT_EQ(got.rows.y[k], whole.y[rows[k]]);
    for (int64_t j = 0; j < whole.d; ++j)
      ASSERT_EQ(got.rows.X[k * whole.d + j], whole.X[rows[k] * whole.d + j]) << path << " " << k;
  }
}

TEST(DatasetRows, NpzStoredAndDeflatedAreLoadDatasetsRows) {
  TempDir tmp;
  // 40 000 rows of 5 doubles: 1.6 MB, more than one 1 MiB block of the deflated reader.
  for (DType dtype : {DType::kF64, DType::kF32})
    for (uint16_t method : {0, 8}) {
      const Data data = MakeData(40000, 5, dtype);
      const std::string path = tmp.Path("d" + std::to_string(method) + DTypeName(dtype) + ".npz");
      WriteBytes(path, Npz(data, dtype, method));
      ExpectSameRows(path);
    }
}

TEST(DatasetRows, CsvIsLoadDatasetsRows) {
  TempDir tmp;
  const Data data = MakeData(500, 3, DType::kF64);
  const std::string path = tmp.Path("d.csv");
  {
    std::ofstream f(path);
    f << "label,a,id,b,c\n";
    for (int64_t i = 0; i < data.n; ++i)
      f << data.y[i] << "," << FormatDouble(data.X[i * 3]) << "," << data.ids[i] << ","
        << FormatDouble(data.X[i * 3 + 1]) << "," << FormatDouble(data.X[i * 3 + 2]) << "\n";
  }
  DatasetOptions options;
  options.id_column = "id";
  ExpectSameRows(path, options);
  // A malformed field in a row not selected is still the one-process error.
  std::ofstream(path, std::ios::app) << "1,2,3,4,x\n";
  EXPECT_LETHE_ERROR(LoadDatasetRows(path, options, [](int64_t) { return false; }), path,
                     "not a number");
}

TEST(DatasetRows, FortranOrderIsLoadedWholeThenSelected) {
  TempDir tmp;
  const Data data = MakeData(300, 4, DType::kF64);
  Array X = Array::FromDouble(data.X, {data.n, data.d}, DType::kF64);
  std::string npy = SerializeNpy(X);
  // Rewrite as Fortran order: the header flag, and the bytes column-major.
  const size_t flag = npy.find("'fortran_order': False");
  ASSERT_NE(flag, std::string::npos);
  npy.replace(flag, 22, "'fortran_order': True ");
  const size_t at = npy.size() - X.bytes.size();
  for (int64_t i = 0; i < data.n; ++i)
    for (int64_t j = 0; j < data.d; ++j)
      std::memcpy(&npy[at + (j * data.n + i) * 8], &data.X[i * data.d + j], 8);
  std::vector<int64_t> labels(data.y.begin(), data.y.end());
  const std::string path = tmp.Path("f.npz");
  WriteBytes(path, BuildZip({Member("X.npy", npy, 0),
                             Member("y.npy", SerializeNpy(Array::FromInt64(labels, {data.n})), 0),
                             Member("ids.npy", SerializeNpy(Array::FromInt64(data.ids, {data.n})), 0)}));
  ExpectSameRows(path);
  EXPECT_EQ(LoadDataset(path).X[1], data.X[1]);  // the rewrite is what LoadDataset reads
}

TEST(DatasetRows, NanIsTheFirstSelectedRowNotAnError) {
  TempDir tmp;
  for (uint16_t method : {0, 8}) {
    Data data = MakeData(100, 2, DType::kF64);
    // Row i has id 1000 + 7i, id / 7 = 142 + i: Keep selects the rows with i % 5 in {0, 4}.
    data.X[2 * 41 + 1] = std::nan("");  // row 41 (id 1287): not selected
    data.X[2 * 44] = INFINITY;          // row 44: selected
    data.X[2 * 50] = std::nan("");      // row 50: selected, later
    const std::string path = tmp.Path("nan" + std::to_string(method) + ".npz");
    WriteBytes(path, Npz(data, DType::kF64, method));
    EXPECT_EQ(LoadDatasetRows(path, {}, Keep).nonfinite_row, 44);
    EXPECT_EQ(LoadDatasetRows(path, {}, [](int64_t id) { return id == 1287; }).nonfinite_row, 41);
    EXPECT_EQ(LoadDatasetRows(path, {}, [](int64_t id) { return id == 1000; }).nonfinite_row, -1);
    EXPECT_LETHE_ERROR(LoadDataset(path), path, NonFiniteXMessage(path, 41).substr(path.size() + 2));
  }
}

TEST(DatasetRows, SizesFromTheFileAreChecked) {
  TempDir tmp;
  const Data data = MakeData(50, 2, DType::kF64);
  std::vector<int64_t> labels(data.y.begin(), data.y.end());
  const std::string y = SerializeNpy(Array::FromInt64(labels, {data.n}));
  const std::string X = SerializeNpy(Array::FromDouble(data.X, {data.n, data.d}, DType::kF64));
  // X's header claims more rows than its bytes hold (stored and deflated).
  std::string longer = X;
  const size_t shape = longer.find("(50, 2)");
  ASSERT_NE(shape, std::string::npos);
  longer.replace(shape, 7, "(90, 2)");
  for (uint16_t method : {0, 8}) {
    const std::string path = tmp.Path("long" + std::to_string(method) + ".npz");
    WriteBytes(path, BuildZip({Member("X.npy", longer, method), Member("y.npy", y, method)}));
    EXPECT_LETHE_ERROR(LoadDatasetRows(path, {}, Keep), path, "declared size");
  }
  // y's rows are not X's: LoadDataset's message.
  const std::string path = tmp.Path("short_y.npz");
  WriteBytes(path, BuildZip({Member("X.npy", X, 0),
                             Member("y.npy", SerializeNpy(Array::FromInt64({0, 1}, {2})), 0)}));
  EXPECT_LETHE_ERROR(LoadDatasetRows(path, {}, Keep), path, "y has 2 rows but X has 50");
  // A truncated deflated X: the stream ends early.
  ZipMember cut = Member("X.npy", X, 8);
  cut.payload_override = testing::Deflate(X).substr(0, 100);
  cut.use_payload_override = true;
  const std::string cut_path = tmp.Path("cut.npz");
  WriteBytes(cut_path, BuildZip({cut, Member("y.npy", y, 0)}));
  try {
    LoadDatasetRows(cut_path, {}, Keep);
    ADD_FAILURE() << "no error for a truncated member";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(cut_path, 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace lethe::io
