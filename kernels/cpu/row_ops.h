// The CPU backend's row and column scaling ops (Backend::ScaleRows, ScaleColumns, AddColumn,
// InverseSqrt; their contracts are in kernels/backend.h), as free functions so that they
// live in their own file (kernels/cpu/cpu_row_ops.cc) and CpuBackend only forwards to them.
// Shapes are checked here.
#pragma once

#include "kernels/matrix.h"

namespace lethe::kernels::cpu {

template <typename T>
void ScaleRows(T alpha, const Matrix<T>& s, const Matrix<T>& A, T beta, Matrix<T> out);
template <typename T>
void ScaleColumns(T alpha, const Matrix<T>& A, const Matrix<T>& r, T beta, Matrix<T> out);
template <typename T>
void AddColumn(T alpha, const Matrix<T>& c, Matrix<T> A);
template <typename T>
void InverseSqrt(const Matrix<T>& x, T shift, Matrix<T> out);

}  // namespace lethe::kernels::cpu
