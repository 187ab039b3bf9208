// The CUDA backend's pooling and indexed operations (kernels/backend.h states the maths), in
// their own file so that CudaBackend only forwards to them. Everything is queued on
// `stream`; nothing waits for it.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/backend.h"

namespace lethe::kernels::cuda {

template <typename T>
void MaxPool(cudaStream_t stream, const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y,
             Matrix<T> argmax);
template <typename T>
void GatherIndexed(cudaStream_t stream, const Matrix<T>& src, const Matrix<T>& index,
                   Matrix<T> dst);
template <typename T>
void ScatterAddIndexed(cudaStream_t stream, const Matrix<T>& src, const Matrix<T>& index, T beta,
                       Matrix<T> dst);
template <typename T>
void AvgPool(cudaStream_t stream, const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y);
template <typename T>
void AvgPoolAdjoint(cudaStream_t stream, const WindowGeometry& g, const Matrix<T>& dY, T beta,
                    Matrix<T> dX);

}  // namespace lethe::kernels::cuda
