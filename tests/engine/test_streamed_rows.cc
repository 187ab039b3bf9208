// Data larger than memory (engine/row_source.h, engine/streamed_rows.h,
// io/dataset_stream.h): an objective whose X is streamed from its .npz a batch at a time
// computes every result bit for bit as the in-memory one (same batches, same sums), over
// all rows and over a selection of them, with and without the forward-pass cache, for a
// stored and a deflated X, f32 and f64 in the file; and what cannot be streamed says so.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/forgotten.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "engine/streamed_rows.h"
#include "io/array.h"
#include "io/dataset_stream.h"
#include "io/npy.h"
#define LETHE_IO_TEST_DATA ""  // test_util.h's fixtures are not used here
#include "tests/engine/test_problems.h"
#include "tests/io/test_util.h"

namespace lethe::testing {
namespace {

using io::testing::BuildZip;
using io::testing::TempDir;
using io::testing::ZipMember;
using io::testing::WriteBytes;
using Matrix = kernels::Matrix<double>;

std::string Npy(io::DType dtype, const std::vector<int64_t>& shape, const void* data, size_t bytes,
                bool fortran = false) {
  std::string header = io::SerializeNpyHeader(dtype, shape);
  if (fortran) header.replace(header.find("False"), 5, "True ");
  return header + std::string(static_cast<const char*>(data), bytes);
}

ZipMember Member(const std::string& name, const std::string& data, uint16_t method = 0) {
  ZipMember m;
  m.name = name, m.data = data, m.method = method;
  return m;
}

// data's X (as `dtype`), y and ids as an .npz, X stored (method 0) or deflated (8).
std::string WriteNpz(const TempDir& dir, const io::Dataset& data, io::DType dtype, uint16_t method,
                     const std::string& name = "data.npz") {
  std::string x;
  if (dtype == io::DType::kF32) {
    std::vector<float> f(data.X.begin(), data.X.end());
    x = Npy(dtype, {data.n, data.d}, f.data(), f.size() * 4);
  } else {
    x = Npy(dtype, {data.n, data.d}, data.X.data(), data.X.size() * 8);
  }
  std::vector<int64_t> y(data.y.begin(), data.y.end());
  std::vector<int64_t> ids(data.ids.rbegin(), data.ids.rend());  // not the row index
  const std::string path = dir.Path(name);
  WriteBytes(path, BuildZip({Member("y.npy", Npy(io::DType::kI64, {data.n}, y.data(), y.size() * 8)),
                             Member("X.npy", x, method),
                             Member("ids.npy", Npy(io::DType::kI64, {data.n}, ids.data(), ids.size() * 8))}));
  return path;
}

io::Dataset OpenStreamed(const std::string& path, int64_t block_bytes = 1000) {
  io::Dataset meta;
  meta.streamed = io::StreamedX::Open(path, &meta, block_bytes);
  return meta;
}

std::vector<double> Host(kernels::Backend<double>& be, const Matrix& m) {
  std::vector<double> h(static_cast<size_t>(m.size()));
  be.Download(m, h.data());
  return h;
}

// Every result of two objectives, compared for exact equality.
void ExpectSameResults(Objective<double>& a, Objective<double>& b, const std::vector<double>& theta0) {
  auto& be = a.backend();
  const int64_t p = a.num_params(), n = a.num_examples();
  ASSERT_EQ(n, b.num_examples());
  Matrix theta = be.Allocate(1, p);
  be.Upload(theta0.data(), theta);
  Matrix ga = be.Allocate(1, p), gb = be.Allocate(1, p);
  EXPECT_EQ(a.ValueAndGradient(theta, ga), b.ValueAndGradient(theta, gb));
  EXPECT_EQ(Host(be, ga), Host(be, gb));
  EXPECT_EQ(a.BatchValueAndGradient(theta, 3, 11, ga), b.BatchValueAndGradient(theta, 3, 11, gb));
  EXPECT_EQ(Host(be, ga), Host(be, gb));
  // Three directions; each product twice (the second over the cache where it is kept).
  std::vector<double> v(3 * p);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37 * static_cast<double>(i) + 1);
  Matrix V = be.Allocate(3, p), ha = be.Allocate(3, p), hb = be.Allocate(3, p);
  be.Upload(v.data(), V);
  for (Curvature c : {Curvature::kHessian, Curvature::kGaussNewton, Curvature::kHessian}) {
    for (int twice = 0; twice < 2; ++twice) {
      a.CurvatureProduct(c, theta, V, ha);
      b.CurvatureProduct(c, theta, V, hb);
      EXPECT_EQ(Host(be, ha), Host(be, hb));
    }
  }
  a.CurvatureProductRows(Curvature::kHessian, theta, V, ha, 5, 9);
  b.CurvatureProductRows(Curvature::kHessian, theta, V, hb, 5, 9);
  EXPECT_EQ(Host(be, ha), Host(be, hb));
  Matrix pa = be.Allocate(n - 4, p), pb = be.Allocate(n - 4, p);
  a.PerExampleGradients(theta, 4, n - 4, pa);
  b.PerExampleGradients(theta, 4, n - 4, pb);
  EXPECT_EQ(Host(be, pa), Host(be, pb));
  Matrix da = be.Allocate(n, 3), db = be.Allocate(n, 3);
  a.PerExampleGradientDots(theta, V, da);
  b.PerExampleGradientDots(theta, V, db);
  EXPECT_EQ(Host(be, da), Host(be, db));
  // By blocks aligned to the batches: the same bits as the full pass.
  const int64_t B = b.batch_rows();
  Matrix part = be.Allocate(2 * B, 3);
  std::vector<double> full = Host(be, da), blocks;
  for (int64_t begin = 0; begin < n; begin += 2 * B) {
    const int64_t count = std::min(2 * B, n - begin);
    b.PerExampleGradientDotsRows(theta, V, begin, count, part.Rows(0, count));
    const std::vector<double> h = Host(be, part.Rows(0, count));
    blocks.insert(blocks.end(), h.begin(), h.end());
  }
  EXPECT_EQ(full, blocks);
  Matrix la = be.Allocate(n, 1), lb = be.Allocate(n, 1);
  a.PerExampleLosses(theta, la);
  b.PerExampleLosses(theta, lb);
  EXPECT_EQ(Host(be, la), Host(be, lb));
  const Metrics ma = a.Evaluate(theta), mb = b.Evaluate(theta);
  EXPECT_EQ(ma.objective, mb.objective);
  EXPECT_EQ(ma.accuracy, mb.accuracy);
  for (int64_t max_examples : {int64_t{1} << 40, int64_t{12}}) {
    std::vector<Matrix> oa, ia, ob, ib;
    a.KroneckerFactors(theta, &oa, &ia, max_examples);
    b.KroneckerFactors(theta, &ob, &ib, max_examples);
    ASSERT_EQ(oa.size(), ob.size());
    for (size_t k = 0; k < oa.size(); ++k) {
      EXPECT_EQ(Host(be, oa[k]), Host(be, ob[k]));
      EXPECT_EQ(Host(be, ia[k]), Host(be, ib[k]));
    }
  }
}

struct Case {
  io::DType dtype;
  uint16_t method;
  bool frozen;
  int64_t cache_elements;
};

class StreamedObjective : public ::testing::TestWithParam<Case> {};

TEST_P(StreamedObjective, EveryResultIsTheInMemoryOnesBitForBit) {
  const Case c = GetParam();
  TempDir dir;
  const io::Dataset random = RandomData(LossKind::kCrossEntropy, 45, 6, 3, 7);
  const std::string path = WriteNpz(dir, random, c.dtype, c.method);
  const io::Dataset held = io::LoadDataset(path);
  const io::Dataset streamed = OpenStreamed(path);
  ASSERT_TRUE(streamed.streamed && streamed.X.empty());
  EXPECT_EQ(streamed.ids, held.ids);
  EXPECT_EQ(streamed.y, held.y);
  EXPECT_EQ(streamed.example_shape, held.example_shape);
  EXPECT_EQ(streamed.streamed->inflated(), c.method == 8);
  const io::ModelSpec spec = c.frozen ? FrozenFirstLayerSpec(LossKind::kCrossEntropy, Activation::kTanh, 5, 0.01)
                                      : MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 5, 0.01);
  const Model model = RandomModel(spec, held, 3);
  auto be = kernels::MakeBackend<double>({});
  ObjectiveOptions o{.batch_size = 7, .group_elements = 40, .cache_elements = c.cache_elements};
  {
    Objective<double> a(*be, model.arch, UploadData(*be, held), o);
    Objective<double> b(*be, model.arch, UploadData(*be, streamed), o);
    ASSERT_TRUE(b.data().streamed() && !a.data().streamed());
    ExpectSameResults(a, b, model.theta);
  }
  // A selection of rows (the kept rows of an unlearning request, forgotten ids left out),
  // in two steps as SelectRows then UploadData take them.
  std::vector<int64_t> some;
  for (int64_t i = 0; i < held.n; ++i)
    if (i % 4 != 1) some.push_back(i);
  const io::Dataset held_some = SelectRows(held, some), streamed_some = SelectRows(streamed, some);
  std::vector<int64_t> rows;
  for (int64_t i = held_some.n - 1; i >= 0; i -= 2) rows.push_back(i);
  Objective<double> a(*be, model.arch, UploadData(*be, held_some, rows), o);
  Objective<double> b(*be, model.arch, UploadData(*be, streamed_some, rows), o);
  ExpectSameResults(a, b, model.theta);
}

INSTANTIATE_TEST_SUITE_P(
    Files, StreamedObjective,
    ::testing::Values(Case{io::DType::kF64, 0, false, 1 << 20}, Case{io::DType::kF32, 0, false, 0},
                      Case{io::DType::kF32, 8, false, 1 << 20}, Case{io::DType::kF64, 8, true, 1 << 20},
                      Case{io::DType::kF64, 0, true, 0}));

TEST(StreamedX, RefusesWhatCannotBeStreamedInOneLine) {
  TempDir dir;
  io::Dataset random = RandomData(LossKind::kCrossEntropy, 20, 3, 3, 1);
  random.X[13 * 3 + 1] = std::nan("");
  for (uint16_t method : {0, 8}) {
    const std::string path = WriteNpz(dir, random, io::DType::kF64, method);
    EXPECT_LETHE_ERROR(OpenStreamed(path), path, "X contains NaN or Inf at row 13");
  }
  const std::string csv = dir.Path("d.csv");
  WriteBytes(csv, "a,label\n1,0\n");
  EXPECT_LETHE_ERROR(OpenStreamed(csv), csv, "cannot be streamed by rows");
  random.X[13 * 3 + 1] = 0;
  std::string x = Npy(io::DType::kF64, {random.n, random.d}, random.X.data(), random.X.size() * 8,
                      /*fortran=*/true);
  std::vector<int64_t> y(random.y.begin(), random.y.end());
  const std::string fortran = dir.Path("f.npz");
  WriteBytes(fortran, BuildZip({Member("X.npy", x),
                                Member("y.npy", Npy(io::DType::kI64, {random.n}, y.data(), y.size() * 8))}));
  EXPECT_LETHE_ERROR(OpenStreamed(fortran), fortran, "Fortran order");
}

}  // namespace
}  // namespace lethe::testing
