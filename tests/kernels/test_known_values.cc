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

}  // namespace
}  // namespace lethe::kernels
