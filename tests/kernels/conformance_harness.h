// The two-backend harness of the conformance suite (as ggml's test-backend-ops): every op
// runs on a candidate backend (CPU f32, CUDA f64, CUDA f32) and on the reference, the CPU
// backend in f64, on the same inputs; the results must agree to the op's tolerance.
//
// Inputs are drawn in f64 from fixed seeds and rounded to the candidate's precision before
// both backends see them, so a difference measures the op's own arithmetic, not the
// rounding of its inputs.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#ifdef LETHE_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace lethe::kernels::testing {

// An op's tolerance in each precision, as a bound on max|candidate − reference| / scale.
struct Tolerance {
  double f64;
  double f32;
};

struct Candidate {
  DeviceKind device;
  bool f32;
  std::string name() const {
    return std::string(device == DeviceKind::kCuda ? "cuda" : "cpu") + (f32 ? "_f32" : "_f64");
  }
};

inline void PrintTo(const Candidate& candidate, std::ostream* os) { *os << candidate.name(); }

// Empty when the candidate can run here; otherwise why not (the test then skips).
inline std::string Unavailable(const Candidate& candidate) {
  if (candidate.device == DeviceKind::kCpu) return "";
#ifdef LETHE_HAVE_CUDA
  if (CudaDeviceAvailable()) return "";
  return "no CUDA driver or GPU on this machine: CUDA conformance not run";
#else
  return "built without CUDA";
#endif
}

// Every candidate: the CPU backend in f32 (runs everywhere), the CUDA backend in f64 and f32.
inline std::vector<Candidate> Candidates() {
  return {Candidate{DeviceKind::kCpu, true}, Candidate{DeviceKind::kCuda, false},
          Candidate{DeviceKind::kCuda, true}};
}
inline std::string CandidateName(const ::testing::TestParamInfo<Candidate>& info) {
  return info.param.name();
}

// The fixture of every parameterised backend test: skips where the candidate cannot run,
// and fails instead when LETHE_REQUIRE_CUDA is set (bench/gpu/run.sh sets it on GPU
// machines, where a skip would hide a broken setup).
class BackendTest : public ::testing::TestWithParam<Candidate> {
 protected:
  void SetUp() override {
    const std::string why = Unavailable(GetParam());
    if (why.empty()) return;
    if (std::getenv("LETHE_REQUIRE_CUDA")) FAIL() << GetParam().name() << ": " << why;
    GTEST_SKIP() << GetParam().name() << ": " << why;
  }
};

template <typename T>
std::vector<double> Read(Backend<T>& be, const Matrix<T>& m) {
  std::vector<T> host(m.size());
  be.Download(m, host.data());
  return std::vector<double>(host.begin(), host.end());
}

// ‖test − ref‖ / ‖ref‖ over whole vectors.
inline double RelativeError(const std::vector<double>& test, const std::vector<double>& ref) {
  EXPECT_EQ(test.size(), ref.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < ref.size() && i < test.size(); ++i)
    diff += (test[i] - ref[i]) * (test[i] - ref[i]), norm += ref[i] * ref[i];
  return std::sqrt(diff / std::max(norm, 1e-300));
}

template <typename T>
std::unique_ptr<Backend<T>> MakeCandidateBackend(const Candidate& candidate) {
#ifdef LETHE_HAVE_CUDA
  if (candidate.device == DeviceKind::kCuda) {
    // One context for the whole test program: a cuBLAS handle takes ~0.1 s to create.
    static std::shared_ptr<CudaContext> context = MakeCudaContext(0);
    return MakeCudaBackend<T>(context);
  }
#endif
  return MakeBackend<T>({candidate.device});
}

template <typename T>
class Harness {
 public:
  using Scalar = T;
  // The same matrix on both backends (the test's and the reference's storage).
  struct Pair {
    Matrix<T> test;
    Matrix<double> ref;
    Pair Cols(int64_t begin, int64_t count) const {
      return {test.Cols(begin, count), ref.Cols(begin, count)};
    }
    Pair Rows(int64_t begin, int64_t count) const {
      return {test.Rows(begin, count), ref.Rows(begin, count)};
    }
  };

  explicit Harness(const Candidate& candidate)
      : test_(MakeCandidateBackend<T>(candidate)), ref_(MakeBackend<double>({})) {}

  Backend<T>& test() { return *test_; }
  Backend<double>& ref() { return *ref_; }
  static constexpr bool kF32 = sizeof(T) == sizeof(float);
  static double Tol(const Tolerance& t) { return kF32 ? t.f32 : t.f64; }
  // A scalar as the candidate sees it (alpha, beta, ...): the reference gets the same value.
  static double Round(double x) { return static_cast<double>(static_cast<T>(x)); }

  Pair FromHost(int64_t rows, int64_t cols, std::vector<double> values) {
    for (double& v : values) v = Round(v);
    Pair p{test_->Allocate(rows, cols), ref_->Allocate(rows, cols)};
    std::vector<T> cast(values.begin(), values.end());
    test_->Upload(cast.data(), p.test);
    ref_->Upload(values.data(), p.ref);
    return p;
  }
  // Uniform in [lo, hi), from a fixed seed.
  Pair Random(int64_t rows, int64_t cols, uint64_t seed, double lo = -2, double hi = 2) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uniform(lo, hi);
    std::vector<double> values(rows * cols);
    for (double& v : values) v = uniform(rng);
    return FromHost(rows, cols, std::move(values));
  }
  Pair Constant(int64_t rows, int64_t cols, double value) {
    return FromHost(rows, cols, std::vector<double>(rows * cols, value));
  }
  // Integer class labels in [0, classes), as the engine stores them.
  Pair Labels(int64_t rows, int64_t classes, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<double> values(rows);
    for (double& v : values) v = static_cast<double>(rng() % classes);
    return FromHost(rows, 1, std::move(values));
  }

  void Fill(const Pair& p, double value) {
    test_->Fill(p.test, static_cast<T>(value));
    ref_->Fill(p.ref, Round(value));
  }

  // The reference's values, row-major (views are compacted).
  std::vector<double> Host(const Pair& p) {
    std::vector<double> out(p.ref.size());
    ref_->Download(p.ref, out.data());
    return out;
  }

  // max|test − ref| ≤ tol · scale, scale = max|ref| (at least 1e-300) unless given. NaN in
  // either fails unless both are NaN at the same place.
  void Expect(const Pair& p, const Tolerance& tolerance, const std::string& what,
              double scale = -1) {
    std::vector<T> test(p.test.size());
    test_->Download(p.test, test.data());
    const std::vector<double> ref = Host(p);
    if (scale < 0) {
      scale = 1e-300;
      for (double r : ref)
        if (std::isfinite(r)) scale = std::max(scale, std::fabs(r));
    }
    double worst = 0;
    int64_t worst_at = -1;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double t = static_cast<double>(test[i]);
      if (std::isnan(t) && std::isnan(ref[i])) continue;
      double err = std::fabs(t - ref[i]) / scale;
      if (std::isnan(err)) err = INFINITY;
      if (err > worst) worst = err, worst_at = static_cast<int64_t>(i);
    }
    const double tol = Tol(tolerance);
    if (worst_at < 0) return;
    EXPECT_TRUE(worst <= tol) << what << ": relative error " << worst << " > " << tol
                              << " at element " << worst_at << " of " << p.ref.rows() << "x"
                              << p.ref.cols() << " (test " << static_cast<double>(test[worst_at])
                              << ", reference " << ref[worst_at] << ")";
  }
  void ExpectScalar(double test, double ref, double scale, const Tolerance& tolerance,
                    const std::string& what) {
    const double err = std::fabs(test - ref) / std::max(scale, 1e-300);
    EXPECT_TRUE(err <= Tol(tolerance)) << what << ": test " << test << ", reference " << ref
                                       << ", relative error " << err << " > " << Tol(tolerance);
  }

 private:
  std::unique_ptr<Backend<T>> test_;
  std::unique_ptr<Backend<double>> ref_;
};

// Runs `body(harness)` with the candidate's precision.
template <typename Body>
void ForCandidate(const Candidate& candidate, Body&& body) {
  if (candidate.f32) {
    Harness<float> h(candidate);
    body(h);
  } else {
    Harness<double> h(candidate);
    body(h);
  }
}

}  // namespace lethe::kernels::testing
