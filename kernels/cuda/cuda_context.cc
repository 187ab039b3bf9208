#include "kernels/cuda/cuda_context.h"

#include <algorithm>
#include <cstdio>

#include "kernels/cuda/cuda_backend.h"

namespace lethe::kernels {

namespace detail {

void ThrowCudaError(cudaError_t status, const char* call, const char* file, int line) {
  // Clear the runtime's last error so a caller that catches can carry on (sticky errors,
  // e.g. an illegal address, stay: the context is then unusable, as the message says).
  cudaGetLastError();
  Fail("CUDA error: ", call, " failed at ", file, ":", line, ": ", cudaGetErrorName(status), " (",
       cudaGetErrorString(status), ")");
}

void ThrowCudaError(cublasStatus_t status, const char* call, const char* file, int line) {
  Fail("cuBLAS error: ", call, " failed at ", file, ":", line, ": ", cublasGetStatusName(status),
       " (", cublasGetStatusString(status), ")");
}

void ThrowCudaError(cusolverStatus_t status, const char* call, const char* file, int line) {
  // cuSOLVER has no status-to-string function: the common ones by name, else the number.
  const char* name = nullptr;
  switch (status) {
    case CUSOLVER_STATUS_NOT_INITIALIZED: name = "CUSOLVER_STATUS_NOT_INITIALIZED"; break;
    case CUSOLVER_STATUS_ALLOC_FAILED: name = "CUSOLVER_STATUS_ALLOC_FAILED"; break;
    case CUSOLVER_STATUS_INVALID_VALUE: name = "CUSOLVER_STATUS_INVALID_VALUE"; break;
    case CUSOLVER_STATUS_ARCH_MISMATCH: name = "CUSOLVER_STATUS_ARCH_MISMATCH"; break;
    case CUSOLVER_STATUS_EXECUTION_FAILED: name = "CUSOLVER_STATUS_EXECUTION_FAILED"; break;
    case CUSOLVER_STATUS_INTERNAL_ERROR: name = "CUSOLVER_STATUS_INTERNAL_ERROR"; break;
    case CUSOLVER_STATUS_NOT_SUPPORTED: name = "CUSOLVER_STATUS_NOT_SUPPORTED"; break;
    default: break;
  }
  if (name) Fail("cuSOLVER error: ", call, " failed at ", file, ":", line, ": ", name);
  Fail("cuSOLVER error: ", call, " failed at ", file, ":", line, ": status ",
       static_cast<int>(status));
}

}  // namespace detail

bool CudaDeviceAvailable() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  cudaGetLastError();  // a missing driver must not leave an error behind for later calls
  return status == cudaSuccess && count > 0;
}

namespace {

// The environment's fault, so a lethe::Error that says which part is missing.
void CheckDevicePresent(int device) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  cudaGetLastError();
  const std::string detail =
      std::string("(cudaGetDeviceCount: ") + cudaGetErrorString(status) + ")";
  if (status == cudaErrorInsufficientDriver) {
    int runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    Fail(
        "--device cuda: no usable NVIDIA driver: it is missing or older than this build's "
        "CUDA runtime ",
        runtime / 1000, ".", runtime % 1000 / 10, " ", detail);
  }
  if (status == cudaErrorNoDevice || (status == cudaSuccess && count == 0))
    Fail("--device cuda: no CUDA-capable GPU found ", detail);
  if (status != cudaSuccess) Fail("--device cuda: the CUDA runtime cannot start ", detail);
  if (device < 0 || device >= count)
    Fail("--device cuda: CUDA device ", device, " requested but this machine has ", count,
         " (0 to ", count - 1, ")");
}

std::string Describe(int device) {
  cudaDeviceProp prop{};
  LETHE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int runtime = 0, driver = 0;
  LETHE_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  LETHE_CUDA_CHECK(cudaDriverGetVersion(&driver));
  char text[512];
  std::snprintf(text, sizeof text,
                "%s (device %d, sm_%d%d, %d SMs, %.1f GiB; CUDA runtime %d.%d, driver %d.%d)",
                prop.name, device, prop.major, prop.minor, prop.multiProcessorCount,
                prop.totalGlobalMem / 1073741824.0, runtime / 1000, runtime % 1000 / 10,
                driver / 1000, driver % 1000 / 10);
  return text;
}

}  // namespace

CudaContext::CudaContext(int device) : device_(device) {
  CheckDevicePresent(device);
  LETHE_CUDA_CHECK(cudaSetDevice(device));
  description_ = Describe(device);
  // Non-blocking: the legacy default stream (which other libraries in the process might
  // use) never serialises against lethe's work.
  LETHE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  LETHE_CUDA_CHECK(cublasCreate(&cublas_));
  LETHE_CUDA_CHECK(cublasSetStream(cublas_, stream_));
  // alpha/beta are host scalars. Default math: no TF32 for f32 products, so f32 results
  // agree with the CPU to ~1e-5 (TF32 would give ~1e-3). Atomics stay disallowed (the
  // default), which keeps cuBLAS results reproducible run to run.
  LETHE_CUDA_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
  LETHE_CUDA_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  LETHE_CUDA_CHECK(cublasSetAtomicsMode(cublas_, CUBLAS_ATOMICS_NOT_ALLOWED));
  LETHE_CUDA_CHECK(cusolverDnCreate(&cusolver_));
  LETHE_CUDA_CHECK(cusolverDnSetStream(cusolver_, stream_));
  LETHE_CUDA_CHECK(cudaMallocHost(&host_scratch_, 64));
  int cublas_version = 0;
  LETHE_CUDA_CHECK(cublasGetVersion(cublas_, &cublas_version));
  description_.pop_back();  // ")"
  description_ += ", cuBLAS " + std::to_string(cublas_version / 10000) + "." +
                  std::to_string(cublas_version / 100 % 100) + "." +
                  std::to_string(cublas_version % 100) + ")";
}

CudaContext::~CudaContext() {
  // No throwing here: at process exit the runtime may already be unloading.
  if (stream_) cudaStreamSynchronize(stream_);
  if (workspace_) cudaFree(workspace_);
  if (host_scratch_) cudaFreeHost(host_scratch_);
  if (cusolver_) cusolverDnDestroy(cusolver_);
  if (cublas_) cublasDestroy(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void* CudaContext::Workspace(size_t bytes) {
  if (bytes <= workspace_bytes_) return workspace_;
  // Grow geometrically so a sequence of growing requests costs O(log) reallocations. The
  // old buffer may still be read by queued work: wait for it before freeing.
  const size_t grown = std::max(bytes, workspace_bytes_ * 2);
  Synchronize();
  if (workspace_) LETHE_CUDA_CHECK(cudaFree(workspace_));
  workspace_ = nullptr;
  workspace_bytes_ = 0;
  const cudaError_t status = cudaMalloc(&workspace_, grown);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    Fail("--device cuda: out of GPU memory allocating a ", grown, "-byte workspace");
  }
  LETHE_CUDA_CHECK(status);
  workspace_bytes_ = grown;
  return workspace_;
}

void CudaContext::Synchronize() const { LETHE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

std::shared_ptr<CudaContext> MakeCudaContext(int device) {
  return std::make_shared<CudaContext>(device);
}

}  // namespace lethe::kernels
