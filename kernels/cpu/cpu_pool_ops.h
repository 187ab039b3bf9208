// The CPU backend's pooling and indexed operations (kernels/backend.h states the maths),
// in their own file so that CpuBackend only forwards to them.
#pragma once

#include "kernels/backend.h"

namespace lethe::kernels::cpu {

template <typename T>
void MaxPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y, Matrix<T> argmax);
template <typename T>
void GatherIndexed(const Matrix<T>& src, const Matrix<T>& index, Matrix<T> dst);
template <typename T>
void ScatterAddIndexed(const Matrix<T>& src, const Matrix<T>& index, T beta, Matrix<T> dst);
template <typename T>
void AvgPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y);
template <typename T>
void AvgPoolAdjoint(const WindowGeometry& g, const Matrix<T>& dY, T beta, Matrix<T> dX);

}  // namespace lethe::kernels::cpu
