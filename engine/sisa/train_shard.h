// Training one SISA shard slice by slice with lethe train's optimisers (engine/trainer.h).
//
// Checkpoint r of shard s is the result of training on the shard's slices 0..r (the
// cumulative data, in ShardOrder) from checkpoint r − 1 (r = 0: the shard's initial model).
// Everything it depends on — the starting weights, the rows and their order, the options,
// the seed — is a function of the manifest and the ids, so retraining from checkpoint r − 1
// after a deletion computes exactly what `lethe sisa train` on the kept data computes
// (the backends' reductions are in a fixed order, docs/design.md).
//
// - adam (stochastic): each slice runs EpochsPerSlice(e, R) = round(2e/(R+1)) epochs (the
//   SISA paper's schedule: a sliced shard costs about e epochs over the whole shard), its
//   shuffling seeded by SliceSeed(seed, s, r). Adam's moment estimates start afresh at each
//   slice: a checkpoint is a model, and the warm start carries only θ.
// - lbfgs / newton-cg (full batch, to an optimum): each slice trains to the optimum of the
//   cumulative data from the previous checkpoint. The slices are then warm starts only: the
//   last checkpoint is (to the tolerance) the shard's optimum whatever the slicing, and the
//   saving on a deletion is the shorter path from a nearby starting point, not fewer epochs.
// A cumulative set with no rows (the first slices of a shard whose early cells are empty)
// leaves the model as it was.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>

#include "engine/model.h"
#include "engine/sisa/manifest.h"
#include "kernels/backend.h"

namespace lethe::sisa {

// Seeds derived from the one --seed, in separate domains so that no two uses share a stream.
uint64_t InitSeed(uint64_t seed, int shard);
uint64_t SliceSeed(uint64_t seed, int shard, int slice);

struct SliceDone {
  int slice;
  const Model& model;
  const TrainSummary& summary;
  int64_t rows;  // cumulative rows trained on
};

// Trains shard `shard` of `partition` from slice `from` through the last, starting from
// `start`; calls `done` after each slice. `row_of_id` maps every id to its row of `data`.
template <typename T>
void TrainShard(kernels::Backend<T>& backend, Model start, const io::Dataset& data,
                const std::unordered_map<int64_t, int64_t>& row_of_id, const Partition& partition,
                int shard, int from, const Manifest& manifest,
                const std::function<void(const SliceDone&)>& done);

}  // namespace lethe::sisa
