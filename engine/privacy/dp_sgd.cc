#include "engine/privacy/dp_sgd.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "common/error.h"
#include "engine/privacy/seeded_random.h"

namespace lethe::privacy {

int64_t DpSgdOptions::StepsPerEpoch() const {
  // ⌈1/q⌉, with 1/q a hair above an integer by rounding (q = 1/25 as a double) counted as
  // that integer.
  return static_cast<int64_t>(std::ceil((1 / sample_rate) * (1 - 1e-12)));
}

void DpSgdOptions::Validate() const {
  if (!(max_grad_norm > 0) || !std::isfinite(max_grad_norm))
    Fail("--max-grad-norm = ", max_grad_norm, ": must be > 0 and finite");
  if (!(noise_multiplier >= 0) || !std::isfinite(noise_multiplier))
    Fail("--noise-multiplier = ", noise_multiplier, ": must be >= 0 and finite");
  if (!(sample_rate > 0 && sample_rate <= 1))
    Fail("--sample-rate = ", sample_rate, ": must be in (0, 1]");
  if (epochs < 0) Fail("--epochs = ", epochs, ": must be >= 0");
  if (!(learning_rate > 0) || !std::isfinite(learning_rate))
    Fail("--learning-rate = ", learning_rate, ": must be > 0 and finite");
  if (block_elements < 1) Fail("DpSgdOptions::block_elements = ", block_elements, ": must be >= 1");
  // Far beyond any run that finishes; guards the step count's arithmetic.
  if (sample_rate < 1e-9) Fail("--sample-rate = ", sample_rate, ": must be >= 1e-9");
  if (epochs > (int64_t{1} << 40) / StepsPerEpoch())
    Fail("--epochs = ", epochs, ": too many steps");
}

template <typename T>
DpSgdSummary TrainDpSgd(Objective<T>& objective, kernels::Matrix<T> theta,
                        const DpSgdOptions& options,
                        const std::function<void(const DpSgdProgress&)>& progress) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  kernels::Backend<T>& be = objective.backend();
  const DeviceData<T>& data = objective.data();
  // Distributed (docs/distributed.md): every rank draws the same N uniforms (N the global
  // number of rows) and the same noise from the one seeded generator, so every rank knows
  // the whole sample; each clips and sums the sampled rows of its own block, and one
  // allreduce of p values per step adds the sums. The update is then the same on every
  // rank, and the run is one process's up to the rounding of the regrouped sum.
  const int64_t n = objective.num_examples(), p = objective.num_params();
  const int64_t N = objective.global_examples(), offset = objective.row_offset();
  LETHE_CHECK(theta.rows() == 1 && theta.cols() == p);
  const double C = options.max_grad_norm;
  const double expected_batch = options.sample_rate * static_cast<double>(N);
  const double l2 = objective.l2(), eta = options.learning_rate;

  // A block of the step's sample at a time: its rows gathered, their per-example gradients,
  // their squared norms and clipping weights.
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(options.block_elements / p, n));
  DeviceData<T> rows{be.Allocate(block, data.X.cols()), be.Allocate(block, data.Y.cols()), nullptr};
  Objective<T> block_objective(be, objective.arch(), rows, ObjectiveOptions{block});
  kernels::Matrix<T> G = be.Allocate(block, p), norms2 = be.Allocate(block, 1),
                     weights = be.Allocate(block, 1);
  kernels::Matrix<T> sum = be.Allocate(1, p), noise = be.Allocate(1, p);
  std::vector<T> norms2_host(block), weights_host(block), noise_host(p);
  std::vector<int64_t> sample;
  SeededRandom random(options.seed);

  DpSgdSummary summary;
  const int64_t steps_per_epoch = options.StepsPerEpoch();
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      // Poisson sampling: N uniforms, in global row order; this rank keeps its block's.
      sample.clear();
      for (int64_t i = 0; i < N; ++i)
        if (random.Uniform() < options.sample_rate) {
          ++summary.sampled;
          if (i >= offset && i < offset + n) sample.push_back(i - offset);
        }
      be.Fill(sum, T(0));
      for (size_t begin = 0; begin < sample.size(); begin += block) {
        const int64_t count = std::min<int64_t>(block, static_cast<int64_t>(sample.size() - begin));
        be.GatherRows(data.X, sample.data() + begin, rows.X.Rows(0, count));
        be.GatherRows(data.Y, sample.data() + begin, rows.Y.Rows(0, count));
        kernels::Matrix<T> g = G.Rows(0, count);
        block_objective.PerExampleGradients(theta, 0, count, g);
        be.RowDots(g, g, norms2.Rows(0, count));
        be.Download(norms2.Rows(0, count), norms2_host.data());
        // wᵢ = min(1, C/‖gᵢ‖): ‖wᵢ gᵢ‖ ≤ C. Σ wᵢ gᵢ = wᵀ G, one GEMV.
        for (int64_t i = 0; i < count; ++i) {
          const double norm = std::sqrt(static_cast<double>(norms2_host[i]));
          const bool clip = norm > C;
          summary.clipped += clip;
          weights_host[i] = static_cast<T>(clip ? C / norm : 1.0);
        }
        be.Upload(weights_host.data(), weights.Rows(0, count));
        be.Gemm(kernels::Op::kTranspose, kernels::Op::kNone, T(1), weights.Rows(0, count), g, T(1),
                sum);
      }
      objective.ReduceSum(sum);  // Σ over every rank's sampled rows (nothing serially)
      // The noise on the sum, N(0, σ²C²) per coordinate, drawn in double.
      for (int64_t j = 0; j < p; ++j)
        noise_host[j] = static_cast<T>(options.noise_multiplier * C * random.Normal());
      be.Upload(noise_host.data(), noise);
      be.Axpby(T(1), noise, T(1), sum);
      // θ ← (1 − η·l2) θ − (η / (q·n)) (Σ ḡᵢ + noise)
      be.Axpby(static_cast<T>(-eta / expected_batch), sum, static_cast<T>(1 - eta * l2), theta);
      ++summary.steps;
    }
    if (progress) {
      kernels::Matrix<T> grad = be.Allocate(1, p);
      const double value = objective.ValueAndGradient(theta, grad);
      progress({epoch + 1, summary.steps, value, static_cast<double>(kernels::Norm(be, grad))});
    }
  }
  if (objective.distributed()) {  // the clipped count over every rank's rows
    double clipped = static_cast<double>(summary.clipped);  // exact below 2⁵³
    objective.communicator()->AllreduceSum(&clipped, 1);
    summary.clipped = static_cast<int64_t>(clipped);
  }
  kernels::Matrix<T> grad = be.Allocate(1, p);
  summary.objective = objective.ValueAndGradient(theta, grad);
  summary.grad_norm = static_cast<double>(kernels::Norm(be, grad));
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

template DpSgdSummary TrainDpSgd<float>(Objective<float>&, kernels::Matrix<float>,
                                        const DpSgdOptions&,
                                        const std::function<void(const DpSgdProgress&)>&);
template DpSgdSummary TrainDpSgd<double>(Objective<double>&, kernels::Matrix<double>,
                                         const DpSgdOptions&,
                                         const std::function<void(const DpSgdProgress&)>&);

}  // namespace lethe::privacy
