// Influence of training examples on predictions (docs/influence.md).
//
//   score(test, i) = (1/n) g_testᵀ (C + λI)⁻¹ gᵢ
//
// g = ∇_θ l of that one example at θ (no l2 term), C the Hessian (or Gauss-Newton matrix)
// of the full objective, n the number of training examples. It is the first-order
// prediction of how much the test loss rises when example i is removed and the model
// retrained: positive = the example helped the test prediction, negative = it hurt.
// Self-influence, scoreᵢ = (1/n) gᵢᵀ (C + λI)⁻¹ gᵢ ≥ 0, is large for examples the model
// can only fit by bending towards them: mislabeled or memorised ones.
#pragma once

#include <functional>
#include <vector>

#include "engine/inverse_hvp.h"

namespace lethe {

struct InfluenceResult {
  int64_t m = 0, n = 0;
  std::vector<double> scores;  // m × n row-major (self-influence: 1 × n)
  SolveSummary summary;        // of the inverse solve (worst residual over all solves)
};

// `tests` holds the test examples (its data are the m selected rows); `train` the n
// training examples whose curvature `inverse` inverts.
template <typename T>
InfluenceResult InfluenceOnTests(Objective<T>& train, Objective<T>& tests,
                                 const kernels::Matrix<T>& theta, InverseHvp<T>& inverse);

// The same scores without holding them (data larger than memory): after the solve,
// `consumer(begin, count, block)` receives training rows [begin, begin+count) in order,
// block[j·count + i] = score(test j, row begin+i), bit for bit InfluenceOnTests' values.
// Blocks are `block_batches` of train's batches: memory O(block × m), not O(n × m).
// Returns the solve's summary (nothing is handed out after negative curvature, as
// InfluenceOnTests scores nothing).
template <typename T>
SolveSummary InfluenceOnTestsByBlocks(
    Objective<T>& train, Objective<T>& tests, const kernels::Matrix<T>& theta,
    InverseHvp<T>& inverse, int64_t block_batches,
    const std::function<void(int64_t begin, int64_t count, const double* block)>& consumer);
// Self-influence of training rows [0, n), solved `block` right-hand sides at a time.
template <typename T>
InfluenceResult SelfInfluence(Objective<T>& train, const kernels::Matrix<T>& theta,
                              InverseHvp<T>& inverse, int64_t block,
                              const std::function<void(int64_t done)>& progress = {});

}  // namespace lethe
