#include "tools/lethe/sisa_rows.h"

#include <algorithm>
#include <climits>

#include "common/error.h"
#include "engine/model.h"
#include "engine/forgotten.h"
#include "engine/sisa/cell_rows.h"
#include "engine/sisa/partition.h"
#include "io/dataset_rows.h"
#include "io/sha256.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/forgotten_data.h"
#include "tools/lethe/sisa_dir.h"
#include "tools/lethe/sisa_distributed.h"

namespace lethe::cli {

std::set<int> ShardsOfThisRank(const std::vector<int>& job_shards) {
  std::set<int> mine;
  const int P = Comm().size(), rank = Comm().rank();
  for (size_t j = 0; j < job_shards.size(); ++j)
    if (static_cast<int>(j % P) == rank) mine.insert(job_shards[j]);
  return mine;
}

ShardData LoadShardRows(const std::string& path, const io::DatasetOptions& options,
                        const sisa::PartitionOptions& partition, const std::set<int>& shards) {
  ShardData data;
  if (!Distributed()) {
    data.all = io::LoadDataset(path, options);
    return data;
  }
  io::DatasetRows read = Collectively([&] {
    return io::LoadDatasetRows(path, options, [&](int64_t id) {
      return shards.count(sisa::Assign(id, partition).shard) > 0;
    });
  });
  // Each rank looked at its rows only: the first bad row of the file is the lowest of the
  // ranks' first ones, the row one process names.
  int64_t bad = read.nonfinite_row < 0 ? INT64_MAX : read.nonfinite_row;
  for (int64_t b : Comm().AllgatherInt64(bad)) bad = std::min(bad, b);
  if (bad != INT64_MAX) Collectively([&] { throw Error(io::NonFiniteXMessage(path, bad)); });
  data.all = std::move(read.all);
  data.mine = std::move(read.rows);
  data.split = true;
  return data;
}

void CheckShardDataMatchesModel(const Architecture& arch, const ShardData& data) {
  // `all` has no X: an integer X (token ids, or the error that the model reads features)
  // is checked on the rows; every other check reads only widths and labels, all of them.
  Collectively([&] {
    CheckDataMatchesModel(arch, data.split && data.all.integer_features ? data.mine : data.all);
  });
}

std::vector<int64_t> RowsHeldPerRank(const ShardData& data) {
  return Comm().AllgatherInt64(static_cast<int64_t>(data.rows().X.size()) /
                               std::max<int64_t>(data.rows().d, 1));
}

void ExcludeForgottenShards(const ForgetHistory& forgotten, ShardData& data,
                            const std::string& command, const std::string& model_path) {
  if (!data.split) {
    data.all = ExcludeForgotten(forgotten, std::move(data.all), command, model_path);
    return;
  }
  const auto kept = RowsKeptNoted(forgotten, data.all, command, model_path);
  if (!kept) return;
  // `all` has no X: its kept ids and targets by hand.
  io::Dataset& all = data.all;
  std::vector<double> y;
  std::vector<int64_t> ids;
  for (int64_t i : *kept) {
    y.insert(y.end(), all.y.begin() + i * all.target_width,
             all.y.begin() + (i + 1) * all.target_width);
    ids.push_back(all.ids[i]);
  }
  all.y = std::move(y);
  all.ids = std::move(ids);
  all.n = static_cast<int64_t>(kept->size());
  data.mine = SelectRows(data.mine, RowsNotForgotten(data.mine, forgotten));
}

ShardData LoadEnsembleShards(const sisa::Manifest& m, const std::string& dir,
                             std::string& data_path, const CommonOptions& common,
                             std::string* sha256, const std::set<int>& shards) {
  if (!Distributed()) {
    ShardData data;
    data.all = LoadEnsembleData(m, dir, data_path, common, sha256);
    return data;
  }
  if (data_path.empty()) data_path = m.data_path;
  // Rank 0 alone reads the whole file, to hash it, and sends the hash.
  std::string sha;
  OnRoot([&] { sha = io::Sha256File(data_path); });
  Comm().Broadcast(&sha, 0);
  if (sha256) *sha256 = sha;
  if (m.version < 2) {  // lethe-sisa/1: no cell hashes; every cell is hashed now, as one process
    ShardData data;
    data.all = Collectively([&] { return LoadEnsembleData(m, dir, data_path, common, nullptr); });
    return data;
  }
  if (sha == m.data_sha256) {
    ShardData data = LoadShardRows(data_path, common.Data(), m.partition, shards);
    Collectively([&] {
      if (data.all.n != m.data_n)
        Fail(data_path, ": ", data.all.n, " examples, the manifest says ", m.data_n);
    });
    return data;
  }
  // Not the recorded file (forgotten rows deleted): every cell is checked as one process
  // does (sisa::CheckCells), each shard's cell hashes on one rank: a job's shard on the
  // job's rank (it holds those rows anyway); the k-th shard of no job on rank (J + k) mod P,
  // after the J jobs' ranks, which reads those rows too. The id checks read every id, on
  // every rank. The lowest mismatch over the ranks is the one one process stops at.
  const int S = m.partition.shards, P = Comm().size();
  std::vector<double> taken(S, 0.0);
  for (int s : shards) taken[s] = 1;
  Comm().AllreduceSum(taken.data(), S);
  std::set<int> hashed = shards;
  int next = 0;
  for (double t : taken) next += t > 0;
  for (int s = 0; s < S; ++s)
    if (taken[s] == 0 && next++ % P == Comm().rank()) hashed.insert(s);
  ShardData data = LoadShardRows(data_path, common.Data(), m.partition, hashed);
  const auto mismatch = sisa::FirstCellMismatch(m, data.all, RowOfId(data.all), data.mine,
                                                RowOfId(data.mine), data_path, &hashed);
  int64_t first = mismatch ? mismatch->key : INT64_MAX;
  for (int64_t key : Comm().AllgatherInt64(first)) first = std::min(first, key);
  if (first != INT64_MAX)
    Agree(mismatch && mismatch->key == first ? std::optional(mismatch->message) : std::nullopt);
  return data;
}

}  // namespace lethe::cli
