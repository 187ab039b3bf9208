// The CPU backend's embedding bags (contracts and maths in kernels/backend.h). Plain loops:
// each op is a gather or scatter of whole table rows, memory-bound, and the inner loop over
// the dim columns of a row vectorises. The forward and per-example ops write disjoint rows
// of their output and run in parallel over bags; the adjoint's scatter-add is sequential in
// (bag, position) order so repeated ids are summed in one fixed order (deterministic).
#include <omp.h>

#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/embedding_bag_shape.h"

namespace lethe::kernels::cpu {
namespace {

// Below this many (bag, position, column) terms a loop runs on one thread.
constexpr int64_t kParallelThreshold = 1 << 16;

// The table row of ids[i, l], or −1 for padding. Anything else (a value that is not an
// integer, or outside [0, num)) is a broken invariant: the engine checks the data on entry.
template <typename T>
int64_t TokenRow(const Matrix<T>& ids, int64_t i, int64_t l, int64_t num, int64_t padding_idx) {
  const T v = ids.data()[i * ids.ld() + l];
  if (padding_idx >= 0 && v == static_cast<T>(padding_idx)) return -1;
  // Compared before the cast: converting a NaN or a huge value to int64_t is undefined.
  LETHE_CHECK(v >= T(0) && v < static_cast<T>(num) && v == std::floor(v), "embedding bag: id ",
              static_cast<double>(v), " at row ", i, ", position ", l, " is not in [0, ", num, ")");
  return static_cast<int64_t>(v);
}

// w_i: 1 for a sum, 1/|S_i| for a mean, 0 for an all-padding bag (which then adds nothing).
template <typename T>
T BagWeight(const Matrix<T>& ids, int64_t i, int64_t num, int64_t padding_idx, bool mean) {
  if (!mean) return T(1);
  int64_t members = 0;
  for (int64_t l = 0; l < ids.cols(); ++l) members += TokenRow(ids, i, l, num, padding_idx) >= 0;
  return members == 0 ? T(0) : T(1) / static_cast<T>(members);
}

// row += w · src over dim values.
template <typename T>
void AddScaled(T w, const T* src, T* row, int64_t dim) {
  for (int64_t d = 0; d < dim; ++d) row[d] += w * src[d];
}

}  // namespace

template <typename T>
void EmbeddingBag(const Matrix<T>& ids, const Matrix<T>& table, int64_t padding_idx, bool mean,
                  Matrix<T> out) {
  const auto [count, length, num, dim] =
      CheckEmbeddingBagShape(ids, table.rows(), table.cols(), out, padding_idx);
  // Sum first, scale once: the mean is (Σ rows) / |S_i|, as PyTorch's CPU kernel forms it.
#pragma omp parallel for schedule(static) if (count * length * dim >= kParallelThreshold)
  for (int64_t i = 0; i < count; ++i) {
    T* row = out.data() + i * out.ld();
    for (int64_t d = 0; d < dim; ++d) row[d] = T(0);
    int64_t members = 0;
    for (int64_t l = 0; l < length; ++l) {
      const int64_t id = TokenRow(ids, i, l, num, padding_idx);
      if (id < 0) continue;
      ++members;
      AddScaled(T(1), table.data() + id * table.ld(), row, dim);
    }
    if (mean && members > 1)
      for (int64_t d = 0; d < dim; ++d) row[d] /= static_cast<T>(members);
  }
}

template <typename T>
void EmbeddingBagAdjoint(const Matrix<T>& ids, const Matrix<T>& delta, int64_t padding_idx,
                         bool mean, Matrix<T> grad_table) {
  const auto [count, length, num, dim] =
      CheckEmbeddingBagShape(ids, grad_table.rows(), grad_table.cols(), delta, padding_idx);
  for (int64_t i = 0; i < count; ++i) {
    const T w = BagWeight(ids, i, num, padding_idx, mean);
    const T* d_i = delta.data() + i * delta.ld();
    for (int64_t l = 0; l < length; ++l) {
      const int64_t id = TokenRow(ids, i, l, num, padding_idx);
      if (id >= 0) AddScaled(w, d_i, grad_table.data() + id * grad_table.ld(), dim);
    }
  }
}

template <typename T>
void EmbeddingBagPerExample(const Matrix<T>& ids, const Matrix<T>& delta, int64_t padding_idx,
                            bool mean, Matrix<T> out) {
  const int64_t dim = delta.cols();
  LETHE_CHECK(dim > 0 && out.cols() % dim == 0 && out.rows() == ids.rows(),
              "embedding bag per example: out ", out.rows(), "x", out.cols(), ", delta ",
              delta.rows(), "x", dim);
  const auto [count, length, num, unused] =
      CheckEmbeddingBagShape(ids, out.cols() / dim, dim, delta, padding_idx);
  (void)unused;
  // Each row of out is written by one thread: zeros, then its bag's rows of w_i δ_i.
#pragma omp parallel for schedule(static) if (count * num * dim >= kParallelThreshold)
  for (int64_t i = 0; i < count; ++i) {
    T* row = out.data() + i * out.ld();
    for (int64_t j = 0; j < num * dim; ++j) row[j] = T(0);
    const T w = BagWeight(ids, i, num, padding_idx, mean);
    const T* d_i = delta.data() + i * delta.ld();
    for (int64_t l = 0; l < length; ++l) {
      const int64_t id = TokenRow(ids, i, l, num, padding_idx);
      if (id >= 0) AddScaled(w, d_i, row + id * dim, dim);
    }
  }
}

#define LETHE_INSTANTIATE(T)                                                                   \
  template void EmbeddingBag<T>(const Matrix<T>&, const Matrix<T>&, int64_t, bool, Matrix<T>); \
  template void EmbeddingBagAdjoint<T>(const Matrix<T>&, const Matrix<T>&, int64_t, bool,      \
                                       Matrix<T>);                                             \
  template void EmbeddingBagPerExample<T>(const Matrix<T>&, const Matrix<T>&, int64_t, bool,   \
                                          Matrix<T>);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe::kernels::cpu
