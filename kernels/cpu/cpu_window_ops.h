// The CPU backend's window operations (kernels/backend.h: Im2Col, Col2Im, TransposeRows) as
// free functions, so that their loops live in their own file (cpu_window_ops.cc) and
// CpuBackend's overrides are one line each. Shapes are checked here.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace lethe::kernels::cpu {

template <typename T>
void Im2Col(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> cols);
template <typename T>
void Col2Im(const WindowGeometry& g, const Matrix<T>& cols, T beta, Matrix<T> dX);
template <typename T>
void TransposeRows(int64_t a, int64_t b, const Matrix<T>& src, Matrix<T> dst);

}  // namespace lethe::kernels::cpu
