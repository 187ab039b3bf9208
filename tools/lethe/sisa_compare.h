// What `lethe compare` compares: a model file or a SISA ensemble directory
// (docs/unlearning.md, "Comparing ensembles").
//
// An ensemble's audit uses its aggregated predictions (the manifest's aggregation): the
// label is the ensemble's, and the per-example loss (the set losses, and the membership
// attack's score) is
//   mean: −log p̄_y, the log loss of the mean of the constituents' probabilities;
//   vote: 1 − v_y/S, the fraction of the S constituents that do not vote for the label y
//         (a vote has no probability: −log(v_y/S) is infinite whenever no constituent
//         votes for y, and the attack only needs an order; ties are handled by the AUC's ½).
// Parameters: an ensemble's θ is its constituents' θ, concatenated in shard order; a
// parameter distance is reported only between ensembles of the same partition (shards,
// slices, seed) and spec, where constituent s of one is the counterpart of constituent s of
// the other: the distance is then √(Σ_s ‖θ_s − θ'_s‖²), with each constituent's too.
// Between a model and an ensemble, or ensembles of different partitions, it is not
// applicable.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/audit.h"
#include "engine/model.h"
#include "engine/sisa/manifest.h"
#include "tools/lethe/cli.h"

namespace lethe::cli {

struct Compared {
  std::string path;
  std::optional<sisa::Manifest> manifest;  // set: an ensemble DIR
  std::vector<Model> models;               // the model, or the constituents in shard order
  const Architecture& arch() const { return models.front().arch; }
  const ForgetHistory& forgotten() const {
    return manifest ? manifest->forgotten : models.front().forgotten;
  }
  std::vector<double> Theta() const;  // concatenated
};

Compared LoadCompared(const std::string& path);

// Why a and b have no parameter distance ("" when they have one).
std::string DistanceNotApplicable(const Compared& a, const Compared& b);

// The audit of engine/audit.h for an ensemble (above). Under mpirun (collective) `train` is
// this rank's block of rows and `forget_rows` rows of it; `forget_order` lists the forget
// ids in the order one process takes them (the given list; empty: row order), so that rank
// 0 sums as one process does; `test` is rank 0's (nullptr elsewhere). Complete on rank 0
// (as tools/lethe/audit_distributed.h); serially the one-process audit.
ModelAudit AuditEnsemble(const Compared& c, const io::Dataset& train,
                         const std::vector<int64_t>& forget_rows,
                         const std::vector<int64_t>& forget_order, const io::Dataset* test,
                         const CommonOptions& common);

}  // namespace lethe::cli
