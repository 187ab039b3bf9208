// The CUDA backend's window operations (kernels/backend.h: Im2Col, Col2Im, TransposeRows)
// as free functions on the context's stream, so their kernels live in their own file
// (cuda_window_ops.cu) and CudaBackend's overrides are one line each. Shapes are checked
// here; every matrix is in device memory.
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_context.h"

namespace lethe::kernels::cuda {

template <typename T>
void Im2Col(CudaContext& context, const WindowGeometry& g, const Matrix<T>& X, Matrix<T> cols);
template <typename T>
void Col2Im(CudaContext& context, const WindowGeometry& g, const Matrix<T>& cols, T beta,
            Matrix<T> dX);
template <typename T>
void TransposeRows(CudaContext& context, int64_t a, int64_t b, const Matrix<T>& src, Matrix<T> dst);

}  // namespace lethe::kernels::cuda
