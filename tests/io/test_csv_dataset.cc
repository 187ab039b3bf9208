#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>

#include "io/csv.h"
#include "io/dataset.h"
#include "io/npy.h"
#include "test_util.h"

namespace lethe::io {
namespace {

using testing::BuildZip;
using testing::FixturePath;
using testing::TempDir;
using testing::WriteBytes;
using testing::ZipMember;

// ---- CSV ----

TEST(Csv, QuotingLineEndsAndBom) {
  TempDir tmp;
  const std::string path = tmp.Path("q.csv");
  WriteBytes(path,
             "\xEF\xBB\xBF"
             "name,value\r\n"
             "\"a,b\",1\r\n"
             "\"say \"\"hi\"\"\",2\n"
             "\"multi\nline\",3\n"
             ",\"\"\n"
             "\n\n");
  const CsvTable t = ReadCsv(path);
  EXPECT_EQ(t.header, (std::vector<std::string>{"name", "value"}));
  ASSERT_EQ(t.rows.size(), 4u);
  EXPECT_EQ(t.rows[0], (std::vector<std::string>{"a,b", "1"}));
  EXPECT_EQ(t.rows[1], (std::vector<std::string>{"say \"hi\"", "2"}));
  EXPECT_EQ(t.rows[2], (std::vector<std::string>{"multi\nline", "3"}));
  EXPECT_EQ(t.rows[3], (std::vector<std::string>{"", ""}));
  EXPECT_EQ(t.row_lines, (std::vector<int64_t>{2, 3, 4, 6}));
}

TEST(Csv, RejectsMalformed) {
  TempDir tmp;
  struct Case {
    const char* label;
    const char* text;
    const char* phrase;
  };
  const std::vector<Case> cases = {
      {"empty", "", ": empty file"},
      {"fields", "a,b\n1,2\n3\n", ":3: row has 1 fields but the header has 2"},
      {"unterminated", "a,b\n1,\"2\n3,4\n", ":2: unterminated quoted field"},
      {"after_quote", "a,b\n\"1\"x,2\n", ":2: unexpected character after a closing quote"},
      {"bare_quote", "a,b\n1,2\"3\n", ":2: '\"' inside an unquoted field"},
      {"duplicate", "a,a\n1,2\n", ":1: duplicate column 'a'"},
      {"blank", "a,b\n1,2\n\n3,4\n", ":3: blank line"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = tmp.Path(std::string(c.label) + ".csv");
    WriteBytes(path, c.text);
    EXPECT_LETHE_ERROR(ReadCsv(path), path, c.phrase);
  }
}

TEST(Csv, FormatDouble) {
  EXPECT_EQ(FormatDouble(3.0), "3");
  EXPECT_EQ(FormatDouble(-12.0), "-12");
  EXPECT_EQ(FormatDouble(0.1), "0.10000000000000001");
  EXPECT_EQ(FormatDouble(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(FormatDouble(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(FormatDouble(-std::numeric_limits<double>::infinity()), "-inf");
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> dist(-1e6, 1e6);
  for (int i = 0; i < 1000; ++i) {
    const double v = dist(rng) * std::pow(10.0, static_cast<int>(rng() % 40) - 20);
    EXPECT_EQ(std::strtod(FormatDouble(v).c_str(), nullptr), v);
  }
}

// ---- datasets from CSV ----

TEST(Dataset, CsvWithLabelsAndIds) {
  TempDir tmp;
  const std::string path = tmp.Path("d.csv");
  WriteBytes(path, "f1,label,id,f2\n0.5,1,100,2\n-1e-3, 0 ,101,+3\n7,2,105,nan_not\n");
  DatasetOptions options;
  options.id_column = "id";
  EXPECT_LETHE_ERROR(LoadDataset(path, options), path, ":4: column 'f2': not a number: 'nan_not'");
  WriteBytes(path, "f1,label,id,f2\n0.5,1,100,2\n-1e-3, 0 ,101,+3\n7,2,105,4\n");
  const Dataset ds = LoadDataset(path, options);
  EXPECT_EQ(ds.path, path);
  EXPECT_EQ(ds.n, 3);
  EXPECT_EQ(ds.d, 2);
  EXPECT_EQ(std::vector<double>(ds.X.begin(), ds.X.end()),
            (std::vector<double>{0.5, 2, -1e-3, 3, 7, 4}));
  EXPECT_TRUE(ds.integer_targets);
  EXPECT_EQ(ds.target_width, 1);
  EXPECT_EQ(ds.y, (std::vector<double>{1, 0, 2}));
  EXPECT_EQ(ds.ids, (std::vector<int64_t>{100, 101, 105}));
  EXPECT_EQ(ds.RowsOf({105, 100}, "--forget-ids"), (std::vector<int64_t>{2, 0}));
  EXPECT_LETHE_ERROR(ds.RowsOf({42}, "--forget-ids"), "--forget-ids",
                     "unknown id 42 (not in " + path + ")");
}

TEST(Dataset, CsvFloatTargetsAndDefaultIds) {
  TempDir tmp;
  const std::string path = tmp.Path("r.csv");
  WriteBytes(path, "x,target\n1,0.25\n2,1\n");
  DatasetOptions options;
  options.label_column = "target";
  const Dataset ds = LoadDataset(path, options);
  EXPECT_FALSE(ds.integer_targets);
  EXPECT_EQ(ds.y, (std::vector<double>{0.25, 1}));
  EXPECT_EQ(ds.ids, (std::vector<int64_t>{0, 1}));
}

TEST(Dataset, CsvErrors) {
  TempDir tmp;
  struct Case {
    const char* label;
    const char* text;
    std::string id_column;
    const char* phrase;
  };
  const std::vector<Case> cases = {
      {"no_label", "a,b\n1,2\n", "", "no column 'label' (use --label-column)"},
      {"no_id", "a,label\n1,2\n", "id", "no column 'id' (use --id-column)"},
      {"nan_x", "a,label\n1,0\nnan,1\n", "", "X contains NaN or Inf at row 1 (line 3)"},
      {"inf_y", "a,label\n1,inf\n", "", "y contains NaN or Inf at row 0"},
      {"dup_id", "id,a,label\n5,1,0\n6,1,0\n5,1,0\n", "id", "duplicate id 5 (rows 0 and 2)"},
      {"bad_id", "id,a,label\n5.5,1,0\n", "id", ":2: column 'id': not an integer: '5.5'"},
      {"no_rows", "a,label\n", "", "no data rows"},
      {"no_features", "label\n1\n", "", "no feature columns"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = tmp.Path(std::string(c.label) + ".csv");
    WriteBytes(path, c.text);
    DatasetOptions options;
    options.id_column = c.id_column;
    EXPECT_LETHE_ERROR(LoadDataset(path, options), path, c.phrase);
  }
  const std::string txt = tmp.Path("data.txt");
  WriteBytes(txt, "x");
  EXPECT_LETHE_ERROR(LoadDataset(txt), txt, "unsupported dataset format '.txt'");
  EXPECT_LETHE_ERROR(LoadDataset(tmp.Path("missing.csv")), tmp.Path("missing.csv"), "cannot open");
}

// ---- datasets from npz ----

TEST(Dataset, NpzFixtures) {
  const Dataset a = LoadDataset(FixturePath("savez.npz"));
  EXPECT_EQ(a.n, 4);
  EXPECT_EQ(a.d, 3);
  EXPECT_EQ(a.X[5], 5.5 / 4);
  EXPECT_TRUE(a.integer_targets);
  EXPECT_EQ(a.y, (std::vector<double>{0, 1, 2, 1}));
  EXPECT_EQ(a.ids, (std::vector<int64_t>{10, 11, 12, 13}));

  const Dataset b = LoadDataset(FixturePath("savez_compressed.npz"));
  EXPECT_FALSE(b.integer_targets);
  EXPECT_EQ(b.target_width, 2);
  EXPECT_EQ(b.y.size(), 8u);
  EXPECT_EQ(b.ids, (std::vector<int64_t>{5, 6, 7, 8}));
}

// Writes an npz of the given arrays (stored members) and returns its path.
std::string WriteNpz(const TempDir& tmp, const std::string& name,
                     const std::vector<std::pair<std::string, Array>>& arrays) {
  std::vector<ZipMember> members;
  for (const auto& [key, array] : arrays) {
    ZipMember m;
    m.name = key + ".npy";
    m.data = SerializeNpy(array);
    members.push_back(m);
  }
  const std::string path = tmp.Path(name);
  WriteBytes(path, BuildZip(members));
  return path;
}

Array F64(std::vector<double> v, std::vector<int64_t> shape) {
  return Array::FromDouble(v, std::move(shape), DType::kF64);
}
Array I64(std::vector<int64_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return Array::FromInt64(v, {n});
}

Array BoolArray(std::vector<uint8_t> v) {
  Array a;
  a.dtype = DType::kBool;
  a.shape = {static_cast<int64_t>(v.size())};
  a.bytes.assign(v.begin(), v.end());
  return a;
}

TEST(Dataset, NpzShapes) {
  TempDir tmp;
  // 1-D X means one feature; trailing dimensions are flattened.
  const Dataset one =
      LoadDataset(WriteNpz(tmp, "one.npz", {{"X", F64({1, 2, 3}, {3})}, {"y", I64({0, 1, 0})}}));
  EXPECT_EQ(one.d, 1);
  EXPECT_EQ(one.ids, (std::vector<int64_t>{0, 1, 2}));
  const Dataset cube = LoadDataset(WriteNpz(
      tmp, "cube.npz", {{"X", F64(std::vector<double>(12, 1.0), {2, 3, 2})}, {"y", I64({0, 1})}}));
  EXPECT_EQ(cube.n, 2);
  EXPECT_EQ(cube.d, 6);
  // The trailing shape is kept beside the flattened X; float X is not integer.
  EXPECT_EQ(cube.example_shape, (std::vector<int64_t>{3, 2}));
  EXPECT_FALSE(cube.integer_features);
  EXPECT_EQ(one.example_shape, (std::vector<int64_t>{}));
  const Dataset a = LoadDataset(FixturePath("savez.npz"));
  EXPECT_EQ(a.example_shape, (std::vector<int64_t>{3}));
  EXPECT_FALSE(a.integer_features);
}

// Token ids: X of an integer dtype ([n, L]) is read exactly, flagged, and shaped [L].
TEST(Dataset, NpzIntegerFeatures) {
  TempDir tmp;
  for (DType dtype : {DType::kI64, DType::kI32, DType::kU16, DType::kU8}) {
    SCOPED_TRACE(DTypeName(dtype));
    Array X = Array::FromInt64({0, 5, 7, 255, 3, 0}, {2, 3});
    if (dtype != DType::kI64) {  // narrow each little-endian int64 to the dtype's width
      const int width = DTypeSize(dtype);
      HostVector<uint8_t> narrow(6 * width);
      for (int i = 0; i < 6; ++i)
        for (int b = 0; b < width; ++b) narrow[i * width + b] = X.bytes[i * 8 + b];
      X.dtype = dtype;
      X.bytes = std::move(narrow);
    }
    const Dataset ds = LoadDataset(WriteNpz(tmp, "ids.npz", {{"X", X}, {"y", I64({1, 0})}}));
    EXPECT_TRUE(ds.integer_features);
    EXPECT_EQ(ds.n, 2);
    EXPECT_EQ(ds.d, 3);
    EXPECT_EQ(ds.example_shape, (std::vector<int64_t>{3}));
    EXPECT_EQ(std::vector<double>(ds.X.begin(), ds.X.end()),
              (std::vector<double>{0, 5, 7, 255, 3, 0}));
  }
  // int64 ids beyond f32's exact range still arrive exactly as doubles (the layer bounds them).
  const Dataset big = LoadDataset(WriteNpz(
      tmp, "big.npz", {{"X", Array::FromInt64({16777217, 2}, {2, 1})}, {"y", I64({1, 0})}}));
  EXPECT_EQ(big.X[0], 16777217.0);
}

// A CSV has no dtype: whole numbers there are ordinary features.
TEST(Dataset, CsvIsNeverIntegerFeatures) {
  TempDir tmp;
  const std::string path = tmp.Path("whole.csv");
  WriteBytes(path, "a,b,label\n1,2,0\n3,4,1\n");
  const Dataset ds = LoadDataset(path);
  EXPECT_FALSE(ds.integer_features);
  EXPECT_EQ(ds.example_shape, (std::vector<int64_t>{2}));
}

TEST(Dataset, NpzErrors) {
  TempDir tmp;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Array X = F64({1, 2, 3, 4, 5, 6, 7, 8}, {4, 2});
  const Array y = I64({0, 1, 0, 1});
  std::vector<int64_t> many(10);
  for (int i = 0; i < 10; ++i) many[i] = i + 10;
  many[9] = 17;
  std::vector<double> ten(20, 0.5);
  struct Case {
    const char* label;
    std::vector<std::pair<std::string, Array>> arrays;
    const char* phrase;
  };
  const std::vector<Case> cases = {
      {"missing_x", {{"y", y}}, "missing array 'X'"},
      {"missing_y", {{"X", X}}, "missing array 'y'"},
      {"nan_x",
       {{"X", F64({1, 2, 3, 4, nan, 6, 7, 8}, {4, 2})}, {"y", y}},
       "X contains NaN or Inf at row 2"},
      {"nan_y", {{"X", X}, {"y", F64({0, 1, nan, 1}, {4})}}, "y contains NaN or Inf at row 2"},
      {"n_mismatch", {{"X", X}, {"y", I64({0, 1, 0})}}, "y has 3 rows but X has 4"},
      {"int_y_2d",
       {{"X", X}, {"y", Array::FromInt64({0, 1, 0, 1, 0, 1, 0, 1}, {4, 2})}},
       "must have shape [n]"},
      {"bool_x",
       {{"X", BoolArray({1, 0, 1, 1})}, {"y", y}},
       "X must be float32 or float64 (features) or an integer dtype (token ids), got BOOL"},
      {"scalar_x", {{"X", F64({1}, {})}, {"y", y}}, "at least one dimension"},
      {"no_rows", {{"X", F64({}, {0, 2})}, {"y", I64({})}}, "X has no rows"},
      {"dup_ids",
       {{"X", F64(ten, {10, 2})}, {"y", I64(std::vector<int64_t>(10, 0))}, {"ids", I64(many)}},
       "duplicate id 17 (rows 7 and 9)"},
      {"ids_shape", {{"X", X}, {"y", y}, {"ids", I64({1, 2})}}, "ids must have shape [4]"},
      {"ids_float",
       {{"X", X}, {"y", y}, {"ids", F64({1, 2, 3, 4}, {4})}},
       "ids must be int64 or int32"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = WriteNpz(tmp, std::string(c.label) + ".npz", c.arrays);
    EXPECT_LETHE_ERROR(LoadDataset(path), path, c.phrase);
  }
}

// ---- forget sets ----

TEST(Ids, ReadIdFile) {
  TempDir tmp;
  const std::string path = tmp.Path("forget.txt");
  WriteBytes(path, "# ids to forget\n  17 \r\n\n3 # trailing comment\n-4\n");
  EXPECT_EQ(ReadIdFile(path), (std::vector<int64_t>{17, 3, -4}));
  WriteBytes(path, "1\n2\nabc\n");
  EXPECT_LETHE_ERROR(ReadIdFile(path), path + ":3", "not an integer id: 'abc'");
  WriteBytes(path, "1\n2\n1\n");
  EXPECT_LETHE_ERROR(ReadIdFile(path), path + ":3", "duplicate id 1 (first on line 1)");
  WriteBytes(path, "# nothing\n\n");
  EXPECT_LETHE_ERROR(ReadIdFile(path), path, "empty forget set");
  EXPECT_LETHE_ERROR(ReadIdFile(tmp.Path("none.txt")), tmp.Path("none.txt"), "cannot open");
}

TEST(Ids, ParseIdList) {
  EXPECT_EQ(ParseIdList("3,17,42", "--forget-ids"), (std::vector<int64_t>{3, 17, 42}));
  EXPECT_EQ(ParseIdList(" 3 , 17 ", "--forget-ids"), (std::vector<int64_t>{3, 17}));
  EXPECT_LETHE_ERROR(ParseIdList("3,x", "--forget-ids"), "--forget-ids", "not an integer id: 'x'");
  EXPECT_LETHE_ERROR(ParseIdList("3,,4", "--forget-ids"), "--forget-ids", "empty item");
  EXPECT_LETHE_ERROR(ParseIdList("3,4,3", "--forget-ids"), "--forget-ids", "duplicate id 3");
  EXPECT_LETHE_ERROR(ParseIdList("  ", "--forget-ids"), "--forget-ids", "empty forget set");
  EXPECT_LETHE_ERROR(ParseIdList("99999999999999999999", "--forget-ids"), "--forget-ids",
                     "not an integer id");
}

}  // namespace
}  // namespace lethe::io
