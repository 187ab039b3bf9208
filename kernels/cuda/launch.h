// The grid-stride launches every CUDA kernel file shares: f(r, c) for each element of a
// rows × cols matrix, or f(r) for each row, one thread each, on a stream. The grid is capped
// at kMaxBlocks blocks of kThreads threads and each thread strides over the rest, so any
// size launches (a grid of 2^31 blocks would not). Functors, not extended lambdas, carry the
// work, so plain nvcc flags suffice.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_context.h"

namespace lethe::kernels::cuda {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;  // the grid-stride loops cover the rest

// Blocks for `work` threads' worth of work (at least one: an empty grid is a launch error).
inline int Blocks(int64_t work) {
  return static_cast<int>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// f(r, c) for every element of a rows × cols matrix.
template <typename F>
__global__ void ForEachElement(int64_t rows, int64_t cols, F f) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    f(i / cols, i % cols);
}

// f(r) for every row.
template <typename F>
__global__ void ForEachRow(int64_t rows, F f) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x)
    f(r);
}

template <typename F>
void LaunchElements(cudaStream_t stream, int64_t rows, int64_t cols, const F& f) {
  if (rows == 0 || cols == 0) return;  // an empty grid is a launch error
  ForEachElement<<<Blocks(rows * cols), kThreads, 0, stream>>>(rows, cols, f);
  LETHE_CUDA_CHECK(cudaGetLastError());
}

template <typename F>
void LaunchRows(cudaStream_t stream, int64_t rows, const F& f) {
  if (rows == 0) return;
  ForEachRow<<<Blocks(rows), kThreads, 0, stream>>>(rows, f);
  LETHE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace lethe::kernels::cuda
