// Where the objective's training rows X come from when they are not held on the device
// (docs/design.md, "Data larger than memory"): the objective asks for rows
// [begin, begin + count) of its data, one batch at a time, into a batch buffer of its own.
// A source must hand out exactly the values the in-memory upload (UploadData) would hold
// for those rows, so that every result is bit for bit the in-memory run's: the batch
// boundaries and the order of every sum are the objective's, and do not depend on where
// the rows come from.
#pragma once

#include <cstdint>

#include "kernels/matrix.h"

namespace lethe {

template <typename T>
class RowSource {
 public:
  virtual ~RowSource() = default;
  virtual int64_t rows() const = 0;
  virtual int64_t cols() const = 0;
  // Rows [begin, begin + count) into out (count × cols()).
  virtual void Read(int64_t begin, int64_t count, kernels::Matrix<T> out) = 0;
  // Rows read so far (tests and the bench count the passes over the data).
  int64_t rows_read() const { return rows_read_; }

 protected:
  int64_t rows_read_ = 0;
};

}  // namespace lethe
