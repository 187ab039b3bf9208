// A dataset's X read by blocks of rows from its file, for data larger than memory
// (`--max-memory`, docs/design.md "Data larger than memory"): y and ids (n values each)
// are read whole, X never is.
//
// .npz only (CSV rows have no offsets). A stored member (numpy.savez) is read in place by
// offset; a deflated one (numpy.savez_compressed), which cannot be entered in the middle,
// is inflated once, chunk by chunk, into an anonymous temporary file (under $TMPDIR, or
// /tmp; unlinked as soon as it is open, so nothing is left behind whatever happens) and
// read from there. Opening makes one pass over X, in blocks, with the whole load's checks
// (NaN or Inf at row R), so a bad file fails before any work; every row read later is
// converted exactly as LoadDataset converts it (the file's dtype → double), so a streamed
// run computes with the same bits as an in-memory one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "io/array.h"
#include "io/dataset.h"

namespace lethe::io {

class InputFile;

// X's number of elements (n·d) from its npy header alone, for deciding whether to stream;
// -1 when PATH is not an .npz or has no X (the loader then says what is wrong).
int64_t NpzXElements(const std::string& path);

class StreamedX {
 public:
  // Opens PATH's X and fills `meta` with everything LoadDataset gives but X (X stays
  // empty). `block_bytes` bounds the buffer of the opening pass; `progress(done, total)`
  // (rows) reports it. Throws lethe::Error "PATH: problem" as LoadDataset does, and for
  // what cannot be streamed (CSV, a Fortran-ordered X).
  static std::unique_ptr<StreamedX> Open(const std::string& path, Dataset* meta,
                                         int64_t block_bytes,
                                         const std::function<void(int64_t, int64_t)>& progress = {});
  ~StreamedX();
  StreamedX(const StreamedX&) = delete;
  StreamedX& operator=(const StreamedX&) = delete;

  int64_t rows() const { return n_; }
  int64_t cols() const { return d_; }
  // Bytes of one row as stored (the file's dtype).
  int64_t row_bytes() const { return d_ * DTypeSize(dtype_); }
  // Whether X was deflated and inflated into a temporary file.
  bool inflated() const { return inflated_; }
  // File rows [row, row + count) as doubles into out[0, count·d).
  void ReadRows(int64_t row, int64_t count, double* out) const;

 private:
  StreamedX() = default;
  std::string path_;
  std::unique_ptr<InputFile> file_;
  uint64_t data_at_ = 0;  // file offset of X's first byte
  DType dtype_ = DType::kF64;
  int64_t n_ = 0, d_ = 0;
  bool inflated_ = false;
  mutable Array block_;  // one block's bytes, reused
};

}  // namespace lethe::io
