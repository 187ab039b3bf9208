// CUDA embedding bags. The forward and per-example ops run one thread per (bag, column):
// consecutive threads read consecutive columns of a table row (coalesced) and each sums its
// bag's L terms in position order, so results do not depend on scheduling. The adjoint is a
// scatter-add, where several bags hit one table row; rather than floating-point atomics
// (whose order, and so whose rounding, varies run to run) it sorts the flat positions
// p = i·L + l by id with CUB's stable radix sort — ties keep position order — and lets one
// thread per (run of equal ids, column) sum that run in order: deterministic, O(count·L·dim)
// work plus the sort of count·L keys. A very frequent id makes one long serial run; that is
// the price of a fixed order.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/embedding_ops.h"
#include "kernels/cuda/launch.h"
#include "kernels/embedding_bag_shape.h"

namespace lethe::kernels::cuda {
namespace {

// The table row of ids[i, l]: −1 for padding, −2 (and the flag raised) for an invalid id.
template <typename T>
__device__ int64_t TokenRow(const T* ids, int64_t ld, int64_t i, int64_t l, int64_t num,
                            int64_t padding_idx, int* invalid) {
  const T v = ids[i * ld + l];
  if (padding_idx >= 0 && v == static_cast<T>(padding_idx)) return -1;
  if (!(v >= T(0) && v < static_cast<T>(num) && v == floor(v))) {
    *invalid = 1;  // every writer writes 1: the race is benign
    return -2;
  }
  return static_cast<int64_t>(v);
}

// The bag of ids row i: what TokenRow needs.
template <typename T>
struct Bags {
  const T* ids;
  int64_t ld, length, num, padding_idx;
  int* invalid;
  __device__ int64_t Row(int64_t i, int64_t l) const {
    return TokenRow(ids, ld, i, l, num, padding_idx, invalid);
  }
  // w_i: 1 (sum), 1/|S_i| (mean), 0 for an all-padding bag.
  __device__ T Weight(int64_t i, bool mean) const {
    if (!mean) return T(1);
    int64_t members = 0;
    for (int64_t l = 0; l < length; ++l) members += Row(i, l) >= 0;
    return members == 0 ? T(0) : T(1) / static_cast<T>(members);
  }
};

// out[i, d] = w_i Σ_{l∈S_i} table[ids[i,l], d], summed first and divided once (as the CPU).
template <typename T>
struct ForwardOp {
  Bags<T> bags;
  const T* table;
  T* out;
  int64_t ldt, ldo;
  bool mean;
  __device__ void operator()(int64_t i, int64_t d) const {
    T sum = T(0);
    int64_t members = 0;
    for (int64_t l = 0; l < bags.length; ++l) {
      const int64_t id = bags.Row(i, l);
      if (id < 0) continue;
      ++members;
      sum += table[id * ldt + d];
    }
    if (mean && members > 1) sum /= static_cast<T>(members);
    out[i * ldo + d] = sum;
  }
};

// out[i, id·dim + d] += w_i δ_i[d] for each l ∈ S_i: one thread owns (i, d), so the writes
// of a row (repeated ids included) are ordered. out was zeroed first.
template <typename T>
struct PerExampleOp {
  Bags<T> bags;
  const T* delta;
  T* out;
  int64_t ldd, ldo, dim;
  bool mean;
  __device__ void operator()(int64_t i, int64_t d) const {
    const T term = bags.Weight(i, mean) * delta[i * ldd + d];
    for (int64_t l = 0; l < bags.length; ++l) {
      const int64_t id = bags.Row(i, l);
      if (id >= 0) out[i * ldo + id * dim + d] += term;
    }
  }
};

template <typename T>
struct ZeroOp {
  T* y;
  int64_t ld;
  __device__ void operator()(int64_t r, int64_t c) const { y[r * ld + c] = T(0); }
};

// Per bag: its weight w_i; per position p = i·L + l: the sort key (the id, or num for
// padding and invalid ids, which sort last and are skipped) and the value p.
template <typename T>
struct KeysOp {
  Bags<T> bags;
  bool mean;
  T* weights;
  int* keys;
  int64_t* positions;
  __device__ void operator()(int64_t i, int64_t l) const {
    if (l == 0) weights[i] = bags.Weight(i, mean);
    const int64_t id = bags.Row(i, l);
    const int64_t p = i * bags.length + l;
    keys[p] = static_cast<int>(id >= 0 ? id : bags.num);
    positions[p] = p;
  }
};

// Thread (p, d): when p starts a run of equal ids, grad[id, d] += Σ over the run of
// w_i δ_i[d] (i = position / L), in position order.
template <typename T>
struct ScatterRunsOp {
  const int* keys;
  const int64_t* positions;
  const T* weights;
  const T* delta;
  T* grad;
  int64_t total, length, num, ldd, ldg;
  __device__ void operator()(int64_t p, int64_t d) const {
    const int key = keys[p];
    if (key >= num || (p > 0 && keys[p - 1] == key)) return;
    T sum = T(0);
    for (int64_t q = p; q < total && keys[q] == key; ++q) {
      const int64_t i = positions[q] / length;
      sum += weights[i] * delta[i * ldd + d];
    }
    grad[key * ldg + d] += sum;
  }
};

size_t Aligned(size_t bytes) { return (bytes + 255) / 256 * 256; }

// Reads the invalid-id flag back (one synchronisation) and checks it.
void CheckIds(CudaContext& context, const int* invalid, const char* op) {
  int* host = static_cast<int*>(context.HostScratch());
  LETHE_CUDA_CHECK(
      cudaMemcpyAsync(host, invalid, sizeof(int), cudaMemcpyDeviceToHost, context.stream()));
  context.Synchronize();
  LETHE_CHECK(*host == 0, op, ": an id is neither padding nor an integer in [0, num_embeddings)");
}

}  // namespace

template <typename T>
void EmbeddingBag(CudaContext& context, const Matrix<T>& ids, const Matrix<T>& table,
                  int64_t padding_idx, bool mean, Matrix<T> out) {
  const auto [count, length, num, dim] =
      CheckEmbeddingBagShape(ids, table.rows(), table.cols(), out, padding_idx);
  if (count == 0 || dim == 0) return;
  int* invalid = static_cast<int*>(context.Workspace(sizeof(int)));
  LETHE_CUDA_CHECK(cudaMemsetAsync(invalid, 0, sizeof(int), context.stream()));
  const Bags<T> bags{ids.data(), ids.ld(), length, num, padding_idx, invalid};
  LaunchElements(context.stream(), count, dim,
                 ForwardOp<T>{bags, table.data(), out.data(), table.ld(), out.ld(), mean});
  CheckIds(context, invalid, "EmbeddingBag");
}

template <typename T>
void EmbeddingBagPerExample(CudaContext& context, const Matrix<T>& ids, const Matrix<T>& delta,
                            int64_t padding_idx, bool mean, Matrix<T> out) {
  const int64_t dim = delta.cols();
  LETHE_CHECK(dim > 0 && out.cols() % dim == 0 && out.rows() == ids.rows(),
              "embedding bag per example: out ", out.rows(), "x", out.cols(), ", delta ",
              delta.rows(), "x", dim);
  const auto [count, length, num, unused] =
      CheckEmbeddingBagShape(ids, out.cols() / dim, dim, delta, padding_idx);
  (void)unused;
  if (count == 0) return;
  LaunchElements(context.stream(), count, out.cols(), ZeroOp<T>{out.data(), out.ld()});
  int* invalid = static_cast<int*>(context.Workspace(sizeof(int)));
  LETHE_CUDA_CHECK(cudaMemsetAsync(invalid, 0, sizeof(int), context.stream()));
  const Bags<T> bags{ids.data(), ids.ld(), length, num, padding_idx, invalid};
  LaunchElements(context.stream(), count, dim,
                 PerExampleOp<T>{bags, delta.data(), out.data(), delta.ld(), out.ld(), dim, mean});
  CheckIds(context, invalid, "EmbeddingBagPerExample");
}

template <typename T>
void EmbeddingBagAdjoint(CudaContext& context, const Matrix<T>& ids, const Matrix<T>& delta,
                         int64_t padding_idx, bool mean, Matrix<T> grad_table) {
  const auto [count, length, num, dim] =
      CheckEmbeddingBagShape(ids, grad_table.rows(), grad_table.cols(), delta, padding_idx);
  const int64_t total = count * length;
  if (total == 0 || dim == 0) return;
  LETHE_CHECK(total <= INT32_MAX, "EmbeddingBagAdjoint: ", total, " ids in one call");
  // Sort keys lie in [0, num]: only their low bits take part in the radix sort.
  int end_bit = 1;
  while ((int64_t{1} << end_bit) <= num) ++end_bit;
  size_t sort_bytes = 0;
  LETHE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, static_cast<const int*>(nullptr), static_cast<int*>(nullptr),
      static_cast<const int64_t*>(nullptr), static_cast<int64_t*>(nullptr), static_cast<int>(total),
      0, end_bit, context.stream()));
  // One workspace, cut into: the flag, the weights, keys and positions (in and sorted), CUB's
  // scratch.
  const size_t flag_bytes = Aligned(sizeof(int)), weight_bytes = Aligned(sizeof(T) * count);
  const size_t key_bytes = Aligned(sizeof(int) * total),
               pos_bytes = Aligned(sizeof(int64_t) * total);
  char* base = static_cast<char*>(
      context.Workspace(flag_bytes + weight_bytes + 2 * key_bytes + 2 * pos_bytes + sort_bytes));
  int* invalid = reinterpret_cast<int*>(base);
  T* weights = reinterpret_cast<T*>(base + flag_bytes);
  int* keys = reinterpret_cast<int*>(base + flag_bytes + weight_bytes);
  int* sorted_keys = reinterpret_cast<int*>(base + flag_bytes + weight_bytes + key_bytes);
  auto* positions = reinterpret_cast<int64_t*>(base + flag_bytes + weight_bytes + 2 * key_bytes);
  auto* sorted_positions = positions + pos_bytes / sizeof(int64_t);
  void* sort_scratch = base + flag_bytes + weight_bytes + 2 * key_bytes + 2 * pos_bytes;

  LETHE_CUDA_CHECK(cudaMemsetAsync(invalid, 0, sizeof(int), context.stream()));
  const Bags<T> bags{ids.data(), ids.ld(), length, num, padding_idx, invalid};
  LaunchElements(context.stream(), count, length, KeysOp<T>{bags, mean, weights, keys, positions});
  LETHE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      sort_scratch, sort_bytes, keys, sorted_keys, positions, sorted_positions,
      static_cast<int>(total), 0, end_bit, context.stream()));
  LaunchElements(
      context.stream(), total, dim,
      ScatterRunsOp<T>{sorted_keys, sorted_positions, weights, delta.data(), grad_table.data(),
                       total, length, num, delta.ld(), grad_table.ld()});
  CheckIds(context, invalid, "EmbeddingBagAdjoint");
}

#define LETHE_INSTANTIATE(T)                                                                      \
  template void EmbeddingBag<T>(CudaContext&, const Matrix<T>&, const Matrix<T>&, int64_t, bool,  \
                                Matrix<T>);                                                       \
  template void EmbeddingBagAdjoint<T>(CudaContext&, const Matrix<T>&, const Matrix<T>&, int64_t, \
                                       bool, Matrix<T>);                                          \
  template void EmbeddingBagPerExample<T>(CudaContext&, const Matrix<T>&, const Matrix<T>&,       \
                                          int64_t, bool, Matrix<T>);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe::kernels::cuda
