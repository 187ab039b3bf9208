// The manifest of a SISA ensemble directory (docs/unlearning.md, "SISA"): everything that
// is needed to serve a deletion by retraining, and to check that nothing was altered.
//
//   DIR/manifest.json            this record; the single commit point of every change
//   DIR/s{S}-r{R}-g{G}.safetensors  shard S's checkpoint after slice R, written by
//                                generation G (0: sisa train, g: the g-th sisa unlearn)
//
// Shard S's constituent model is its last slice's checkpoint. A checkpoint file is never
// rewritten: an unlearn writes its retrained checkpoints under the next generation's names,
// then replaces manifest.json atomically (rename), then removes the files the new manifest
// no longer names. A crash at any moment therefore leaves a manifest that names only
// complete files with the hashes it records: the old ensemble or the new one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/forgotten.h"
#include "engine/sisa/partition.h"
#include "engine/trainer.h"

namespace lethe::sisa {

enum class Aggregate { kVote, kMean };
const char* Name(Aggregate a);
Aggregate ParseAggregate(const std::string& name);  // throws lethe::Error

struct Checkpoint {
  std::vector<int64_t> ids;  // this slice's ids (ascending), forgotten ones removed
  std::string file;          // name inside DIR
  std::string sha256;
  double seconds = 0;        // training time of this slice (from the previous checkpoint)
  int64_t trained_on = 0;    // rows of the cumulative data this checkpoint was trained on
  int generation = 0;        // which run wrote it
};

struct Shard {
  std::vector<Checkpoint> slices;  // R entries
  int64_t size() const;            // examples in the shard (all slices)
};

struct Manifest {
  int version = 1;
  int generation = 0;  // 0 after sisa train, +1 per sisa unlearn
  PartitionOptions partition;
  Aggregate aggregate = Aggregate::kVote;
  TrainOptions train;          // as given (seed = partition.seed)
  int epochs_per_slice = 0;    // adam: the SISA schedule (EpochsPerSlice); else 0
  std::string dtype = "f64";
  // The backend it was trained on (--device): the backends' reductions are each in a fixed
  // order, but not the same order, so exactness holds against training on the same device.
  std::string device = "cpu";
  int64_t objective_batch = 2048;  // CommonOptions::batch_size: the reduction blocking
  std::string spec_json;       // io::ModelSpec::ToJson()
  std::string data_path;       // absolute path of the training data as given to sisa train
  std::string data_sha256;
  int64_t data_n = 0;
  std::vector<Shard> shards;   // S entries
  ForgetHistory forgotten;     // ids removed by sisa unlearn, and the requests
  std::string created;         // UTC

  // The model file of shard s (its last checkpoint).
  const Checkpoint& Constituent(int s) const { return shards[s].slices.back(); }
  std::string ToJson() const;
  // Strict: every key known and of its type, S × R checkpoints, file names of the form
  // above, ids unique across the manifest and each in the cell the partition gives it.
  // Errors name `where`.
  static Manifest Parse(const std::string& json, const std::string& where);
};

// SISA's schedule (Bourtoule et al. §IV-B): slice r of R is trained on r/R of the shard, so
// e epochs per slice would cost e·(R+1)/2 unsliced passes; e' = 2e/(R+1) epochs per slice
// costs the same as e epochs over the unsliced shard. Rounded to nearest, at least 1.
int EpochsPerSlice(int epochs, int slices);

std::string CheckpointName(int shard, int slice, int generation);

}  // namespace lethe::sisa
