#include "engine/influence.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/error.h"

namespace lethe {

template <typename T>
InfluenceResult InfluenceOnTests(Objective<T>& train, Objective<T>& tests,
                                 const kernels::Matrix<T>& theta, InverseHvp<T>& inverse) {
  kernels::Backend<T>& be = train.backend();
  const int64_t m = tests.num_examples(), n = train.num_examples(), p = train.num_params();
  const auto start = std::chrono::steady_clock::now();
  InfluenceResult r;
  r.m = m, r.n = n;
  // s_j = (C + λI)⁻¹ g_test_j, all test examples in one solve.
  kernels::Matrix<T> G = be.Allocate(m, p), S = be.Allocate(m, p);
  tests.PerExampleGradients(theta, 0, m, G);
  r.summary = inverse.Solve(G, S);
  if (!r.summary.converged() && r.summary.termination == Termination::kNegativeCurvature &&
      inverse.options().solver != SolverKind::kCg)
    return r;  // no solution to score with
  // scores (n × m) = [gᵢᵀ s_j], then / n and transposed to m × n.
  kernels::Matrix<T> D = be.Allocate(n, m);
  train.PerExampleGradientDots(theta, S, D);
  std::vector<T> host(n * m);
  be.Download(D, host.data());
  r.scores.resize(m * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j)
      r.scores[j * n + i] = static_cast<double>(host[i * m + j]) / static_cast<double>(n);
  r.summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

template <typename T>
SolveSummary InfluenceOnTestsByBlocks(
    Objective<T>& train, Objective<T>& tests, const kernels::Matrix<T>& theta,
    InverseHvp<T>& inverse, int64_t block_batches,
    const std::function<void(int64_t begin, int64_t count, const double* block)>& consumer) {
  LETHE_CHECK(block_batches >= 1);
  kernels::Backend<T>& be = train.backend();
  const int64_t m = tests.num_examples(), n = train.num_examples(), p = train.num_params();
  const auto start = std::chrono::steady_clock::now();
  kernels::Matrix<T> G = be.Allocate(m, p), S = be.Allocate(m, p);
  tests.PerExampleGradients(theta, 0, m, G);
  SolveSummary summary = inverse.Solve(G, S);
  if (!summary.converged() && summary.termination == Termination::kNegativeCurvature &&
      inverse.options().solver != SolverKind::kCg)
    return summary;
  // Blocks start at multiples of the batch size: the same batches as the full pass.
  const int64_t block = std::min(n, block_batches * train.batch_rows());
  kernels::Matrix<T> D = be.Allocate(block, m);
  std::vector<T> host(static_cast<size_t>(block * m));
  std::vector<double> scores(host.size());
  for (int64_t begin = 0; begin < n; begin += block) {
    const int64_t count = std::min(block, n - begin);
    kernels::Matrix<T> d = D.Rows(0, count);
    train.PerExampleGradientDotsRows(theta, S, begin, count, d);
    be.Download(d, host.data());
    for (int64_t i = 0; i < count; ++i)
      for (int64_t j = 0; j < m; ++j)
        scores[j * count + i] = static_cast<double>(host[i * m + j]) / static_cast<double>(n);
    consumer(begin, count, scores.data());
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

template <typename T>
InfluenceResult SelfInfluence(Objective<T>& train, const kernels::Matrix<T>& theta,
                              InverseHvp<T>& inverse, int64_t block,
                              const std::function<void(int64_t done)>& progress) {
  if (block < 1) Fail("self-influence block size must be >= 1");
  kernels::Backend<T>& be = train.backend();
  const int64_t n = train.num_examples(), p = train.num_params();
  block = std::min(block, n);
  const auto start = std::chrono::steady_clock::now();
  InfluenceResult r;
  r.m = 1, r.n = n;
  r.scores.resize(n);
  kernels::Matrix<T> G = be.Allocate(block, p), S = be.Allocate(block, p), d = be.Allocate(block, 1);
  std::vector<T> host(block);
  for (int64_t begin = 0; begin < n; begin += block) {
    const int64_t count = std::min(block, n - begin);
    kernels::Matrix<T> g = G.Rows(0, count), s = S.Rows(0, count), dots = d.Rows(0, count);
    train.PerExampleGradients(theta, begin, count, g);
    // The residual is checked on the first block (it is the same operator for all).
    SolveSummary part = inverse.Solve(g, s, /*check_residual=*/begin == 0);
    MergeBlockSummary(part, &r.summary, begin == 0);
    if (part.termination == Termination::kNegativeCurvature &&
        inverse.options().solver != SolverKind::kCg)
      return r;
    be.RowDots(g, s, dots);
    be.Download(dots, host.data());
    for (int64_t i = 0; i < count; ++i)
      r.scores[begin + i] = static_cast<double>(host[i]) / static_cast<double>(n);
    if (progress) progress(begin + count);
  }
  // Wall time of the whole job (the merged parts would count the factorisation repeatedly).
  r.summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

template InfluenceResult InfluenceOnTests<float>(Objective<float>&, Objective<float>&,
                                                 const kernels::Matrix<float>&, InverseHvp<float>&);
template InfluenceResult InfluenceOnTests<double>(Objective<double>&, Objective<double>&,
                                                  const kernels::Matrix<double>&,
                                                  InverseHvp<double>&);
template SolveSummary InfluenceOnTestsByBlocks<float>(
    Objective<float>&, Objective<float>&, const kernels::Matrix<float>&, InverseHvp<float>&,
    int64_t, const std::function<void(int64_t, int64_t, const double*)>&);
template SolveSummary InfluenceOnTestsByBlocks<double>(
    Objective<double>&, Objective<double>&, const kernels::Matrix<double>&, InverseHvp<double>&,
    int64_t, const std::function<void(int64_t, int64_t, const double*)>&);
template InfluenceResult SelfInfluence<float>(Objective<float>&, const kernels::Matrix<float>&,
                                              InverseHvp<float>&, int64_t,
                                              const std::function<void(int64_t)>&);
template InfluenceResult SelfInfluence<double>(Objective<double>&, const kernels::Matrix<double>&,
                                               InverseHvp<double>&, int64_t,
                                               const std::function<void(int64_t)>&);

}  // namespace lethe
