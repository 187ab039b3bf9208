// Internal to lethe_io: the checks and conversions that turn an .npz's arrays (X, y,
// optional ids) into a Dataset, shared by LoadDataset (the whole file), LoadDatasetBlock
// (one rank's rows, io/dataset_block.h) and LoadDatasetRows (rows picked by id,
// io/dataset_rows.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "io/array.h"
#include "io/dataset.h"
#include "io/npy_format.h"

namespace lethe::io {

// `arrays` hold rows [first_row, first_row + X.shape[0]) of the file: error messages name
// file rows, and default ids (no "ids" array) are file row indices.
Dataset DatasetFromArrays(const std::string& path, std::map<std::string, Array> arrays,
                          int64_t first_row);
// The same checks and fields but X's values, for the .npz at `path` whose X member has
// header `x`: y and ids read whole, X's dtype and shape from its header, the Dataset's X
// left empty (io/dataset_stream.h and io/dataset_rows.h read X's rows themselves).
Dataset NpzDatasetMeta(const std::string& path, const npy::Header& x);

// LoadDataset of a CSV file whose X keeps only the rows keep(id) selects (io/dataset_rows.h):
// every row is parsed and checked as LoadDataset does; the Dataset returned holds every
// row's ids and y and an empty X; the kept rows' features go to *X, their file rows to *rows.
Dataset LoadCsvRows(const std::string& path, const DatasetOptions& options,
                    const std::function<bool(int64_t)>& keep, HostVector<double>* X,
                    std::vector<int64_t>* rows);

}  // namespace lethe::io
