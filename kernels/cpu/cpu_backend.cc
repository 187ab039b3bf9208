// CPU backend. Matrix products go to Eigen, which parallelises GEMM over output blocks
// with OpenMP (each output element is summed by one thread in a fixed order, so results
// are deterministic for a given thread count). Elementwise and row-wise loops are
// parallelised over rows when large; reductions are sequential, for determinism.
#include "kernels/cpu/cpu_backend.h"

#include <omp.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "common/host_memory.h"
#include "kernels/cpu/cpu_conv_ops.h"
#include "kernels/cpu/cpu_window_ops.h"
#include "kernels/cpu/row_ops.h"
#include "kernels/cpu/cpu_pool_ops.h"
#include "kernels/scalar_math.h"

namespace lethe::kernels {
namespace {

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MutMap = Eigen::Map<RowMajor<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstMap = Eigen::Map<const RowMajor<T>, 0, Eigen::OuterStride<>>;

template <typename T>
MutMap<T> Mut(const Matrix<T>& m) {
  return MutMap<T>(m.data(), m.rows(), m.cols(), Eigen::OuterStride<>(m.ld()));
}
template <typename T>
ConstMap<T> In(const Matrix<T>& m) {
  return ConstMap<T>(m.data(), m.rows(), m.cols(), Eigen::OuterStride<>(m.ld()));
}
// The same storage read column-major: the transpose, cols × rows. Eigen's dense
// factorisations are written for column-major storage, and a symmetric matrix is its own
// transpose.
template <typename T>
using ColMajorMap =
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>, 0, Eigen::OuterStride<>>;
template <typename T>
ColMajorMap<T> Transposed(const Matrix<T>& m) {
  return ColMajorMap<T>(m.data(), m.cols(), m.rows(), Eigen::OuterStride<>(m.ld()));
}

// Below this many elements an elementwise loop runs on one thread: these loops are
// memory-bound, and a parallel region's start and barrier cost more than small ones save.
constexpr int64_t kParallelThreshold = 1 << 18;
// Below this many multiply-adds (m·n·k) a GEMM runs on one thread: Eigen would otherwise
// split even small products, and on a busy machine each parallel region's barrier costs
// more than the product (a 64-32-10 MLP trained 4× slower on 2 threads than on 1).
constexpr int64_t kParallelGemmThreshold = int64_t{1} << 24;
// Thin products (see Gemm) are split across threads by hand from this many multiply-adds.
constexpr int64_t kSplitGemmThreshold = int64_t{1} << 20;

// The lower-triangle tiles (row block ≥ column block) of a k × k matrix cut into squares of
// about `tile`, as {first row, rows, first column, columns}: work for a parallel loop in
// which each tile is one thread's single-threaded product (Eigen parallelises neither its
// triangular rank update nor its triangular solves, and tiles need no reduction).
std::vector<std::array<int64_t, 4>> LowerTiles(int64_t k, int64_t tile) {
  const int64_t per_side = (k + tile - 1) / tile;
  auto edge = [&](int64_t t) { return k * t / per_side; };
  std::vector<std::array<int64_t, 4>> tiles;
  for (int64_t I = 0; I < per_side; ++I)
    for (int64_t J = 0; J <= I; ++J)
      tiles.push_back({edge(I), edge(I + 1) - edge(I), edge(J), edge(J + 1) - edge(J)});
  return tiles;
}

void CheckSameShape(int64_t r1, int64_t c1, int64_t r2, int64_t c2) {
  LETHE_CHECK(r1 == r2 && c1 == c2, "shape ", r1, "x", c1, " vs ", r2, "x", c2);
}

template <typename T>
class CpuBackend final : public Backend<T> {
 public:
  explicit CpuBackend(int threads) {
    // 0: OpenMP's default, which is OMP_NUM_THREADS where set, else every core.
    threads_ = threads > 0 ? threads : omp_get_max_threads();
    omp_set_num_threads(threads_);
    Eigen::setNbThreads(threads_);
  }

  DeviceKind device() const override { return DeviceKind::kCpu; }
  std::string Describe() const override {
    return "cpu (Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." +
           std::to_string(EIGEN_MAJOR_VERSION) + "." + std::to_string(EIGEN_MINOR_VERSION) + ", " +
           std::to_string(threads_) + " thread" + (threads_ == 1 ? "" : "s") + ")";
  }

  Matrix<T> Allocate(int64_t rows, int64_t cols) override {
    LETHE_CHECK(rows >= 0 && cols >= 0);
    // 64-byte alignment for vectorised loads, 64 bytes of slack after the end; large
    // buffers (the data, above all) on huge pages (common/host_memory.h): first touching
    // 63 MB in 4 KiB pages cost as long as a pass of GEMMs over it.
    const size_t bytes = static_cast<size_t>(rows * cols) * sizeof(T) + 64;
    void* p = AllocateHost(bytes);
    if (!p) Fail("out of memory allocating ", rows, "x", cols, " matrix (", bytes, " bytes)");
    std::shared_ptr<void> storage(p, std::free);
    return Matrix<T>(storage, static_cast<T*>(p), rows, cols, cols, DeviceKind::kCpu);
  }

  void Upload(const T* host, Matrix<T> dst) override {
    Mut(dst) = ConstMap<T>(host, dst.rows(), dst.cols(), Eigen::OuterStride<>(dst.cols()));
  }
  void Download(const Matrix<T>& src, T* host) override {
    MutMap<T>(host, src.rows(), src.cols(), Eigen::OuterStride<>(src.cols())) = In(src);
  }
  void Copy(const Matrix<T>& src, Matrix<T> dst) override {
    CheckSameShape(src.rows(), src.cols(), dst.rows(), dst.cols());
    Mut(dst) = In(src);
  }
  void Fill(Matrix<T> dst, T value) override { Mut(dst).setConstant(value); }
  void GatherRows(const Matrix<T>& src, const int64_t* rows, Matrix<T> dst) override {
    LETHE_CHECK(src.cols() == dst.cols());
    for (int64_t i = 0; i < dst.rows(); ++i) {
      LETHE_CHECK(rows[i] >= 0 && rows[i] < src.rows());
      std::memcpy(dst.data() + i * dst.ld(), src.data() + rows[i] * src.ld(),
                  sizeof(T) * src.cols());
    }
  }

  void EraseRows(Matrix<T> m, const int64_t* rows, int64_t count) override {
    CheckEraseRows(m, rows, count);
    // The run of rows between two erased ones moves up by the number erased so far: one
    // memmove per run (the runs overlap their destinations) when the rows are contiguous.
    int64_t to = count ? rows[0] : 0;
    for (int64_t j = 0; j < count; ++j) {
      const int64_t begin = rows[j] + 1, end = j + 1 < count ? rows[j + 1] : m.rows();
      if (begin == end) continue;
      if (m.ld() == m.cols()) {
        std::memmove(m.data() + to * m.ld(), m.data() + begin * m.ld(),
                     sizeof(T) * m.cols() * (end - begin));
      } else {
        for (int64_t i = begin; i < end; ++i)
          std::memmove(m.data() + (to + i - begin) * m.ld(), m.data() + i * m.ld(),
                       sizeof(T) * m.cols());
      }
      to += end - begin;
    }
  }

  void Gemm(Op op_a, Op op_b, T alpha, const Matrix<T>& A, const Matrix<T>& B, T beta,
            Matrix<T> C) override {
    const auto [ta, tb, m, n, k] = CheckGemmShape(op_a, op_b, A, B, C);
    auto c = Mut(C);
    if (beta == T(0))
      c.setZero();
    else if (beta != T(1))
      c *= beta;
    if (k == 0) return;
    auto a = In(A);
    auto b = In(B);
    // C += alpha · op(A) · op(B) on any blocks of a, b, c.
    auto accumulate = [alpha, ta, tb](auto&& cc, const auto& aa, const auto& bb) {
      if (!ta && !tb)
        cc.noalias() += alpha * aa * bb;
      else if (ta && !tb)
        cc.noalias() += alpha * aa.transpose() * bb;
      else if (!ta && tb)
        cc.noalias() += alpha * aa * bb.transpose();
      else
        cc.noalias() += alpha * aa.transpose() * bb.transpose();
    };
    // A thin output (m or n small) leaves Eigen little to split but its threads still
    // spin-wait on each other's packed panels. Such a product is split here instead, along
    // its long side into one block of C per thread, each computed single-threaded: rows of C
    // are rows of op(A), columns of C columns of op(B), so the blocks share nothing (no
    // reduction, no waiting). This is what makes a softmax regression's 2048 × 784 × 10
    // products use every core.
    const bool thin = std::min(m, n) < 64;
    if (thin && threads_ > 1 && m * n * k >= kSplitGemmThreshold && std::max(m, n) >= 128) {
      Eigen::setNbThreads(1);
      const bool by_rows = m >= n;
      const int64_t len = by_rows ? m : n;
      const int parts = threads_;
#pragma omp parallel for num_threads(parts) schedule(static)
      for (int part = 0; part < parts; ++part) {
        const int64_t begin = len * part / parts, count = len * (part + 1) / parts - begin;
        if (by_rows)
          accumulate(c.block(begin, 0, count, n),
                     ta ? a.block(0, begin, k, count) : a.block(begin, 0, count, k), b);
        else
          accumulate(c.block(0, begin, m, count), a,
                     tb ? b.block(begin, 0, count, k) : b.block(0, begin, k, count));
      }
      return;
    }
    const bool parallel = m * n * k >= kParallelGemmThreshold && !thin;
    Eigen::setNbThreads(parallel ? threads_ : 1);
    accumulate(c, a, b);
  }

  void Axpby(T alpha, const Matrix<T>& x, T beta, Matrix<T> y) override {
    CheckSameShape(x.rows(), x.cols(), y.rows(), y.cols());
    if (beta == T(0))
      Mut(y) = alpha * In(x);
    else
      Mut(y) = alpha * In(x) + beta * In(y);
  }
  T Dot(const Matrix<T>& x, const Matrix<T>& y) override {
    CheckSameShape(x.rows(), x.cols(), y.rows(), y.cols());
    return In(x).cwiseProduct(In(y)).sum();
  }
  T Sum(const Matrix<T>& x) override { return In(x).sum(); }
  void RowDots(const Matrix<T>& A, const Matrix<T>& B, Matrix<T> out) override {
    CheckSameShape(A.rows(), A.cols(), B.rows(), B.cols());
    LETHE_CHECK(out.rows() == A.rows() && out.cols() == 1);
    auto a = In(A);
    auto b = In(B);
    T* o = out.data();
    const int64_t ld = out.ld();
#pragma omp parallel for if (A.size() > kParallelThreshold)
    for (int64_t i = 0; i < A.rows(); ++i) o[i * ld] = a.row(i).dot(b.row(i));
  }
  void ColumnSums(T alpha, const Matrix<T>& A, T beta, Matrix<T> out) override {
    LETHE_CHECK(out.rows() == 1 && out.cols() == A.cols());
    auto o = Mut(out);
    if (beta == T(0))
      o = alpha * In(A).colwise().sum();
    else
      o = alpha * In(A).colwise().sum() + beta * o;
  }
  void AddRow(const Matrix<T>& row, Matrix<T> A) override {
    LETHE_CHECK(row.rows() == 1 && row.cols() == A.cols());
    Mut(A).rowwise() += In(row).row(0);
  }
  void Multiply(const Matrix<T>& A, const Matrix<T>& B, T beta, Matrix<T> C) override {
    CheckSameShape(A.rows(), A.cols(), B.rows(), B.cols());
    CheckSameShape(A.rows(), A.cols(), C.rows(), C.cols());
    const T* a = A.data();
    const T* b = B.data();
    T* c = C.data();
    const int64_t cols = A.cols();
    // beta tested once per row, not per element, and `omp simd`: C may be A or B (an
    // in-place product touches each element once, at its own index, so iterations are
    // independent), and at -O2 GCC's cost model left this loop scalar; it was ~12% of a
    // small CNN's Hessian-vector product.
#pragma omp parallel for if (A.size() > kParallelThreshold)
    for (int64_t i = 0; i < A.rows(); ++i) {
      const T* ai = a + i * A.ld();
      const T* bi = b + i * B.ld();
      T* ci = c + i * C.ld();
      if (beta == T(0)) {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) ci[j] = ai[j] * bi[j];  // NaN-safe: c not read
      } else {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) ci[j] = ai[j] * bi[j] + beta * ci[j];
      }
    }
  }
  void RowOuter(const Matrix<T>& A, const Matrix<T>& B, Matrix<T> out) override {
    LETHE_CHECK(A.rows() == B.rows() && out.rows() == A.rows() &&
                out.cols() == A.cols() * B.cols());
    const int64_t na = A.cols(), nb = B.cols();
#pragma omp parallel for if (out.size() > kParallelThreshold)
    for (int64_t i = 0; i < A.rows(); ++i) {
      const T* a = A.data() + i * A.ld();
      const T* b = B.data() + i * B.ld();
      T* o = out.data() + i * out.ld();
      for (int64_t p = 0; p < na; ++p)
        for (int64_t q = 0; q < nb; ++q) o[p * nb + q] = a[p] * b[q];
    }
  }

  // The lower triangle of out in square tiles, each tile one thread's single-threaded
  // product (Eigen does not parallelise its triangular rank update, and a tile per thread
  // needs no reduction): off-diagonal tiles are GEMMs, diagonal tiles symmetric rank
  // updates (SYRK) of the √|w|-scaled rows when w has one sign, so the whole costs n·k²
  // flops; the upper triangle is then copied from the lower.
  void WeightedGram(T alpha, const Matrix<T>& X, const Matrix<T>& w, T beta,
                    Matrix<T> out) override {
    const int64_t n = X.rows(), k = X.cols();
    LETHE_CHECK(w.rows() == n && w.cols() == 1 && out.rows() == k && out.cols() == k);
    auto o = Mut(out);
    if (beta == T(0))
      o.template triangularView<Eigen::Lower>().setZero();
    else if (beta != T(1))
      o.template triangularView<Eigen::Lower>() *= beta;
    bool positive = false, negative = false;
    for (int64_t i = 0; i < n; ++i) {
      positive |= w.data()[i * w.ld()] > T(0);
      negative |= w.data()[i * w.ld()] < T(0);
    }
    // One sign: Σ wᵢ xᵢxᵢᵀ = sign · Σ sᵢsᵢᵀ with sᵢ = √|wᵢ| xᵢ (S·Sᵀ products only). Mixed
    // signs: Xᵀ · (diag(w) X), every tile a GEMM.
    const bool one_sign = !(positive && negative);
    const T scale = alpha * (negative && one_sign ? T(-1) : T(1));
    if (n > 0 && k > 0 && (positive || negative)) {
      scratch_.resize(static_cast<size_t>(n * k));
      MutMap<T> s(scratch_.data(), n, k, Eigen::OuterStride<>(k));
      const auto x = In(X);
#pragma omp parallel for if (n * k > kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) {
        const T wi = w.data()[i * w.ld()];
        s.row(i) = (one_sign ? std::sqrt(std::abs(wi)) : wi) * x.row(i);
      }
      const ConstMap<T> left =
          one_sign ? ConstMap<T>(scratch_.data(), n, k, Eigen::OuterStride<>(k)) : x;
      // Tiles of about kTile: large enough for GEMM-rate products, small enough that the
      // triangle splits evenly over the threads.
      const auto tiles = LowerTiles(k, kTile);
      Eigen::setNbThreads(1);
#pragma omp parallel for schedule(dynamic, 1) if (n * k * k > kParallelGemmThreshold)
      for (size_t t = 0; t < tiles.size(); ++t) {
        const auto [r0, rows, c0, cols] = tiles[t];
        auto tile = o.block(r0, c0, rows, cols);
        if (r0 == c0 && one_sign)
          tile.template selfadjointView<Eigen::Lower>().rankUpdate(
              s.middleCols(r0, rows).transpose(), scale);
        else
          tile.noalias() += scale * left.middleCols(r0, rows).transpose() * s.middleCols(c0, cols);
      }
      Eigen::setNbThreads(threads_);
    }
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = i + 1; j < k; ++j) o(i, j) = o(j, i);
  }

  void Activate(Activation act, int order, const Matrix<T>& Z, Matrix<T> out) override {
    CheckSameShape(Z.rows(), Z.cols(), out.rows(), out.cols());
    LETHE_CHECK(order >= 0 && order <= 2);
#pragma omp parallel for if (Z.size() > kParallelThreshold)
    for (int64_t i = 0; i < Z.rows(); ++i)
      for (int64_t j = 0; j < Z.cols(); ++j)
        out.data()[i * out.ld() + j] = ActivationValue<T>(act, order, Z.data()[i * Z.ld() + j]);
  }

  void LossValues(LossKind loss, const Matrix<T>& F, const Matrix<T>& Y, Matrix<T> out) override {
    LETHE_CHECK(Y.rows() == F.rows() && out.rows() == F.rows() && out.cols() == 1);
#pragma omp parallel for if (F.size() > kParallelThreshold)
    for (int64_t i = 0; i < F.rows(); ++i)
      out.data()[i * out.ld()] =
          LossValueRow<T>(loss, F.data() + i * F.ld(), F.cols(), Y.data() + i * Y.ld());
  }
  void LossGradient(LossKind loss, T scale, const Matrix<T>& F, const Matrix<T>& Y,
                    Matrix<T> G) override {
    CheckSameShape(F.rows(), F.cols(), G.rows(), G.cols());
    LETHE_CHECK(Y.rows() == F.rows());
#pragma omp parallel for if (F.size() > kParallelThreshold)
    for (int64_t i = 0; i < F.rows(); ++i)
      LossGradientRow<T>(loss, scale, F.data() + i * F.ld(), F.cols(), Y.data() + i * Y.ld(),
                         G.data() + i * G.ld());
  }
  void LossHessianProduct(LossKind loss, T scale, const Matrix<T>& F, const Matrix<T>& V,
                          Matrix<T> out) override {
    CheckSameShape(F.rows(), F.cols(), V.rows(), V.cols());
    CheckSameShape(F.rows(), F.cols(), out.rows(), out.cols());
#pragma omp parallel for if (F.size() > kParallelThreshold)
    for (int64_t i = 0; i < F.rows(); ++i)
      LossHessianRow<T>(loss, scale, F.data() + i * F.ld(), F.cols(), V.data() + i * V.ld(),
                        out.data() + i * out.ld());
  }
  void Correct(LossKind loss, const Matrix<T>& F, const Matrix<T>& Y, Matrix<T> out) override {
    LETHE_CHECK(Y.rows() == F.rows() && out.rows() == F.rows() && out.cols() == 1);
    for (int64_t i = 0; i < F.rows(); ++i)
      out.data()[i * out.ld()] =
          CorrectRow<T>(loss, F.data() + i * F.ld(), F.cols(), Y.data() + i * Y.ld());
  }

  // --- dense symmetric matrices ---------------------------------------------------------
  // Column-major view U of the row-major storage: U's upper triangle is the row-major
  // lower triangle, so a column-major factor A = UᵀU leaves L = Uᵀ (A = L Lᵀ) in the
  // row-major lower triangle, as the interface promises (and as cuSOLVER does).
  void Symmetrize(Matrix<T> A) override {
    LETHE_CHECK(A.rows() == A.cols());
    T* a = A.data();
    const int64_t n = A.rows(), ld = A.ld();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j)
        a[i * ld + j] = a[j * ld + i] = T(0.5) * (a[i * ld + j] + a[j * ld + i]);
  }
  // Right-looking blocked Cholesky on the row-major lower triangle, panels of kTile: the
  // panel's diagonal block by Eigen's LLT (on the column-major view, whose upper triangle it
  // is), the panel below it by a triangular solve split over the threads by rows, and the
  // trailing update A₂₂ −= L₂₁ L₂₁ᵀ (nearly all of the p³/3 flops) in parallel lower tiles,
  // as WeightedGram. Eigen's own blocked LLT does its trailing updates as triangular rank
  // updates, which it runs on one thread.
  bool CholeskyFactor(Matrix<T> A) override {
    LETHE_CHECK(A.rows() == A.cols());
    const int64_t p = A.rows();
    auto a = Mut(A);
    ColMajorMap<T> t = Transposed(A);  // t(i, j) = a(j, i): the same storage
    using Ref =
        Eigen::Ref<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>, 0, Eigen::OuterStride<>>;
    Eigen::setNbThreads(1);
    bool ok = true;
    for (int64_t k0 = 0; k0 < p && ok; k0 += kTile) {
      const int64_t kb = std::min(kTile, p - k0), rest = p - k0 - kb;
      auto diagonal = t.block(k0, k0, kb, kb);
      Eigen::LLT<Ref, Eigen::Upper> llt(diagonal);  // in place: L₁₁ᵀ
      if (llt.info() != Eigen::Success) {
        ok = false;
        break;
      }
      if (rest == 0) break;
      // L₂₁ = A₂₁ L₁₁⁻ᵀ, i.e. L₂₁ᵀ = L₁₁⁻¹ A₂₁ᵀ: columns of the column-major view.
      const auto U = t.block(k0, k0, kb, kb).template triangularView<Eigen::Upper>();
      const bool parallel = rest * kb * kb > kParallelGemmThreshold;
      const int parts = parallel ? threads_ : 1;
#pragma omp parallel for num_threads(parts) schedule(static) if (parallel)
      for (int part = 0; part < parts; ++part) {
        const int64_t c0 = rest * part / parts, cc = rest * (part + 1) / parts - c0;
        if (cc > 0) U.transpose().solveInPlace(t.block(k0, k0 + kb + c0, kb, cc));
      }
      const auto L21 = a.block(k0 + kb, k0, rest, kb);
      const auto tiles = LowerTiles(rest, kTile);
#pragma omp parallel for schedule(dynamic, 1) if (rest * rest * kb > kParallelGemmThreshold)
      for (size_t i = 0; i < tiles.size(); ++i) {
        const auto [r0, rows, c0, cols] = tiles[i];
        auto tile = a.block(k0 + kb + r0, k0 + kb + c0, rows, cols);
        if (r0 == c0)
          tile.template selfadjointView<Eigen::Lower>().rankUpdate(L21.middleRows(r0, rows), T(-1));
        else
          tile.noalias() -= L21.middleRows(r0, rows) * L21.middleRows(c0, cols).transpose();
      }
    }
    Eigen::setNbThreads(threads_);
    return ok;
  }
  void CholeskySolve(const Matrix<T>& L, Matrix<T> X) override {
    LETHE_CHECK(L.rows() == L.cols() && X.cols() == L.rows());
    if (X.rows() == 0) return;
    Eigen::setNbThreads(threads_);
    const ColMajorMap<T> u = Transposed(L);  // A = UᵀU
    const auto U = u.template triangularView<Eigen::Upper>();
    if (X.rows() == 1) {
      // One right-hand side as an Eigen vector: its triangular solves stream the factor once
      // each (trsv). As a p × 1 matrix, Eigen's blocked matrix solve would first pack the
      // whole triangle into a copy, on every call: 0.19 s against 0.024 s of CPU per
      // application at p = 7,850 in f32 (measured), and a CG preconditioned by the factor
      // (engine/dense_preconditioner.h) calls this once an iteration.
      Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> x(X.data(), X.cols());
      U.transpose().solveInPlace(x);
      U.solveInPlace(x);
      return;
    }
    ColMajorMap<T> x = Transposed(X);  // right-hand sides as columns
    U.transpose().solveInPlace(x);  // Uᵀ y = b
    U.solveInPlace(x);              // U x = y
  }
  void SymmetricEigen(Matrix<T> A, Matrix<T> values, bool vectors) override {
    LETHE_CHECK(A.rows() == A.cols() && values.rows() == 1 && values.cols() == A.rows());
    Eigen::SelfAdjointEigenSolver<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>> eig(
        Transposed(A), vectors ? Eigen::ComputeEigenvectors : Eigen::EigenvaluesOnly);
    LETHE_CHECK(eig.info() == Eigen::Success,
                "the symmetric eigenvalue iteration did not converge");
    Mut(values).row(0) = eig.eigenvalues().transpose();
    // Eigen's eigenvectors are its columns; in the row-major A they become the rows.
    if (vectors) Mut(A) = eig.eigenvectors().transpose();
  }
  void SymmetricTridiagonal(Matrix<T> A, Matrix<T> diagonal, Matrix<T> off_diagonal) override {
    const int64_t n = A.rows();
    LETHE_CHECK(A.cols() == n && diagonal.rows() == 1 && diagonal.cols() == n &&
                off_diagonal.rows() == 1 && off_diagonal.cols() == n);
    if (n == 0) return;
    Eigen::setNbThreads(threads_);
    Eigen::Tridiagonalization<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>> tri(Transposed(A));
    Mut(diagonal).row(0) = tri.diagonal().transpose();
    Mut(off_diagonal).setZero();
    Mut(off_diagonal).row(0).head(n - 1) = tri.subDiagonal().transpose();
    // A = Q T Qᵀ: Q's columns, stored column-major, are E's rows in the row-major A.
    Transposed(A) = tri.matrixQ();
  }
  void TridiagonalSolve(const Matrix<T>& pivots, const Matrix<T>& multipliers,
                        Matrix<T> X) override {
    CheckSameShape(pivots.rows(), pivots.cols(), X.rows(), X.cols());
    CheckSameShape(multipliers.rows(), multipliers.cols(), X.rows(), X.cols());
    const int64_t n = X.cols();
    if (n == 0) return;
    for (int64_t r = 0; r < X.rows(); ++r)
      TridiagonalSolveRow(pivots.data() + r * pivots.ld(),
                          multipliers.data() + r * multipliers.ld(), X.data() + r * X.ld(), n);
  }

  // --- window operations: loops in cpu_window_ops.cc ------------------------------------
  void Im2Col(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> cols) override {
    cpu::Im2Col(g, X, cols);
  }
  void Col2Im(const WindowGeometry& g, const Matrix<T>& cols, T beta, Matrix<T> dX) override {
    cpu::Col2Im(g, cols, beta, dX);
  }
  void TransposeRows(int64_t a, int64_t b, const Matrix<T>& src, Matrix<T> dst) override {
    cpu::TransposeRows(a, b, src, dst);
  }
  // Fused, a block of examples at a time (cpu_conv_ops.cc): the workspace is not needed.
  void ConvForward(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& W,
                   const Matrix<T>& b, T beta, Matrix<T> Y, Matrix<T>, Matrix<T>) override {
    cpu::ConvForward(g, X, W, b, beta, Y);
  }
  void ConvWeightGradient(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& D, T beta,
                          Matrix<T> dW, Matrix<T> db, Matrix<T>, Matrix<T>) override {
    cpu::ConvWeightGradient(g, X, D, beta, dW, db);
  }
  void ConvInputGradient(const WindowGeometry& g, const Matrix<T>& D, const Matrix<T>& W, T beta,
                         Matrix<T> dX, Matrix<T>, Matrix<T>) override {
    cpu::ConvInputGradient(g, D, W, beta, dX);
  }

  // --- row and column scaling (kernels/cpu/cpu_row_ops.cc) ------------------------------
  void ScaleRows(T alpha, const Matrix<T>& s, const Matrix<T>& A, T beta, Matrix<T> out) override {
    cpu::ScaleRows(alpha, s, A, beta, out);
  }
  void ScaleColumns(T alpha, const Matrix<T>& A, const Matrix<T>& r, T beta,
                    Matrix<T> out) override {
    cpu::ScaleColumns(alpha, A, r, beta, out);
  }
  void AddColumn(T alpha, const Matrix<T>& c, Matrix<T> A) override { cpu::AddColumn(alpha, c, A); }
  void InverseSqrt(const Matrix<T>& x, T shift, Matrix<T> out) override {
    cpu::InverseSqrt(x, shift, out);
  }

  // --- pooling and indexed gather/scatter (kernels/cpu/cpu_pool_ops.cc) -------------------
  void MaxPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y,
               Matrix<T> argmax) override {
    cpu::MaxPool(g, X, Y, argmax);
  }
  void GatherIndexed(const Matrix<T>& src, const Matrix<T>& index, Matrix<T> dst) override {
    cpu::GatherIndexed(src, index, dst);
  }
  void ScatterAddIndexed(const Matrix<T>& src, const Matrix<T>& index, T beta,
                         Matrix<T> dst) override {
    cpu::ScatterAddIndexed(src, index, beta, dst);
  }
  void AvgPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y) override {
    cpu::AvgPool(g, X, Y);
  }
  void AvgPoolAdjoint(const WindowGeometry& g, const Matrix<T>& dY, T beta, Matrix<T> dX) override {
    cpu::AvgPoolAdjoint(g, dY, beta, dX);
  }

  // --- embedding bags (kernels/cpu/cpu_embedding_ops.cc) ---------------------------------
  void EmbeddingBag(const Matrix<T>& ids, const Matrix<T>& table, int64_t padding_idx, bool mean,
                    Matrix<T> out) override {
    cpu::EmbeddingBag(ids, table, padding_idx, mean, out);
  }
  void EmbeddingBagAdjoint(const Matrix<T>& ids, const Matrix<T>& delta, int64_t padding_idx,
                           bool mean, Matrix<T> grad_table) override {
    cpu::EmbeddingBagAdjoint(ids, delta, padding_idx, mean, grad_table);
  }
  void EmbeddingBagPerExample(const Matrix<T>& ids, const Matrix<T>& delta, int64_t padding_idx,
                              bool mean, Matrix<T> out) override {
    cpu::EmbeddingBagPerExample(ids, delta, padding_idx, mean, out);
  }

 private:
  // The tile side of WeightedGram and CholeskyFactor's trailing updates, and the latter's
  // panel width.
  static constexpr int64_t kTile = 256;
  int threads_ = 1;
  std::vector<T> scratch_;  // WeightedGram's scaled rows, n × k, kept between calls
};

}  // namespace

template <typename T>
std::unique_ptr<Backend<T>> MakeCpuBackend(int threads) {
  return std::make_unique<CpuBackend<T>>(threads);
}

template std::unique_ptr<Backend<float>> MakeCpuBackend<float>(int);
template std::unique_ptr<Backend<double>> MakeCpuBackend<double>(int);

}  // namespace lethe::kernels
