// The CPU backend: Eigen for matrix products and reductions (multithreaded GEMM through
// Eigen's OpenMP support), plain loops over kernels/scalar_math.h for the elementwise
// activations and the row-wise losses.
#pragma once

#include "kernels/backend.h"

namespace lethe::kernels {

template <typename T>
std::unique_ptr<Backend<T>> MakeCpuBackend(int threads);

}  // namespace lethe::kernels

// --- embedding bags (kernels/cpu/cpu_embedding_ops.cc) ------------------------------------
// The CPU backend's Backend<T>::EmbeddingBag, EmbeddingBagAdjoint and EmbeddingBagPerExample
// (contracts in kernels/backend.h), kept in their own file; the backend forwards to them.
namespace lethe::kernels::cpu {
template <typename T>
void EmbeddingBag(const Matrix<T>& ids, const Matrix<T>& table, int64_t padding_idx, bool mean,
                  Matrix<T> out);
template <typename T>
void EmbeddingBagAdjoint(const Matrix<T>& ids, const Matrix<T>& delta, int64_t padding_idx,
                         bool mean, Matrix<T> grad_table);
template <typename T>
void EmbeddingBagPerExample(const Matrix<T>& ids, const Matrix<T>& delta, int64_t padding_idx,
                            bool mean, Matrix<T> out);
}  // namespace lethe::kernels::cpu
