// The CPU backend: Eigen for matrix products and reductions (multithreaded GEMM through
// Eigen's OpenMP support), plain loops over kernels/scalar_math.h for the elementwise
// activations and the row-wise losses.
#pragma once

#include "kernels/backend.h"

namespace lethe::kernels {

template <typename T>
std::unique_ptr<Backend<T>> MakeCpuBackend(int threads);

}  // namespace lethe::kernels
