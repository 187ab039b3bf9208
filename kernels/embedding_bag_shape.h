// The shape checks every backend's embedding-bag ops start with (kernels/backend.h), in one
// place, as CheckGemmShape for the products.
#pragma once

#include <cstdint>

#include "kernels/matrix.h"

namespace lethe::kernels {

// The sizes of an embedding bag: count bags of `length` ids each, over a table of
// num_embeddings rows of dim values. Ids are stored exactly only below 2²⁴ in f32.
struct EmbeddingBagShape {
  int64_t count, length, num_embeddings, dim;
};

inline constexpr int64_t kMaxExactTokenId = int64_t{1} << 24;

// ids (count × L), a table-shaped matrix (num × dim) and a bag-shaped one (count × dim).
template <typename T>
EmbeddingBagShape CheckEmbeddingBagShape(const Matrix<T>& ids, int64_t num_embeddings, int64_t dim,
                                         const Matrix<T>& bags, int64_t padding_idx) {
  LETHE_CHECK(bags.rows() == ids.rows() && bags.cols() == dim, "embedding bag: ids ", ids.rows(),
              "x", ids.cols(), ", bags ", bags.rows(), "x", bags.cols(), ", dim ", dim);
  LETHE_CHECK(num_embeddings >= 0 && num_embeddings <= kMaxExactTokenId,
              "embedding bag: num_embeddings ", num_embeddings);
  LETHE_CHECK(padding_idx >= -1 && padding_idx < num_embeddings, "embedding bag: padding_idx ",
              padding_idx, " of ", num_embeddings);
  return {ids.rows(), ids.cols(), num_embeddings, dim};
}

}  // namespace lethe::kernels
