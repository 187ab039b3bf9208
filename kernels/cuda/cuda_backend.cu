// CUDA backend. Layout: lethe matrices are row-major with a leading dimension; cuBLAS is
// column-major. A row-major m × k matrix with leading dimension ld is, read column-major,
// its transpose (k × m, same ld), so C = op(A)·op(B) in row-major is Cᵀ = op(B)ᵀ·op(A)ᵀ in
// column-major: cuBLAS is called with the operands swapped and the same op flags, and no
// data is ever transposed or copied.
//
// Elementwise and row-wise kernels run one thread per element (or per row, for the
// losses) in a grid-stride loop and call the kernels/scalar_math.h formulas, so the CPU
// and the GPU evaluate the same expressions. Everything is queued on the context's stream;
// only Download, Dot and Sum wait for it.
#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/pool_ops.h"
#include "kernels/cuda/embedding_ops.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/reductions.h"
#include "kernels/cuda/window_ops.h"
#include "kernels/cuda/row_ops.h"
#include "kernels/scalar_math.h"

namespace lethe::kernels {
namespace {

using cuda::LaunchElements;
using cuda::LaunchRows;

// --- elementwise operations, as functors (no extended lambdas needed) --------------------

template <typename T>
struct FillOp {
  T* y;
  int64_t ldy;
  T value;
  __device__ void operator()(int64_t r, int64_t c) const { y[r * ldy + c] = value; }
};

// y = alpha · x + beta · y; beta = 0 never reads y (as the CPU backend, NaN-safe).
template <typename T>
struct AxpbyOp {
  const T* x;
  T* y;
  int64_t ldx, ldy;
  T alpha, beta;
  __device__ void operator()(int64_t r, int64_t c) const {
    T v = alpha * x[r * ldx + c];
    if (beta != T(0)) v += beta * y[r * ldy + c];
    y[r * ldy + c] = v;
  }
};

template <typename T>
struct AddRowOp {
  const T* row;
  T* a;
  int64_t lda;
  __device__ void operator()(int64_t r, int64_t c) const { a[r * lda + c] += row[c]; }
};

// C = A ⊙ B + beta · C; each element is read before it is written, so C may alias A or B.
template <typename T>
struct MultiplyOp {
  const T* a;
  const T* b;
  T* c;
  int64_t lda, ldb, ldc;
  T beta;
  __device__ void operator()(int64_t r, int64_t j) const {
    T v = a[r * lda + j] * b[r * ldb + j];
    if (beta != T(0)) v += beta * c[r * ldc + j];
    c[r * ldc + j] = v;
  }
};

// out row r, column p·nb + q = a[r, p] · b[r, q].
template <typename T>
struct RowOuterOp {
  const T* a;
  const T* b;
  T* out;
  int64_t lda, ldb, ldo, nb;
  __device__ void operator()(int64_t r, int64_t j) const {
    out[r * ldo + j] = a[r * lda + j / nb] * b[r * ldb + j % nb];
  }
};

template <typename T>
struct GatherOp {
  const T* src;
  const int64_t* rows;
  T* dst;
  int64_t lds, ldd;
  __device__ void operator()(int64_t r, int64_t c) const {
    dst[r * ldd + c] = src[rows[r] * lds + c];
  }
};

template <typename T>
struct ActivateOp {
  const T* z;
  T* out;
  int64_t ldz, ldo;
  Activation act;
  int order;
  __device__ void operator()(int64_t r, int64_t c) const {
    out[r * ldo + c] = ActivationValue<T>(act, order, z[r * ldz + c]);
  }
};

// --- row-wise losses -----------------------------------------------------------------------

template <typename T>
struct LossValueOp {
  const T* f;
  const T* y;
  T* out;
  int64_t ldf, ldy, ldo, width;
  LossKind loss;
  __device__ void operator()(int64_t r) const {
    out[r * ldo] = LossValueRow<T>(loss, f + r * ldf, width, y + r * ldy);
  }
};

template <typename T>
struct LossGradientOp {
  const T* f;
  const T* y;
  T* g;
  int64_t ldf, ldy, ldg, width;
  LossKind loss;
  T scale;
  __device__ void operator()(int64_t r) const {
    LossGradientRow<T>(loss, scale, f + r * ldf, width, y + r * ldy, g + r * ldg);
  }
};

template <typename T>
struct LossHessianOp {
  const T* f;
  const T* v;
  T* out;
  int64_t ldf, ldv, ldo, width;
  LossKind loss;
  T scale;
  __device__ void operator()(int64_t r) const {
    LossHessianRow<T>(loss, scale, f + r * ldf, width, v + r * ldv, out + r * ldo);
  }
};

template <typename T>
struct CorrectOp {
  const T* f;
  const T* y;
  T* out;
  int64_t ldf, ldy, ldo, width;
  LossKind loss;
  __device__ void operator()(int64_t r) const {
    out[r * ldo] = CorrectRow<T>(loss, f + r * ldf, width, y + r * ldy);
  }
};

// (A + Aᵀ)/2: the thread of element (r, c) above the diagonal writes both halves.
template <typename T>
struct SymmetrizeOp {
  T* a;
  int64_t lda;
  __device__ void operator()(int64_t r, int64_t c) const {
    if (r >= c) return;
    const T mean = T(0.5) * (a[r * lda + c] + a[c * lda + r]);
    a[r * lda + c] = mean;
    a[c * lda + r] = mean;
  }
};

// s[r, c] = w[r] · x[r, c]: the weighted rows of WeightedGram.
template <typename T>
struct ScaleRowsOp {
  const T* x;
  const T* w;
  T* s;
  int64_t ldx, ldw, lds;
  __device__ void operator()(int64_t r, int64_t c) const {
    s[r * lds + c] = w[r * ldw] * x[r * ldx + c];
  }
};

// a[r, c] = a[c, r] above the diagonal: the lower triangle mirrored.
template <typename T>
struct MirrorLowerOp {
  T* a;
  int64_t lda;
  __device__ void operator()(int64_t r, int64_t c) const {
    if (r < c) a[r * lda + c] = a[c * lda + r];
  }
};

// Row r of X ← (L D Lᵀ)⁻¹ x, one thread per row (scalar_math.h, as the CPU).
template <typename T>
struct TridiagonalSolveOp {
  const T* d;
  const T* l;
  T* x;
  int64_t ldd, ldl, ldx, n;
  __device__ void operator()(int64_t r) const {
    TridiagonalSolveRow(d + r * ldd, l + r * ldl, x + r * ldx, n);
  }
};

// --- cuSOLVER by precision: every call on the column-major view with uplo = upper, whose
// upper triangle is the row-major lower one (see CholeskyFactor). -------------------------

constexpr cublasFillMode_t kUpper = CUBLAS_FILL_MODE_UPPER;

cusolverStatus_t PotrfWork(cusolverDnHandle_t h, int n, float* a, int lda, int* lwork) {
  return cusolverDnSpotrf_bufferSize(h, kUpper, n, a, lda, lwork);
}
cusolverStatus_t PotrfWork(cusolverDnHandle_t h, int n, double* a, int lda, int* lwork) {
  return cusolverDnDpotrf_bufferSize(h, kUpper, n, a, lda, lwork);
}
cusolverStatus_t Potrf(cusolverDnHandle_t h, int n, float* a, int lda, float* work, int lwork,
                       int* info) {
  return cusolverDnSpotrf(h, kUpper, n, a, lda, work, lwork, info);
}
cusolverStatus_t Potrf(cusolverDnHandle_t h, int n, double* a, int lda, double* work, int lwork,
                       int* info) {
  return cusolverDnDpotrf(h, kUpper, n, a, lda, work, lwork, info);
}
cusolverStatus_t Potrs(cusolverDnHandle_t h, int n, int nrhs, const float* a, int lda, float* b,
                       int ldb, int* info) {
  return cusolverDnSpotrs(h, kUpper, n, nrhs, a, lda, b, ldb, info);
}
cusolverStatus_t Potrs(cusolverDnHandle_t h, int n, int nrhs, const double* a, int lda,
                       double* b, int ldb, int* info) {
  return cusolverDnDpotrs(h, kUpper, n, nrhs, a, lda, b, ldb, info);
}
cusolverStatus_t SyevdWork(cusolverDnHandle_t h, cusolverEigMode_t mode, int n, const float* a,
                           int lda, const float* w, int* lwork) {
  return cusolverDnSsyevd_bufferSize(h, mode, kUpper, n, a, lda, w, lwork);
}
cusolverStatus_t SyevdWork(cusolverDnHandle_t h, cusolverEigMode_t mode, int n, const double* a,
                           int lda, const double* w, int* lwork) {
  return cusolverDnDsyevd_bufferSize(h, mode, kUpper, n, a, lda, w, lwork);
}
cusolverStatus_t Syevd(cusolverDnHandle_t h, cusolverEigMode_t mode, int n, float* a, int lda,
                       float* w, float* work, int lwork, int* info) {
  return cusolverDnSsyevd(h, mode, kUpper, n, a, lda, w, work, lwork, info);
}
cusolverStatus_t Syevd(cusolverDnHandle_t h, cusolverEigMode_t mode, int n, double* a, int lda,
                       double* w, double* work, int lwork, int* info) {
  return cusolverDnDsyevd(h, mode, kUpper, n, a, lda, w, work, lwork, info);
}
cusolverStatus_t SytrdWork(cusolverDnHandle_t h, int n, const float* a, int lda, const float* d,
                           const float* e, const float* tau, int* lwork) {
  return cusolverDnSsytrd_bufferSize(h, kUpper, n, a, lda, d, e, tau, lwork);
}
cusolverStatus_t SytrdWork(cusolverDnHandle_t h, int n, const double* a, int lda,
                           const double* d, const double* e, const double* tau, int* lwork) {
  return cusolverDnDsytrd_bufferSize(h, kUpper, n, a, lda, d, e, tau, lwork);
}
cusolverStatus_t Sytrd(cusolverDnHandle_t h, int n, float* a, int lda, float* d, float* e,
                       float* tau, float* work, int lwork, int* info) {
  return cusolverDnSsytrd(h, kUpper, n, a, lda, d, e, tau, work, lwork, info);
}
cusolverStatus_t Sytrd(cusolverDnHandle_t h, int n, double* a, int lda, double* d, double* e,
                       double* tau, double* work, int lwork, int* info) {
  return cusolverDnDsytrd(h, kUpper, n, a, lda, d, e, tau, work, lwork, info);
}
cusolverStatus_t OrgtrWork(cusolverDnHandle_t h, int n, const float* a, int lda, const float* tau,
                           int* lwork) {
  return cusolverDnSorgtr_bufferSize(h, kUpper, n, a, lda, tau, lwork);
}
cusolverStatus_t OrgtrWork(cusolverDnHandle_t h, int n, const double* a, int lda,
                           const double* tau, int* lwork) {
  return cusolverDnDorgtr_bufferSize(h, kUpper, n, a, lda, tau, lwork);
}
cusolverStatus_t Orgtr(cusolverDnHandle_t h, int n, float* a, int lda, const float* tau,
                       float* work, int lwork, int* info) {
  return cusolverDnSorgtr(h, kUpper, n, a, lda, tau, work, lwork, info);
}
cusolverStatus_t Orgtr(cusolverDnHandle_t h, int n, double* a, int lda, const double* tau,
                       double* work, int lwork, int* info) {
  return cusolverDnDorgtr(h, kUpper, n, a, lda, tau, work, lwork, info);
}

// cuSOLVER's dense routines take int sizes.
int AsInt(int64_t x, const char* what) {
  if (x > INT_MAX)
    Fail("--device cuda: ", what, " = ", x, " is beyond cuSOLVER's 32-bit sizes");
  return static_cast<int>(x);
}

// --- cuBLAS by precision --------------------------------------------------------------------

cublasStatus_t CublasGemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m,
                          int64_t n, int64_t k, const float* alpha, const float* a, int64_t lda,
                          const float* b, int64_t ldb, const float* beta, float* c, int64_t ldc) {
  return cublasSgemm_64(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
cublasStatus_t CublasGemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m,
                          int64_t n, int64_t k, const double* alpha, const double* a, int64_t lda,
                          const double* b, int64_t ldb, const double* beta, double* c,
                          int64_t ldc) {
  return cublasDgemm_64(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
// C (n × n, one triangle) = alpha · A Bᵀ + beta · C, A and B n × k, A Bᵀ known symmetric.
cublasStatus_t CublasSyrkx(cublasHandle_t h, cublasFillMode_t uplo, int64_t n, int64_t k,
                           const float* alpha, const float* a, int64_t lda, const float* b,
                           int64_t ldb, const float* beta, float* c, int64_t ldc) {
  return cublasSsyrkx_64(h, uplo, CUBLAS_OP_N, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
cublasStatus_t CublasSyrkx(cublasHandle_t h, cublasFillMode_t uplo, int64_t n, int64_t k,
                           const double* alpha, const double* a, int64_t lda, const double* b,
                           int64_t ldb, const double* beta, double* c, int64_t ldc) {
  return cublasDsyrkx_64(h, uplo, CUBLAS_OP_N, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
cublasStatus_t CublasGemv(cublasHandle_t h, int64_t m, int64_t n, const float* alpha,
                          const float* a, int64_t lda, const float* x, const float* beta,
                          float* y) {
  return cublasSgemv_64(h, CUBLAS_OP_N, m, n, alpha, a, lda, x, 1, beta, y, 1);
}
cublasStatus_t CublasGemv(cublasHandle_t h, int64_t m, int64_t n, const double* alpha,
                          const double* a, int64_t lda, const double* x, const double* beta,
                          double* y) {
  return cublasDgemv_64(h, CUBLAS_OP_N, m, n, alpha, a, lda, x, 1, beta, y, 1);
}

void CheckSameShape(int64_t r1, int64_t c1, int64_t r2, int64_t c2) {
  LETHE_CHECK(r1 == r2 && c1 == c2, "shape ", r1, "x", c1, " vs ", r2, "x", c2);
}

template <typename T>
void CheckOnDevice(const Matrix<T>& m) {
  LETHE_CHECK(m.device() == DeviceKind::kCuda || m.empty(),
              "a host matrix was passed to the CUDA backend");
}

template <typename T>
class CudaBackend final : public Backend<T> {
 public:
  explicit CudaBackend(std::shared_ptr<CudaContext> context)
      : context_(std::move(context)), stream_(context_->stream()) {}

  DeviceKind device() const override { return DeviceKind::kCuda; }
  std::string Describe() const override { return "cuda " + context_->description(); }

  // --- memory -------------------------------------------------------------------------------
  Matrix<T> Allocate(int64_t rows, int64_t cols) override {
    LETHE_CHECK(rows >= 0 && cols >= 0);
    const size_t bytes = static_cast<size_t>(rows * cols) * sizeof(T);
    void* p = nullptr;
    // Plain device memory, never managed memory: oversubscribing managed memory can hang
    // the GPU rather than fail. The deleter ignores errors (the runtime may be unloading).
    const cudaError_t status = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      Fail("--device cuda: out of GPU memory allocating a ", rows, "x", cols, " matrix (", bytes,
           " bytes; ", free_bytes, " of ", total_bytes,
           " bytes free): use a smaller batch or data set");
    }
    LETHE_CUDA_CHECK(status);
    std::shared_ptr<void> storage(p, [](void* q) { cudaFree(q); });
    return Matrix<T>(std::move(storage), static_cast<T*>(p), rows, cols, cols, DeviceKind::kCuda);
  }

  void Upload(const T* host, Matrix<T> dst) override {
    CheckOnDevice(dst);
    Copy2D(dst.data(), dst.ld(), host, dst.cols(), dst.rows(), dst.cols(), cudaMemcpyHostToDevice);
    // Pageable host memory: wait, so the caller may free or reuse `host` at once.
    context_->Synchronize();
  }
  void Download(const Matrix<T>& src, T* host) override {
    CheckOnDevice(src);
    Copy2D(host, src.cols(), src.data(), src.ld(), src.rows(), src.cols(), cudaMemcpyDeviceToHost);
    context_->Synchronize();
  }
  void Copy(const Matrix<T>& src, Matrix<T> dst) override {
    CheckSameShape(src.rows(), src.cols(), dst.rows(), dst.cols());
    Copy2D(dst.data(), dst.ld(), src.data(), src.ld(), src.rows(), src.cols(),
           cudaMemcpyDeviceToDevice);
  }
  void Fill(Matrix<T> dst, T value) override {
    LaunchElements(stream_, dst.rows(), dst.cols(), FillOp<T>{dst.data(), dst.ld(), value});
  }
  void GatherRows(const Matrix<T>& src, const int64_t* rows, Matrix<T> dst) override {
    LETHE_CHECK(src.cols() == dst.cols());
    if (dst.rows() == 0 || dst.cols() == 0) return;
    for (int64_t i = 0; i < dst.rows(); ++i) LETHE_CHECK(rows[i] >= 0 && rows[i] < src.rows());
    // The index list goes to the workspace; the copy is ordered before the kernel that
    // reads it and after any earlier user of the workspace, all on one stream.
    auto* device_rows = static_cast<int64_t*>(context_->Workspace(sizeof(int64_t) * dst.rows()));
    LETHE_CUDA_CHECK(cudaMemcpyAsync(device_rows, rows, sizeof(int64_t) * dst.rows(),
                                     cudaMemcpyHostToDevice, stream_));
    LaunchElements(stream_, dst.rows(), dst.cols(),
                   GatherOp<T>{src.data(), device_rows, dst.data(), src.ld(), dst.ld()});
    // `rows` is pageable host memory the caller may free on return.
    context_->Synchronize();
  }

  void EraseRows(Matrix<T> m, const int64_t* rows, int64_t count) override {
    CheckEraseRows(m, rows, count);
    if (count == 0 || m.cols() == 0) return;
    // The rows after the first erased one that stay, gathered into a scratch matrix and
    // copied back (a kernel moving rows within m would race with itself).
    const int64_t first = rows[0], n = m.rows();
    std::vector<int64_t> kept;
    kept.reserve(static_cast<size_t>(n - first - count));
    for (int64_t i = first, j = 0; i < n; ++i) {
      if (j < count && rows[j] == i) {
        ++j;
        continue;
      }
      kept.push_back(i);
    }
    if (kept.empty()) return;
    Matrix<T> scratch = Allocate(static_cast<int64_t>(kept.size()), m.cols());
    GatherRows(m, kept.data(), scratch);
    Copy(scratch, m.Rows(first, scratch.rows()));
    context_->Synchronize();  // scratch is freed on return
  }

  // --- linear algebra -----------------------------------------------------------------------
  void Gemm(Op op_a, Op op_b, T alpha, const Matrix<T>& A, const Matrix<T>& B, T beta,
            Matrix<T> C) override {
    const auto [ta, tb, m, n, k] = CheckGemmShape(op_a, op_b, A, B, C);
    if (m == 0 || n == 0) return;
    if (k == 0) {  // no products: C = beta · C (cuBLAS's k = 0 behaviour is not spelt out)
      Scale(beta, C);
      return;
    }
    // Column-major Cᵀ (n × m) = op(B)ᵀ (n × k) · op(A)ᵀ (k × m): B first, flags unchanged.
    // A stored matrix's column-major leading dimension is its row-major ld (≥ 1 for cuBLAS).
    LETHE_CUDA_CHECK(CublasGemm(
        context_->cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
        &alpha, B.data(), std::max<int64_t>(1, B.ld()), A.data(), std::max<int64_t>(1, A.ld()),
        &beta, C.data(), std::max<int64_t>(1, C.ld())));
  }
  void Axpby(T alpha, const Matrix<T>& x, T beta, Matrix<T> y) override {
    CheckSameShape(x.rows(), x.cols(), y.rows(), y.cols());
    LaunchElements(stream_, y.rows(), y.cols(),
                   AxpbyOp<T>{x.data(), y.data(), x.ld(), y.ld(), alpha, beta});
  }
  T Dot(const Matrix<T>& x, const Matrix<T>& y) override {
    CheckSameShape(x.rows(), x.cols(), y.rows(), y.cols());
    return cuda::FullReduce(*context_, x, &y);
  }
  T Sum(const Matrix<T>& x) override { return cuda::FullReduce<T>(*context_, x, nullptr); }
  void RowDots(const Matrix<T>& A, const Matrix<T>& B, Matrix<T> out) override {
    CheckSameShape(A.rows(), A.cols(), B.rows(), B.cols());
    LETHE_CHECK(out.rows() == A.rows() && out.cols() == 1);
    cuda::RowReduce(*context_, A, &B, T(1), T(0), out.data(), out.ld());
  }
  void ColumnSums(T alpha, const Matrix<T>& A, T beta, Matrix<T> out) override {
    LETHE_CHECK(out.rows() == 1 && out.cols() == A.cols());
    if (A.cols() == 0) return;
    if (A.rows() == 0) {  // BLAS returns early without scaling y: do it here
      Scale(beta, out);
      return;
    }
    // 1ᵀA is the column-major matrix-vector product Aᵀ·1 (Aᵀ is how cuBLAS sees A): a
    // GEMV, deterministic with atomics disallowed. The ones vector lives in the workspace.
    T* ones = static_cast<T*>(context_->Workspace(sizeof(T) * A.rows()));
    LaunchElements(stream_, 1, A.rows(), FillOp<T>{ones, 0, T(1)});
    LETHE_CUDA_CHECK(CublasGemv(context_->cublas(), A.cols(), A.rows(), &alpha, A.data(),
                                std::max<int64_t>(1, A.ld()), ones, &beta, out.data()));
  }
  void AddRow(const Matrix<T>& row, Matrix<T> A) override {
    LETHE_CHECK(row.rows() == 1 && row.cols() == A.cols());
    LaunchElements(stream_, A.rows(), A.cols(), AddRowOp<T>{row.data(), A.data(), A.ld()});
  }
  void Multiply(const Matrix<T>& A, const Matrix<T>& B, T beta, Matrix<T> C) override {
    CheckSameShape(A.rows(), A.cols(), B.rows(), B.cols());
    CheckSameShape(A.rows(), A.cols(), C.rows(), C.cols());
    LaunchElements(stream_, C.rows(), C.cols(),
                   MultiplyOp<T>{A.data(), B.data(), C.data(), A.ld(), B.ld(), C.ld(), beta});
  }
  void RowOuter(const Matrix<T>& A, const Matrix<T>& B, Matrix<T> out) override {
    LETHE_CHECK(A.rows() == B.rows() && out.rows() == A.rows() &&
                out.cols() == A.cols() * B.cols());
    LaunchElements(
        stream_, out.rows(), out.cols(),
        RowOuterOp<T>{A.data(), B.data(), out.data(), A.ld(), B.ld(), out.ld(), B.cols()});
  }

  // --- activations and losses -----------------------------------------------------------------
  void Activate(Activation act, int order, const Matrix<T>& Z, Matrix<T> out) override {
    CheckSameShape(Z.rows(), Z.cols(), out.rows(), out.cols());
    LETHE_CHECK(order >= 0 && order <= 2);
    LaunchElements(stream_, Z.rows(), Z.cols(),
                   ActivateOp<T>{Z.data(), out.data(), Z.ld(), out.ld(), act, order});
  }
  void LossValues(LossKind loss, const Matrix<T>& F, const Matrix<T>& Y, Matrix<T> out) override {
    LETHE_CHECK(Y.rows() == F.rows() && out.rows() == F.rows() && out.cols() == 1);
    LaunchRows(
        stream_, F.rows(),
        LossValueOp<T>{F.data(), Y.data(), out.data(), F.ld(), Y.ld(), out.ld(), F.cols(), loss});
  }
  void LossGradient(LossKind loss, T scale, const Matrix<T>& F, const Matrix<T>& Y,
                    Matrix<T> G) override {
    CheckSameShape(F.rows(), F.cols(), G.rows(), G.cols());
    LETHE_CHECK(Y.rows() == F.rows());
    LaunchRows(stream_, F.rows(),
               LossGradientOp<T>{F.data(), Y.data(), G.data(), F.ld(), Y.ld(), G.ld(), F.cols(),
                                 loss, scale});
  }
  void LossHessianProduct(LossKind loss, T scale, const Matrix<T>& F, const Matrix<T>& V,
                          Matrix<T> out) override {
    CheckSameShape(F.rows(), F.cols(), V.rows(), V.cols());
    CheckSameShape(F.rows(), F.cols(), out.rows(), out.cols());
    LaunchRows(stream_, F.rows(),
               LossHessianOp<T>{F.data(), V.data(), out.data(), F.ld(), V.ld(), out.ld(), F.cols(),
                                loss, scale});
  }
  void Correct(LossKind loss, const Matrix<T>& F, const Matrix<T>& Y, Matrix<T> out) override {
    LETHE_CHECK(Y.rows() == F.rows() && out.rows() == F.rows() && out.cols() == 1);
    LaunchRows(
        stream_, F.rows(),
        CorrectOp<T>{F.data(), Y.data(), out.data(), F.ld(), Y.ld(), out.ld(), F.cols(), loss});
  }

  // S = diag(w) X in the workspace, then syrkx: X read column-major is Xᵀ (k × n), S
  // column-major is Xᵀ diag(w), so Xᵀ (Xᵀ diag(w))ᵀ = Xᵀ diag(w) X, which syrkx computes in
  // one triangle only (n·k² flops, whatever the signs of w). Its column-major upper triangle
  // is the row-major lower one, which is then mirrored.
  void WeightedGram(T alpha, const Matrix<T>& X, const Matrix<T>& w, T beta,
                    Matrix<T> out) override {
    const int64_t n = X.rows(), k = X.cols();
    LETHE_CHECK(w.rows() == n && w.cols() == 1 && out.rows() == k && out.cols() == k);
    if (k == 0) return;
    if (n == 0) {
      Scale(beta, out);
    } else {
      T* s = static_cast<T*>(context_->Workspace(sizeof(T) * n * k));
      LaunchElements(stream_, n, k, ScaleRowsOp<T>{X.data(), w.data(), s, X.ld(), w.ld(), k});
      LETHE_CUDA_CHECK(CublasSyrkx(context_->cublas(), CUBLAS_FILL_MODE_UPPER, k, n, &alpha,
                                   X.data(), std::max<int64_t>(1, X.ld()), s, k, &beta, out.data(),
                                   std::max<int64_t>(1, out.ld())));
    }
    LaunchElements(stream_, k, k, MirrorLowerOp<T>{out.data(), out.ld()});
  }

  // --- dense symmetric matrices -------------------------------------------------------------
  // The row-major p × p storage read column-major is Aᵀ = A. potrf with uplo = upper
  // factors it as UᵀU with U in the column-major upper triangle, which is the row-major
  // lower triangle holding Uᵀ = L: A = L Lᵀ, as the interface says. potrs and syevd read
  // the same triangle. Only the info flag comes back to the host.
  void Symmetrize(Matrix<T> A) override {
    LETHE_CHECK(A.rows() == A.cols());
    LaunchElements(stream_, A.rows(), A.cols(), SymmetrizeOp<T>{A.data(), A.ld()});
  }
  bool CholeskyFactor(Matrix<T> A) override {
    LETHE_CHECK(A.rows() == A.cols());
    if (A.rows() == 0) return true;
    const int n = AsInt(A.rows(), "matrix size"), lda = AsInt(A.ld(), "leading dimension");
    int lwork = 0;
    LETHE_CUDA_CHECK(PotrfWork(context_->cusolver(), n, A.data(), lda, &lwork));
    T* work = nullptr;
    int* info = SolverWorkspace(lwork, &work);
    LETHE_CUDA_CHECK(Potrf(context_->cusolver(), n, A.data(), lda, work, lwork, info));
    return ReadInfo(info, "potrf") == 0;  // > 0: the leading minor of that order is not PD
  }
  void CholeskySolve(const Matrix<T>& L, Matrix<T> X) override {
    LETHE_CHECK(L.rows() == L.cols() && X.cols() == L.rows());
    if (X.rows() == 0 || X.cols() == 0) return;
    // Row-major X (m × p, ld) is the column-major p × m right-hand-side block, ldb = ld.
    const int n = AsInt(L.rows(), "matrix size"), lda = AsInt(L.ld(), "leading dimension");
    const int nrhs = AsInt(X.rows(), "right-hand sides"), ldb = AsInt(X.ld(), "leading dimension");
    int* info = SolverWorkspace(0, nullptr);
    LETHE_CUDA_CHECK(Potrs(context_->cusolver(), n, nrhs, L.data(), lda, X.data(), ldb, info));
    LETHE_CHECK(ReadInfo(info, "potrs") == 0, "cuSOLVER potrs rejected a parameter");
  }
  void SymmetricEigen(Matrix<T> A, Matrix<T> values, bool vectors) override {
    LETHE_CHECK(A.rows() == A.cols() && values.rows() == 1 && values.cols() == A.rows());
    if (A.rows() == 0) return;
    const int n = AsInt(A.rows(), "matrix size"), lda = AsInt(A.ld(), "leading dimension");
    // Column-major eigenvectors (syevd's columns) are the rows of the row-major A.
    const cusolverEigMode_t mode = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
    int lwork = 0;
    LETHE_CUDA_CHECK(
        SyevdWork(context_->cusolver(), mode, n, A.data(), lda, values.data(), &lwork));
    T* work = nullptr;
    int* info = SolverWorkspace(lwork, &work);
    LETHE_CUDA_CHECK(
        Syevd(context_->cusolver(), mode, n, A.data(), lda, values.data(), work, lwork, info));
    LETHE_CHECK(ReadInfo(info, "syevd") == 0,
                "cuSOLVER syevd: the symmetric eigenvalue iteration did not converge");
  }
  void SymmetricTridiagonal(Matrix<T> A, Matrix<T> diagonal, Matrix<T> off_diagonal) override {
    const int64_t p = A.rows();
    LETHE_CHECK(A.cols() == p && diagonal.rows() == 1 && diagonal.cols() == p &&
                off_diagonal.rows() == 1 && off_diagonal.cols() == p);
    if (p == 0) return;
    Fill(off_diagonal, T(0));
    if (p == 1) {  // T = A, E = 1: there is no reflector to form
      Copy(A, diagonal);
      Fill(A, T(1));
      return;
    }
    const int n = AsInt(p, "matrix size"), lda = AsInt(A.ld(), "leading dimension");
    // sytrd reduces the column-major view (uplo = upper) to Q T Qᵀ, keeping the reflectors
    // in A and their scales τ (n - 1) after the work area; orgtr then forms Q in place. Q's
    // columns, column-major, are the rows of the row-major A: A ← E = Qᵀ as the interface says.
    int lwork_trd = 0, lwork_gtr = 0;
    LETHE_CUDA_CHECK(SytrdWork(context_->cusolver(), n, A.data(), lda, diagonal.data(),
                               off_diagonal.data(), off_diagonal.data(), &lwork_trd));
    LETHE_CUDA_CHECK(OrgtrWork(context_->cusolver(), n, A.data(), lda, off_diagonal.data(),
                               &lwork_gtr));
    const int lwork = std::max(lwork_trd, lwork_gtr);
    T* work = nullptr;
    int* info = SolverWorkspace(lwork + n, &work);
    T* tau = work + lwork;
    LETHE_CUDA_CHECK(Sytrd(context_->cusolver(), n, A.data(), lda, diagonal.data(),
                           off_diagonal.data(), tau, work, lwork, info));
    LETHE_CHECK(ReadInfo(info, "sytrd") == 0, "cuSOLVER sytrd rejected a parameter");
    LETHE_CUDA_CHECK(Orgtr(context_->cusolver(), n, A.data(), lda, tau, work, lwork, info));
    LETHE_CHECK(ReadInfo(info, "orgtr") == 0, "cuSOLVER orgtr rejected a parameter");
  }
  void TridiagonalSolve(const Matrix<T>& pivots, const Matrix<T>& multipliers,
                        Matrix<T> X) override {
    CheckSameShape(pivots.rows(), pivots.cols(), X.rows(), X.cols());
    CheckSameShape(multipliers.rows(), multipliers.cols(), X.rows(), X.cols());
    if (X.cols() == 0) return;
    LaunchRows(stream_, X.rows(),
               TridiagonalSolveOp<T>{pivots.data(), multipliers.data(), X.data(), pivots.ld(),
                                     multipliers.ld(), X.ld(), X.cols()});
  }

  // --- window operations: kernels in cuda_window_ops.cu -----------------------------------
  void Im2Col(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> cols) override {
    cuda::Im2Col(*context_, g, X, cols);
  }
  void Col2Im(const WindowGeometry& g, const Matrix<T>& cols, T beta, Matrix<T> dX) override {
    cuda::Col2Im(*context_, g, cols, beta, dX);
  }
  void TransposeRows(int64_t a, int64_t b, const Matrix<T>& src, Matrix<T> dst) override {
    cuda::TransposeRows(*context_, a, b, src, dst);
  }

  // --- row and column scaling (kernels/cuda/cuda_row_ops.cu) ----------------------------
  void ScaleRows(T alpha, const Matrix<T>& s, const Matrix<T>& A, T beta, Matrix<T> out) override {
    cuda::ScaleRows(*context_, alpha, s, A, beta, out);
  }
  void ScaleColumns(T alpha, const Matrix<T>& A, const Matrix<T>& r, T beta,
                    Matrix<T> out) override {
    cuda::ScaleColumns(*context_, alpha, A, r, beta, out);
  }
  void AddColumn(T alpha, const Matrix<T>& c, Matrix<T> A) override {
    cuda::AddColumn(*context_, alpha, c, A);
  }
  void InverseSqrt(const Matrix<T>& x, T shift, Matrix<T> out) override {
    cuda::InverseSqrt(*context_, x, shift, out);
  }

  // --- pooling and indexed gather/scatter (kernels/cuda/cuda_pool_ops.cu) -----------------
  void MaxPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y,
               Matrix<T> argmax) override {
    CheckOnDevice(X), CheckOnDevice(Y), CheckOnDevice(argmax);
    cuda::MaxPool(stream_, g, X, Y, argmax);
  }
  void GatherIndexed(const Matrix<T>& src, const Matrix<T>& index, Matrix<T> dst) override {
    CheckOnDevice(src), CheckOnDevice(index), CheckOnDevice(dst);
    cuda::GatherIndexed(stream_, src, index, dst);
  }
  void ScatterAddIndexed(const Matrix<T>& src, const Matrix<T>& index, T beta,
                         Matrix<T> dst) override {
    CheckOnDevice(src), CheckOnDevice(index), CheckOnDevice(dst);
    cuda::ScatterAddIndexed(stream_, src, index, beta, dst);
  }
  void AvgPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y) override {
    CheckOnDevice(X), CheckOnDevice(Y);
    cuda::AvgPool(stream_, g, X, Y);
  }
  void AvgPoolAdjoint(const WindowGeometry& g, const Matrix<T>& dY, T beta, Matrix<T> dX) override {
    CheckOnDevice(dY), CheckOnDevice(dX);
    cuda::AvgPoolAdjoint(stream_, g, dY, beta, dX);
  }

  // --- embedding bags (kernels/cuda/cuda_embedding_ops.cu) -------------------------------
  void EmbeddingBag(const Matrix<T>& ids, const Matrix<T>& table, int64_t padding_idx, bool mean,
                    Matrix<T> out) override {
    cuda::EmbeddingBag(*context_, ids, table, padding_idx, mean, out);
  }
  void EmbeddingBagAdjoint(const Matrix<T>& ids, const Matrix<T>& delta, int64_t padding_idx,
                           bool mean, Matrix<T> grad_table) override {
    cuda::EmbeddingBagAdjoint(*context_, ids, delta, padding_idx, mean, grad_table);
  }
  void EmbeddingBagPerExample(const Matrix<T>& ids, const Matrix<T>& delta, int64_t padding_idx,
                              bool mean, Matrix<T> out) override {
    cuda::EmbeddingBagPerExample(*context_, ids, delta, padding_idx, mean, out);
  }

 private:
  // The context's workspace as `lwork` scalars of T followed by cuSOLVER's info flag.
  int* SolverWorkspace(int lwork, T** work) {
    const size_t info_offset = (static_cast<size_t>(lwork) * sizeof(T) + 255) / 256 * 256;
    char* base = static_cast<char*>(context_->Workspace(info_offset + sizeof(int)));
    if (work) *work = reinterpret_cast<T*>(base);
    return reinterpret_cast<int*>(base + info_offset);
  }
  int ReadInfo(const int* info, const char* routine) {
    int* host = static_cast<int*>(context_->HostScratch());
    LETHE_CUDA_CHECK(cudaMemcpyAsync(host, info, sizeof(int), cudaMemcpyDeviceToHost, stream_));
    context_->Synchronize();
    LETHE_CHECK(*host >= 0, "cuSOLVER ", routine, ": invalid parameter ", -*host);
    return *host;
  }

  // x = beta · x, with beta = 0 giving exact zeros (as the CPU's setZero) even over NaN.
  void Scale(T beta, Matrix<T> x) {
    if (beta == T(0))
      Fill(x, T(0));
    else if (beta != T(1))
      LaunchElements(stream_, x.rows(), x.cols(),
                     AxpbyOp<T>{x.data(), x.data(), x.ld(), x.ld(), beta, T(0)});
  }

  // rows × cols elements between two strided buffers, in elements. Contiguous on both
  // sides (the common case, and any single row) is one linear copy; otherwise a pitched
  // 2D copy, which walks the rows without a kernel.
  void Copy2D(T* dst, int64_t ldd, const T* src, int64_t lds, int64_t rows, int64_t cols,
              cudaMemcpyKind kind) {
    if (rows == 0 || cols == 0) return;
    if (rows == 1 || (ldd == cols && lds == cols)) {
      LETHE_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * rows * cols, kind, stream_));
      return;
    }
    LETHE_CUDA_CHECK(cudaMemcpy2DAsync(dst, sizeof(T) * ldd, src, sizeof(T) * lds, sizeof(T) * cols,
                                       rows, kind, stream_));
  }

  std::shared_ptr<CudaContext> context_;
  cudaStream_t stream_;
};

}  // namespace

template <typename T>
std::unique_ptr<Backend<T>> MakeCudaBackend(std::shared_ptr<CudaContext> context) {
  LETHE_CHECK(context != nullptr);
  return std::make_unique<CudaBackend<T>>(std::move(context));
}

template <typename T>
std::unique_ptr<Backend<T>> MakeCudaBackend(int device) {
  return MakeCudaBackend<T>(MakeCudaContext(device));
}

template std::unique_ptr<Backend<float>> MakeCudaBackend<float>(std::shared_ptr<CudaContext>);
template std::unique_ptr<Backend<double>> MakeCudaBackend<double>(std::shared_ptr<CudaContext>);
template std::unique_ptr<Backend<float>> MakeCudaBackend<float>(int);
template std::unique_ptr<Backend<double>> MakeCudaBackend<double>(int);

}  // namespace lethe::kernels
