// numpy .npy and .npz files (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html).
//
// .npy: magic "\x93NUMPY", version 1.0/2.0/3.0, a bounded header holding a Python dict
// literal {'descr': '<f8', 'fortran_order': False, 'shape': (n, d), }. Little-endian
// (and byte-order-free '|') numeric dtypes only; fortran_order arrays are transposed
// into C order. Object arrays (pickles) are refused.
// .npz: a zip archive of NAME.npy members, stored (numpy.savez) or deflated
// (numpy.savez_compressed), zip64 extra fields understood. Read through the central
// directory; every size and offset is checked against the file before use, and a
// member's declared uncompressed size is checked against what its npy header implies
// before inflating, so a hostile archive cannot make lethe allocate unbounded memory.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>

#include "io/array.h"

namespace lethe::io {

// `what` is used as the file name in error messages.
Array ParseNpy(const std::string& bytes, const std::string& what);
Array ReadNpy(const std::string& path);
// Member names without the ".npy" suffix. Only the members named in `wanted` (when given)
// are inflated and kept; every member's name and zip entry are still checked. The
// members read may together expand at most zip::kMaxTotalRatio times the file size.
std::map<std::string, Array> ReadNpz(const std::string& path,
                                     const std::optional<std::set<std::string>>& wanted = {});

std::string SerializeNpy(const Array& array);
// The header alone (magic, version, dict, padding): what SerializeNpy writes before the
// data, for a writer that streams the data after it.
std::string SerializeNpyHeader(DType dtype, const std::vector<int64_t>& shape);
void WriteNpy(const std::string& path, const Array& array);  // atomic

}  // namespace lethe::io
