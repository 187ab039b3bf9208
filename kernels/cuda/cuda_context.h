// CudaContext: everything GPU code needs for one run, created once and passed in from
// outside (as faiss's GpuResources): the device, one stream on which every copy, kernel,
// cuBLAS and cuSOLVER call is enqueued, the cuBLAS and cuSOLVER handles bound to that
// stream, a reusable device
// workspace (reduction partials, index lists, the ones vector of ColumnSums) and a pinned
// host buffer through which scalars come back.
//
// Everything is ordered on the one stream, so the workspace can be reused by the next
// operation without synchronising: the next user's writes are queued after the previous
// user's reads. A context is used from one host thread at a time; the f32 and f64
// backends of a run may share it.
//
// Every CUDA runtime, cuBLAS and cuSOLVER status goes through LETHE_CUDA_CHECK, which throws
// lethe::Error naming the call, file and line (as ggml's CUDA_CHECK, but an exception:
// a failing GPU is the environment's fault, and tools/ turns it into one line).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <cstddef>
#include <string>

#include "common/error.h"

namespace lethe::kernels {

namespace detail {
inline bool CudaFailed(cudaError_t status) { return status != cudaSuccess; }
inline bool CudaFailed(cublasStatus_t status) { return status != CUBLAS_STATUS_SUCCESS; }
inline bool CudaFailed(cusolverStatus_t status) { return status != CUSOLVER_STATUS_SUCCESS; }
[[noreturn]] void ThrowCudaError(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void ThrowCudaError(cublasStatus_t status, const char* call, const char* file,
                                 int line);
[[noreturn]] void ThrowCudaError(cusolverStatus_t status, const char* call, const char* file,
                                 int line);
}  // namespace detail

// Throws lethe::Error "CUDA error: <call> failed at <file>:<line>: <reason>".
#define LETHE_CUDA_CHECK(call)                                                                 \
  do {                                                                                         \
    const auto lethe_cuda_status_ = (call);                                                    \
    if (::lethe::kernels::detail::CudaFailed(lethe_cuda_status_))                              \
      ::lethe::kernels::detail::ThrowCudaError(lethe_cuda_status_, #call, __FILE__, __LINE__); \
  } while (0)

class CudaContext {
 public:
  // Throws lethe::Error saying which is missing: the NVIDIA driver, any GPU, or device
  // `device` (out of range).
  explicit CudaContext(int device);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cusolverDnHandle_t cusolver() const { return cusolver_; }
  // e.g. "NVIDIA H100 80GB HBM3 (device 0, sm_90, 132 SMs, 79.2 GiB; CUDA runtime 13.0,
  // driver 13.0, cuBLAS 13.0.0)"
  const std::string& description() const { return description_; }

  // Device scratch of at least `bytes` (256-byte aligned), valid until the next call.
  void* Workspace(size_t bytes);
  // Pinned host scratch of 64 bytes: scalars are copied here, then the stream is synced.
  void* HostScratch() const { return host_scratch_; }
  void Synchronize() const;

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cusolverDnHandle_t cusolver_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  void* host_scratch_ = nullptr;
  std::string description_;
};

}  // namespace lethe::kernels
