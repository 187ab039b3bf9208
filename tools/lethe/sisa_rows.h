// The training rows of a SISA command that trains shards (sisa train, sisa unlearn). One
// process: the whole file, as always. Under mpirun (docs/distributed.md, "SISA ensembles")
// a rank trains the shards of its jobs only (job j on rank j mod P), so it holds X of
// those shards' rows alone (io/dataset_rows.h): a shard's rows are spread over the file by
// the keyed hash of their ids, so each rank first reads every id (and label: the model's
// output width and the label checks are the whole file's), keeps the ids whose shard,
// Assign(id).shard, is one of its own, and reads only their rows. No rank holds the file's
// whole X, except where noted at LoadEnsembleShards.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "engine/architecture.h"
#include "engine/sisa/manifest.h"
#include "io/dataset.h"
#include "tools/lethe/cli.h"

namespace lethe::cli {

struct ShardData {
  // One process: the whole file. Under mpirun (split): every row's id and targets, n, d and
  // shapes, X empty: what the partition, the initial models and the label checks read.
  io::Dataset all;
  // Under mpirun: the rows this rank trains on (its shards'), in file order.
  io::Dataset mine;
  bool split = false;
  // The rows to train on and hash: this rank's.
  const io::Dataset& rows() const { return split ? mine : all; }
};

// This rank's jobs' shards: jobs are numbered in the order given, job j runs on rank
// j mod P (ForEachConstituent). One process: every shard given.
std::set<int> ShardsOfThisRank(const std::vector<int>& job_shards);

// PATH's rows (above): under mpirun those whose shard under `partition` is in `shards`,
// read collectively; a NaN or Inf in X is the file's first such row whichever rank holds it
// (the one-process line). One process: LoadDataset.
ShardData LoadShardRows(const std::string& path, const io::DatasetOptions& options,
                        const sisa::PartitionOptions& partition, const std::set<int>& shards);

// CheckDataMatchesModel on every rank: the labels and widths against `all`, token ids (an
// integer X) against this rank's rows. Collective.
void CheckShardDataMatchesModel(const Architecture& arch, const ShardData& data);

// The rows of X each rank holds (rank order): for --json under mpirun (what proves that no
// rank read the whole file). Collective.
std::vector<int64_t> RowsHeldPerRank(const ShardData& data);

// ExcludeForgotten (forgotten_data.h) of both: the note (rank 0 prints it) counts every row.
void ExcludeForgottenShards(const ForgetHistory& forgotten, ShardData& data,
                            const std::string& command, const std::string& model_path);

// LoadEnsembleData (sisa_dir.h) for sisa unlearn: under mpirun this rank's `shards`' rows
// when the manifest records every cell's row hash (lethe-sisa/2). A file that is not byte
// for byte the recorded one (rows deleted) has every cell checked, shard s's on rank s mod
// P, which then also holds shard s's rows. A lethe-sisa/1 manifest, whose cells are all
// hashed, has every rank load the whole file, as one process does.
ShardData LoadEnsembleShards(const sisa::Manifest& m, const std::string& dir,
                             std::string& data_path, const CommonOptions& common,
                             std::string* sha256, const std::set<int>& shards);

}  // namespace lethe::cli
