// An [m, n] table of influence scores whose columns (training rows) are scattered over the
// ranks that computed them (docs/distributed.md, "SISA ensembles"): a SISA ensemble's scores
// on shard s's rows are computed where constituent s runs, and a shard's rows are spread
// over the training file by the hash of their ids, so no rank holds a block of columns.
// Each rank keeps its own columns; the table is written by rank 0 in blocks of columns
// (memory O(m · block) there) and the extremes of a test's scores are merged from every
// rank's own (memory O(k)). No rank ever holds all n · m scores unless it computed them
// all (one process). Serially every function is the one-process computation.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "tools/lethe/score_selection.h"

namespace lethe::cli {

class HeldScores {
 public:
  // m tests, n columns over all ranks.
  HeldScores(int64_t m, int64_t n) : m_(m), n_(n) {}

  // Column `column` of every test: values[j · stride] for j < m. Each column is added on
  // exactly one rank, once.
  void Add(int64_t column, const double* values, int64_t stride);

  // The scores this rank holds (columns × m).
  int64_t held() const { return static_cast<int64_t>(columns_.size()) * m_; }

  // Rank 0 writes the whole table into `npy` (null on the other ranks) by blocks of
  // columns, each gathered from every rank. A column no rank added is an internal error.
  // A failure to write stops every rank with rank 0's message. Collective.
  void WriteTo(ScoresNpy* npy);

  // The k columns of test j ranked best by score (largest or smallest), or by |score|
  // (magnitude), ties to the lowest column — what Extremes (session.h) picks from the whole
  // row — as (column, signed score), best first, on rank 0 (empty elsewhere). Collective.
  std::vector<std::pair<int64_t, double>> Best(int64_t j, int64_t k, bool largest,
                                               bool magnitude) const;

 private:
  // Entries sorted by column: the position of the first with column ≥ c.
  int64_t LowerBound(int64_t c) const;
  void Sort();

  int64_t m_, n_;
  bool sorted_ = true;
  std::vector<int64_t> columns_;
  std::vector<double> values_;  // entry e's scores at [e · m, (e + 1) · m)
};

}  // namespace lethe::cli
