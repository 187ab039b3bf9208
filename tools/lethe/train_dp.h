// lethe train --dp: differentially private training (DP-SGD, engine/privacy/dp_sgd.h) with
// its guarantee computed by the RDP accountant and recorded in the model (docs/privacy.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model.h"
#include "tools/lethe/cli.h"

namespace lethe::cli {

// The --dp options of lethe train; the shared ones (--epochs, --learning-rate, --seed,
// --batch-size) stay train's own and are passed in.
struct DpFlags {
  bool enabled = false;
  double max_grad_norm = 1.0;
  double noise_multiplier = 0, target_epsilon = 0, sample_rate = 0, delta = 0;
  // Which of them the command line gave (set by Check).
  bool target_given = false, sample_rate_given = false, delta_given = false;

  void Add(po::options_description& desc);
  // Refuses DP options without --dp, and train options that have no meaning with it.
  void Check(const po::variables_map& vm);
};

// What train's shared options say, for DP-SGD.
struct DpRun {
  int64_t epochs = 0;
  double learning_rate = 0;
  int64_t batch_size = 0;
  bool batch_size_given = false;
  bool learning_rate_given = false;
  uint64_t seed = 0;
};

// The learning rate of DP-SGD when --learning-rate is not given.
inline constexpr double kDpDefaultLearningRate = 0.5;

// Trains `model` on `rows` of `data` (all when empty) by DP-SGD, writes it to `out` with its
// guarantee in the metadata, prints the summary. Returns the exit code.
int TrainWithDp(Model model, const io::Dataset& data, const std::vector<int64_t>& rows,
                const DpFlags& flags, const DpRun& run, const CommonOptions& common,
                const std::string& out);

}  // namespace lethe::cli
