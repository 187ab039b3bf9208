// One process's block of a dataset's rows, for runs under mpirun (docs/distributed.md):
// rank r of P holds rows [⌊n·r/P⌋, ⌊n·(r+1)/P⌋), ids included, and no rank reads the
// others' rows.
//
// .npz with stored members (numpy.savez): X, y and ids are read by offset, the npy headers
// parsed and checked as for the whole file, then only the block's bytes. Not read this way
// (the whole file is loaded and the block kept, so each rank holds it all for a moment):
// .csv, whose rows have no offsets; deflated members (numpy.savez_compressed), which
// cannot be entered in the middle; Fortran-ordered X. A stored member read in part cannot
// have its zip CRC-32 checked (it covers the whole member): its sizes and npy header are.
// A file inconsistent in its shapes (y's rows not X's …) is loaded whole too, so that the
// error is the one-process message.
#pragma once

#include <cstdint>
#include <string>

#include "io/dataset.h"

namespace lethe::io {

struct DatasetBlock {
  Dataset data;           // the block's rows; ids are the file's (default: file row index)
  int64_t first_row = 0;  // file row of data's row 0
  int64_t total_rows = 0;  // n of the whole file
  bool by_offset = false;  // read by offset (else loaded whole and sliced)
};

// Throws lethe::Error as LoadDataset does (messages name file rows), and when the file has
// fewer rows than processes.
DatasetBlock LoadDatasetBlock(const std::string& path, const DatasetOptions& options, int rank,
                              int size);

}  // namespace lethe::io
