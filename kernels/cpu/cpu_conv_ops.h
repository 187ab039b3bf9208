// The CPU backend's fused convolution products (kernels/backend.h: ConvForward,
// ConvWeightGradient, ConvInputGradient), in cpu_conv_ops.cc.
#pragma once

#include "kernels/backend.h"

namespace lethe::kernels::cpu {

template <typename T>
void ConvForward(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& W,
                 const Matrix<T>& b, T beta, Matrix<T> Y);
template <typename T>
void ConvWeightGradient(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& D, T beta,
                        Matrix<T> dW, Matrix<T> db);
template <typename T>
void ConvInputGradient(const WindowGeometry& g, const Matrix<T>& D, const Matrix<T>& W, T beta,
                       Matrix<T> dX);

}  // namespace lethe::kernels::cpu
