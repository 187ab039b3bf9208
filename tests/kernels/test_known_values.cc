// Hand-computed values through the CPU backend (these run on every machine, GPU or not)
// and the device-selection errors a user sees.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/backend.h"
#ifdef LETHE_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace lethe::kernels {
namespace {

// Closed forms evaluated in f64: a few ulp.
constexpr double kClosedFormTolerance = 1e-14;

template <typename T>
std::vector<T> Apply(Backend<T>& backend, Activation act, int order, const std::vector<T>& z) {
  Matrix<T> m = backend.Allocate(1, static_cast<int64_t>(z.size()));
  backend.Upload(z.data(), m);
  backend.Activate(act, order, m, m);
  std::vector<T> out(z.size());
  backend.Download(m, out.data());
  return out;
}

// The reference of the WeightedGram conformance test against its definition, summed here in
// f64 (order differences only): one-sign, mixed-sign and zero weights, alpha and beta.
TEST(KnownValues, WeightedGramIsItsDefinition) {
  auto cpu = MakeBackend<double>({});
  const int64_t n = 300, k = 270;  // two tiles, parallel
  std::vector<double> x(n * k), out0(k * k);
  for (int64_t i = 0; i < n * k; ++i) x[i] = std::sin(0.37 * i) + 0.1 * std::cos(1.3 * i);
  for (int64_t a = 0; a < k; ++a)
    for (int64_t b = 0; b <= a; ++b)
      out0[a * k + b] = out0[b * k + a] = std::cos(0.01 * (a + 2 * b));
  Matrix<double> X = cpu->Allocate(n, k), w = cpu->Allocate(n, 1), out = cpu->Allocate(k, k);
  cpu->Upload(x.data(), X);
  for (int sign = 0; sign < 4; ++sign) {
    std::vector<double> weights(n);
    for (int64_t i = 0; i < n; ++i)
      weights[i] = sign == 0   ? 1.5 + std::sin(double(i))
                   : sign == 1 ? -0.2 - std::cos(double(i)) * std::cos(double(i))
                   : sign == 2 ? std::sin(2.0 * i)
                               : 0.0;
    cpu->Upload(weights.data(), w);
    cpu->Upload(out0.data(), out);
    const double alpha = 0.7, beta = sign == 3 ? 0.0 : -1.5;
    cpu->WeightedGram(alpha, X, w, beta, out);
    std::vector<double> got(k * k);
    cpu->Download(out, got.data());
    double worst = 0, scale = 0;
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = 0; b < k; ++b) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += weights[i] * x[i * k + a] * x[i * k + b];
        const double expected = alpha * s + beta * out0[a * k + b];
        worst = std::max(worst, std::fabs(got[a * k + b] - expected));
        scale = std::max(scale, std::fabs(expected));
      }
    EXPECT_LE(worst, 1e-13 * std::max(scale, 1.0)) << "weights " << sign;
  }
}

TEST(KnownValues, ActivationsAtZero) {
  auto cpu = MakeBackend<double>({});
  const double phi0 = 1 / std::sqrt(2 * M_PI);  // standard normal pdf at 0
  struct Case {
    Activation act;
    int order;
    double expected;
  };
  for (Case c : {Case{Activation::kGelu, 0, 0.0}, Case{Activation::kGelu, 1, 0.5},
                 Case{Activation::kGelu, 2, 2 * phi0}, Case{Activation::kSigmoid, 0, 0.5},
                 Case{Activation::kSigmoid, 1, 0.25}, Case{Activation::kSigmoid, 2, 0.0},
                 Case{Activation::kSoftplus, 0, std::log(2.0)}, Case{Activation::kSoftplus, 1, 0.5},
                 Case{Activation::kTanh, 1, 1.0}, Case{Activation::kTanh, 2, 0.0},
                 Case{Activation::kRelu, 1, 0.0}})
    EXPECT_NEAR(Apply<double>(*cpu, c.act, c.order, {0.0})[0], c.expected, kClosedFormTolerance)
        << Name(c.act) << " order " << c.order;
  // gelu(1) = Φ(1), gelu'(1) = Φ(1) + φ(1)
  const double cdf1 = 0.5 * std::erfc(-1 / std::sqrt(2.0)), pdf1 = phi0 * std::exp(-0.5);
  EXPECT_NEAR(Apply<double>(*cpu, Activation::kGelu, 0, {1.0})[0], cdf1, kClosedFormTolerance);
  EXPECT_NEAR(Apply<double>(*cpu, Activation::kGelu, 1, {1.0})[0], cdf1 + pdf1,
              kClosedFormTolerance);
}

TEST(KnownValues, CrossEntropyOfOneRow) {
  auto cpu = MakeBackend<double>({});
  // f = (1, 2, 3), y = 2: l = log(e + e² + e³) − 3 = log(1 + e⁻¹ + e⁻²); ∇ = softmax − e₂.
  const std::vector<double> f = {1, 2, 3}, y = {2};
  Matrix<double> F = cpu->Allocate(1, 3), Y = cpu->Allocate(1, 1), out = cpu->Allocate(1, 1);
  cpu->Upload(f.data(), F);
  cpu->Upload(y.data(), Y);
  cpu->LossValues(LossKind::kCrossEntropy, F, Y, out);
  double loss = 0;
  cpu->Download(out, &loss);
  const double z = 1 + std::exp(-1.0) + std::exp(-2.0);
  EXPECT_NEAR(loss, std::log(z), kClosedFormTolerance);
  Matrix<double> G = cpu->Allocate(1, 3);
  cpu->LossGradient(LossKind::kCrossEntropy, 1.0, F, Y, G);
  std::vector<double> g(3);
  cpu->Download(G, g.data());
  EXPECT_NEAR(g[0], std::exp(-2.0) / z, kClosedFormTolerance);
  EXPECT_NEAR(g[1], std::exp(-1.0) / z, kClosedFormTolerance);
  EXPECT_NEAR(g[2], 1 / z - 1, kClosedFormTolerance);
  cpu->Correct(LossKind::kCrossEntropy, F, Y, out);
  double right = 0;
  cpu->Download(out, &right);
  EXPECT_EQ(right, 1.0);
}

TEST(KnownValues, LogisticAndMse) {
  auto cpu = MakeBackend<double>({});
  // logistic at f = 0: l = log 2 for either label; mse: ½((1 − 0)² + (−2 − 1)²) = 5.
  const std::vector<double> f = {0, 0}, y = {1, 0};
  Matrix<double> F = cpu->Allocate(2, 1), Y = cpu->Allocate(2, 1), out = cpu->Allocate(2, 1);
  cpu->Upload(f.data(), F);
  cpu->Upload(y.data(), Y);
  cpu->LossValues(LossKind::kLogistic, F, Y, out);
  std::vector<double> values(2);
  cpu->Download(out, values.data());
  EXPECT_NEAR(values[0], std::log(2.0), kClosedFormTolerance);
  EXPECT_NEAR(values[1], std::log(2.0), kClosedFormTolerance);
  const std::vector<double> fm = {1, -2}, ym = {0, 1};
  Matrix<double> Fm = cpu->Allocate(1, 2), Ym = cpu->Allocate(1, 2), one = cpu->Allocate(1, 1);
  cpu->Upload(fm.data(), Fm);
  cpu->Upload(ym.data(), Ym);
  cpu->LossValues(LossKind::kMse, Fm, Ym, one);
  double mse = 0;
  cpu->Download(one, &mse);
  EXPECT_EQ(mse, 5.0);
}

TEST(KnownValues, GemmOfSmallIntegers) {
  auto cpu = MakeBackend<float>({});
  // [1 2 3; 4 5 6] · [1 0; 0 1; 1 1] = [4 5; 10 11]; the transposed product gives Cᵀ.
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {1, 0, 0, 1, 1, 1};
  Matrix<float> A = cpu->Allocate(2, 3), B = cpu->Allocate(3, 2), C = cpu->Allocate(2, 2);
  cpu->Upload(a.data(), A);
  cpu->Upload(b.data(), B);
  cpu->Gemm(Op::kNone, Op::kNone, 1.0f, A, B, 0.0f, C);
  std::vector<float> c(4);
  cpu->Download(C, c.data());
  EXPECT_EQ(c, (std::vector<float>{4, 5, 10, 11}));
  cpu->Gemm(Op::kTranspose, Op::kTranspose, 1.0f, B, A, 0.0f, C);
  cpu->Download(C, c.data());
  EXPECT_EQ(c, (std::vector<float>{4, 10, 5, 11}));
}

// Thin products big enough are split by hand across the CPU threads, along rows or columns
// of C (cpu_backend.cc). Small integers make every sum exact whatever the order, so the
// split product must equal the one-thread product bit for bit: every transpose case, both
// split directions, 3 threads (uneven blocks), alpha and beta, and a strided C.
TEST(KnownValues, ThinGemmSplitAcrossThreadsEqualsOneThread) {
  auto one = MakeBackend<double>({.threads = 1});
  auto three = MakeBackend<double>({.threads = 3});
  auto fill = [](Backend<double>& be, int64_t rows, int64_t cols, int seed) {
    std::vector<double> v(rows * cols);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>((i * 7 + seed) % 5) - 2;
    Matrix<double> m = be.Allocate(rows, cols);
    be.Upload(v.data(), m);
    return m;
  };
  const int64_t k = 300;
  for (auto [m, n] : {std::pair<int64_t, int64_t>{1001, 10}, {10, 1001}}) {
    for (Op op_a : {Op::kNone, Op::kTranspose}) {
      for (Op op_b : {Op::kNone, Op::kTranspose}) {
        std::vector<double> results[2];
        int r = 0;
        for (Backend<double>* be : {one.get(), three.get()}) {
          Matrix<double> A = op_a == Op::kNone ? fill(*be, m, k, 1) : fill(*be, k, m, 1);
          Matrix<double> B = op_b == Op::kNone ? fill(*be, k, n, 2) : fill(*be, n, k, 2);
          Matrix<double> wide = fill(*be, m, n + 3, 3), C = wide.Cols(1, n);
          be->Gemm(op_a, op_b, 2.0, A, B, 1.0, C);
          results[r].resize(wide.size());
          be->Download(wide, results[r++].data());
        }
        EXPECT_EQ(results[0], results[1])
            << m << "x" << n << " op_a " << int(op_a) << " op_b " << int(op_b);
      }
    }
  }
}

// --device cuda where it cannot run must say why, in one line naming the option.
TEST(DeviceSelection, CudaUnavailableIsAClearError) {
#ifdef LETHE_HAVE_CUDA
  if (CudaDeviceAvailable()) {
    auto gpu = MakeBackend<double>({DeviceKind::kCuda});
    EXPECT_EQ(gpu->device(), DeviceKind::kCuda);
    EXPECT_NE(gpu->Describe().find("cuda"), std::string::npos);
    return;
  }
#endif
  try {
    MakeBackend<double>({DeviceKind::kCuda});
    FAIL() << "MakeBackend(cuda) succeeded without a usable GPU";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("--device cuda: ", 0), 0u) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
#ifndef LETHE_HAVE_CUDA
    EXPECT_NE(message.find("built without CUDA"), std::string::npos) << message;
#endif
  }
}

// The embedding bags against their definitions (kernels/backend.h), evaluated here by naive
// loops in f64: first a bag small enough to check by hand, then random bags through all
// three ops and both modes. The conformance suite compares the other backends with these.
TEST(KnownValues, EmbeddingBagByHand) {
  auto cpu = MakeBackend<double>({});
  // Table rows r = (r, 10 r); padding_idx 1. Bags: {0, 2, 2}, {1, 1, 1} (all padding),
  // {3, 1, 0}.
  const std::vector<double> table = {0, 0, 1, 10, 2, 20, 3, 30};
  const std::vector<double> ids = {0, 2, 2, 1, 1, 1, 3, 1, 0};
  Matrix<double> T = cpu->Allocate(4, 2), I = cpu->Allocate(3, 3), out = cpu->Allocate(3, 2);
  cpu->Upload(table.data(), T);
  cpu->Upload(ids.data(), I);
  std::vector<double> got(6);
  cpu->EmbeddingBag(I, T, 1, false, out);
  cpu->Download(out, got.data());
  EXPECT_EQ(got, (std::vector<double>{4, 40, 0, 0, 3, 30}));
  cpu->EmbeddingBag(I, T, 1, true, out);
  cpu->Download(out, got.data());
  EXPECT_EQ(got, (std::vector<double>{4.0 / 3, 40.0 / 3, 0, 0, 1.5, 15}));
  // Without padding, id 1 is an ordinary row: bag 1 is 3·(1, 10).
  cpu->EmbeddingBag(I, T, -1, false, out);
  cpu->Download(out, got.data());
  EXPECT_EQ(got, (std::vector<double>{4, 40, 3, 30, 4, 40}));
  // Adjoint, mean: δ = (1, 2), (5, 5), (4, 8); bag 0 sends δ₀/3 to row 0 and 2·δ₀/3 to row 2,
  // bag 1 nothing, bag 2 δ₂/2 to rows 3 and 0. The old contents (all 1) stay.
  const std::vector<double> delta = {1, 2, 5, 5, 4, 8};
  Matrix<double> D = cpu->Allocate(3, 2), G = cpu->Allocate(4, 2);
  cpu->Upload(delta.data(), D);
  cpu->Fill(G, 1.0);
  cpu->EmbeddingBagAdjoint(I, D, 1, true, G);
  std::vector<double> grad(8);
  cpu->Download(G, grad.data());
  const std::vector<double> expected = {1 + 1.0 / 3 + 2, 1 + 2.0 / 3 + 4, 1, 1,
                                        1 + 2.0 / 3,     1 + 4.0 / 3,     1 + 2, 1 + 4};
  for (int j = 0; j < 8; ++j) EXPECT_NEAR(grad[j], expected[j], kClosedFormTolerance) << j;
}

TEST(KnownValues, EmbeddingBagIsItsDefinition) {
  auto cpu = MakeBackend<double>({});
  const int64_t count = 300, length = 12, num = 40, dim = 7;
  std::vector<double> ids(count * length), table(num * dim), delta(count * dim);
  for (int64_t i = 0; i < count * length; ++i) ids[i] = double((i * 7919 + i / 5) % num);
  for (int64_t l = 0; l < length; ++l) ids[0 * length + l] = 4;  // all padding below
  for (int64_t l = 0; l < length; ++l) ids[1 * length + l] = 9;  // one id, L times
  for (int64_t j = 0; j < num * dim; ++j) table[j] = std::sin(0.3 * j) + 0.2;
  for (int64_t j = 0; j < count * dim; ++j) delta[j] = std::cos(0.7 * j);
  Matrix<double> I = cpu->Allocate(count, length), Tb = cpu->Allocate(num, dim),
                 D = cpu->Allocate(count, dim), out = cpu->Allocate(count, dim),
                 G = cpu->Allocate(num, dim), P = cpu->Allocate(count, num * dim);
  cpu->Upload(ids.data(), I);
  cpu->Upload(table.data(), Tb);
  cpu->Upload(delta.data(), D);
  for (int64_t padding_idx : {int64_t{-1}, int64_t{4}})
    for (bool mean : {false, true}) {
      // The definitions: S_i, w_i, the bag sums, the scatter and each example's scatter.
      std::vector<double> want_out(count * dim, 0), want_grad(num * dim, 0),
          want_per(count * num * dim, 0);
      for (int64_t i = 0; i < count; ++i) {
        int64_t members = 0;
        for (int64_t l = 0; l < length; ++l) members += ids[i * length + l] != padding_idx;
        const double w = !mean ? 1.0 : members ? 1.0 / members : 0.0;
        for (int64_t l = 0; l < length; ++l) {
          const auto id = static_cast<int64_t>(ids[i * length + l]);
          if (id == padding_idx) continue;
          for (int64_t d = 0; d < dim; ++d) {
            want_out[i * dim + d] += w * table[id * dim + d];
            want_grad[id * dim + d] += w * delta[i * dim + d];
            want_per[(i * num + id) * dim + d] += w * delta[i * dim + d];
          }
        }
      }
      if (padding_idx == 4) {
        for (int64_t d = 0; d < dim; ++d) EXPECT_EQ(want_out[d], 0.0);  // all-padding bag
      }
      std::vector<double> got_out(count * dim), got_grad(num * dim), got_per(count * num * dim);
      cpu->EmbeddingBag(I, Tb, padding_idx, mean, out);
      cpu->Download(out, got_out.data());
      cpu->Fill(G, 0.0);
      cpu->EmbeddingBagAdjoint(I, D, padding_idx, mean, G);
      cpu->Download(G, got_grad.data());
      cpu->Fill(P, std::nan(""));  // overwritten, never read
      cpu->EmbeddingBagPerExample(I, D, padding_idx, mean, P);
      cpu->Download(P, got_per.data());
      auto worst = [](const std::vector<double>& a, const std::vector<double>& b) {
        double e = 0;
        for (size_t j = 0; j < a.size(); ++j) e = std::max(e, std::fabs(a[j] - b[j]));
        return e;
      };
      // Sums of ≤ 12 terms of size ≤ 1.2 (per table row: ≤ count·L terms of size ≤ 1).
      EXPECT_LE(worst(got_out, want_out), 1e-14) << padding_idx << mean;
      EXPECT_LE(worst(got_grad, want_grad), 1e-12) << padding_idx << mean;
      EXPECT_LE(worst(got_per, want_per), 1e-14) << padding_idx << mean;
      // The adjoint identity the layer relies on: ⟨Adjoint(δ), V⟩ = ⟨δ, EmbeddingBag(V)⟩.
      double lhs = 0, rhs = 0;
      for (int64_t j = 0; j < num * dim; ++j) lhs += got_grad[j] * table[j];
      for (int64_t j = 0; j < count * dim; ++j) rhs += delta[j] * got_out[j];
      EXPECT_NEAR(lhs, rhs, 1e-11 * (1 + std::fabs(rhs))) << padding_idx << mean;
    }
}

}  // namespace
}  // namespace lethe::kernels
