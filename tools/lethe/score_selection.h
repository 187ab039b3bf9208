// Influence scores over data larger than memory (docs/influence.md): the K extremes of
// each test example's scores kept while the training rows stream past (memory O(m·K),
// never O(n·m)), and the full [m, n] matrix written to an .npy by blocks of columns.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lethe::cli {

// The k best of a stream of (index, key): largest keys (or smallest), ties to the lowest
// index, in a heap of at most k entries; each carries a value (the signed score when the
// key is its magnitude). Extremes (session.h) orders the same way,
// so a streamed selection equals the one taken from the whole row.
class TopK {
 public:
  TopK(int64_t k, bool largest) : k_(k), largest_(largest) {}
  void Push(int64_t index, double key, double value);
  // (index, value), best first.
  std::vector<std::pair<int64_t, double>> Sorted() const;

 private:
  struct Entry {
    double key;
    int64_t index;
    double value;
  };
  bool Better(const Entry& a, const Entry& b) const {
    if (a.key != b.key) return largest_ ? a.key > b.key : a.key < b.key;
    return a.index < b.index;
  }
  int64_t k_;
  bool largest_;
  std::vector<Entry> heap_;  // worst on top
};

// An [m, n] float64 .npy (C order) written by blocks of columns (training rows) with
// pwrite, into a temporary file in the target's directory, fsync'ed and renamed by
// Commit(); removed if Commit() is never reached. As a scratch file (commit = false at
// construction: created in $TMPDIR and unlinked at once) it serves ReadRow instead, for
// a CSV written test by test afterwards.
class ScoresNpy {
 public:
  ScoresNpy(std::string path, int64_t m, int64_t n, bool scratch);
  ~ScoresNpy();
  ScoresNpy(const ScoresNpy&) = delete;
  ScoresNpy& operator=(const ScoresNpy&) = delete;
  // block[j·count + i] = score(test j, row begin + i).
  void WriteBlock(int64_t begin, int64_t count, const double* block);
  // Row j (n values).
  void ReadRow(int64_t j, double* out) const;
  void Commit();

 private:
  std::string path_, temp_;
  int64_t m_, n_;
  int fd_ = -1;
  uint64_t data_at_ = 0;
  bool committed_ = false;
};

}  // namespace lethe::cli
