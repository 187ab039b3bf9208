// The manifest of a SISA ensemble directory (docs/unlearning.md, "SISA"): everything that
// is needed to serve a deletion by retraining, and to check that nothing was altered.
//
//   DIR/manifest.json            this record; the single commit point of every change
//   DIR/s{S}-r{R}-g{G}.safetensors  shard S's checkpoint after slice R, written by
//                                generation G (0: sisa train, g: the g-th sisa unlearn)
//   DIR/s{S}-patch-g{G}.safetensors shard S's Newton-patched constituent, written by
//                                generation G (lethe unlearn --model DIR --method newton)
//
// Shard S's constituent model is its patch when it has one (the shard is then "patched":
// approximate, its checkpoints still trained on the ids the patch removed), else its last
// slice's checkpoint (the shard is "exact"). sisa unlearn retrains a patched shard from the
// checkpoint before the earliest slice of its patched ids, which makes it exact again. A checkpoint file is never
// rewritten: an unlearn writes its retrained checkpoints under the next generation's names,
// then replaces manifest.json atomically (rename), then removes the files the new manifest
// no longer names. A crash at any moment therefore leaves a manifest that names only
// complete files with the hashes it records: the old ensemble or the new one.
#pragma once

#include <cstdint>
#include <optional>
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
  // SHA-256 of this cell's rows (CellRowsSha256, engine/sisa/cell_rows.h): lets sisa unlearn
  // accept a data file from which forgotten rows were deleted. Empty in a lethe-sisa/1
  // manifest (written before it existed); every writer fills it.
  std::string rows_sha256;
};

// One Newton patch request on one constituent: its solver summary, as the report gives it.
struct PatchRequest {
  int generation = 0;         // the manifest generation it produced
  int64_t k = 0;              // ids removed from this constituent by it
  std::string ids_sha256;     // IdsSha256 of those ids
  std::string solver;         // --solver
  int steps = 0;              // Newton steps taken
  double kept_grad_norm_before = 0, kept_grad_norm_after = 0;  // ‖∇L₋ₛ‖ of the shard
  double delta_norm = 0;      // ‖θ' − θ‖
  double seconds = 0;
  std::string summary;        // the solves' summaries, in words
};

// A shard whose constituent was Newton-patched since its last (re)training.
struct Patch {
  std::string file;             // PatchName(shard, generation)
  std::string sha256;
  int generation = 0;
  std::vector<int64_t> ids;     // the ids the patches removed (ascending): forgotten by the
                                // ensemble, still in this shard's checkpoints
  std::vector<PatchRequest> requests;
};

struct Shard {
  std::vector<Checkpoint> slices;  // R entries
  std::optional<Patch> patch;      // set: the constituent is patched (approximate)
  int64_t size() const;            // examples in the shard (all slices)
};

struct Manifest {
  int version = 2;  // of the file read (1: no rows_sha256, no patches)
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

  // The model file of shard s: its patch, else its last checkpoint.
  const std::string& ConstituentFile(int s) const {
    return shards[s].patch ? shards[s].patch->file : shards[s].slices.back().file;
  }
  const std::string& ConstituentSha256(int s) const {
    return shards[s].patch ? shards[s].patch->sha256 : shards[s].slices.back().sha256;
  }
  bool AnyPatched() const;
  // Writes "lethe-sisa/2" (rows_sha256 and patch); Parse reads /2 and /1 (neither key).
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
std::string PatchName(int shard, int generation);

}  // namespace lethe::sisa
