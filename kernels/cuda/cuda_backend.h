// The CUDA backend: Backend<T> on one GPU, for T = float and double. cuBLAS computes
// every matrix product (and ColumnSums, as a product with a ones vector); small CUDA
// kernels compute the elementwise activations, the row-wise losses (through the same
// kernels/scalar_math.h formulas as the CPU) and the reductions. Matrices live in device
// memory (cudaMalloc); data is uploaded once and only scalars (Dot, Sum) and explicit
// Downloads come back to the host.
//
// Reductions are deterministic: fixed-order tree sums whose shape depends only on the
// matrix shape, never atomics, so a run reproduces bit for bit on the same GPU.
#pragma once

#include <memory>

#include "kernels/backend.h"

namespace lethe::kernels {

class CudaContext;  // kernels/cuda/cuda_context.h

// True when the CUDA runtime finds a driver and at least one GPU (tests skip otherwise).
bool CudaDeviceAvailable();

// One context per run; throws lethe::Error "--device cuda: ..." saying whether the
// driver, any GPU, or device `device` is missing.
std::shared_ptr<CudaContext> MakeCudaContext(int device);

// A backend on a context created for `device`.
template <typename T>
std::unique_ptr<Backend<T>> MakeCudaBackend(int device);
// A backend on a shared context (the f32 and f64 backends of one run can share one).
template <typename T>
std::unique_ptr<Backend<T>> MakeCudaBackend(std::shared_ptr<CudaContext> context);

}  // namespace lethe::kernels
