// Deterministic sums on the GPU, shared by the CUDA backend's Dot, Sum and RowDots.
//
// A reduction is split into segments (one per row for RowDots, one for the whole matrix
// for Dot and Sum); each segment into a number of chunks that depends only on the shape.
// A block sums one chunk: each thread adds its strided elements in order, then the block
// combines the threads in a fixed shuffle/shared-memory tree; a second pass sums each
// segment's chunk results in a fixed order. No atomics anywhere, so the same inputs give
// the same bits on every run (atomicAdd on floats would make the order, and the result,
// depend on scheduling).
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_context.h"
#include "kernels/matrix.h"

namespace lethe::kernels::cuda {

// out[i · out_stride] = alpha · Σ_j A_ij · B_ij + beta · out[i · out_stride] for every row i
// of A (B null: Σ_j A_ij). out is device memory; with beta = 0 it is not read.
template <typename T>
void RowReduce(CudaContext& context, const Matrix<T>& A, const Matrix<T>* B, T alpha, T beta,
               T* out, int64_t out_stride);

// Σ_ij A_ij · B_ij (B null: Σ_ij A_ij), copied back to the host.
template <typename T>
T FullReduce(CudaContext& context, const Matrix<T>& A, const Matrix<T>* B);

}  // namespace lethe::kernels::cuda
