// The CUDA backend's embedding bags (contracts and maths in kernels/backend.h), kept in
// their own file (kernels/cuda/cuda_embedding_ops.cu); CudaBackend forwards to them.
//
// Every id is checked on the device: a kernel that meets an id that is neither padding nor
// an integer in [0, num_embeddings) skips it and raises a flag, which the host reads back at
// the end of the op (one stream synchronisation per op) and LETHE_CHECKs.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_context.h"
#include "kernels/matrix.h"

namespace lethe::kernels::cuda {

template <typename T>
void EmbeddingBag(CudaContext& context, const Matrix<T>& ids, const Matrix<T>& table,
                  int64_t padding_idx, bool mean, Matrix<T> out);
// Deterministic without floating-point atomics: the (id, position) pairs are sorted by id
// with a stable radix sort (CUB), and one thread per (distinct id, column) sums that id's
// occurrences in position order.
template <typename T>
void EmbeddingBagAdjoint(CudaContext& context, const Matrix<T>& ids, const Matrix<T>& delta,
                         int64_t padding_idx, bool mean, Matrix<T> grad_table);
template <typename T>
void EmbeddingBagPerExample(CudaContext& context, const Matrix<T>& ids, const Matrix<T>& delta,
                            int64_t padding_idx, bool mean, Matrix<T> out);

}  // namespace lethe::kernels::cuda
