// The CUDA backend's row and column scaling ops (Backend::ScaleRows, ScaleColumns,
// AddColumn, InverseSqrt; their contracts are in kernels/backend.h), in their own file
// (kernels/cuda/cuda_row_ops.cu); CudaBackend forwards to them. Each is one elementwise
// kernel queued on the context's stream; shapes are checked here, with the same messages
// as on the CPU (kernels/cpu/row_ops.h).
#pragma once

#include "kernels/cuda/cuda_context.h"
#include "kernels/matrix.h"

namespace lethe::kernels::cuda {

template <typename T>
void ScaleRows(CudaContext& context, T alpha, const Matrix<T>& s, const Matrix<T>& A, T beta,
               Matrix<T> out);
template <typename T>
void ScaleColumns(CudaContext& context, T alpha, const Matrix<T>& A, const Matrix<T>& r, T beta,
                  Matrix<T> out);
template <typename T>
void AddColumn(CudaContext& context, T alpha, const Matrix<T>& c, Matrix<T> A);
template <typename T>
void InverseSqrt(CudaContext& context, const Matrix<T>& x, T shift, Matrix<T> out);

}  // namespace lethe::kernels::cuda
