// Training rows streamed from their file a batch at a time (io/dataset_stream.h), as the
// objective's RowSource: data larger than memory (docs/design.md).
#pragma once

#include <memory>
#include <vector>

#include "engine/objective.h"
#include "engine/row_source.h"
#include "io/dataset_stream.h"

namespace lethe {

// Row i of this source is file row file_rows[i] (file_rows empty: row i). Consecutive file
// rows are read with one read each; every value goes file dtype → double → T, as
// UploadData converts it, so the device holds the same bits.
template <typename T>
class StreamedRows : public RowSource<T> {
 public:
  StreamedRows(kernels::Backend<T>& backend, std::shared_ptr<const io::StreamedX> x,
               std::vector<int64_t> file_rows);
  int64_t rows() const override;
  int64_t cols() const override { return x_->cols(); }
  void Read(int64_t begin, int64_t count, kernels::Matrix<T> out) override;

 private:
  kernels::Backend<T>& backend_;
  std::shared_ptr<const io::StreamedX> x_;
  std::vector<int64_t> file_rows_;
  std::vector<double> doubles_;  // one batch as doubles, reused
  std::vector<T> values_;        // the same as T, for the upload
};

// Rows `rows` (all when empty) of a streamed dataset (io::Dataset::streamed), as
// UploadData gives them for one in memory: Y uploaded whole, X a StreamedRows.
template <typename T>
DeviceData<T> UploadStreamed(kernels::Backend<T>& backend, const io::Dataset& data,
                             const std::vector<int64_t>& rows = {});

}  // namespace lethe
