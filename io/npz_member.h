// Reading one .npz member's npy header through its zip stream (stored or deflated alike):
// shared by the reader that holds the arrays (io/npz.cc) and the one that streams X's rows
// (io/dataset_stream.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/npy_format.h"
#include "io/zip.h"

namespace lethe::io {

// Reads the member's npy preamble and header from `reader` (at the member's start) and
// checks the size the header implies against the zip's declared size, before anything is
// allocated for the data. Leaves the stream at the first data byte; *data_start is its
// offset in the member. `what` names the member in errors.
npy::Header ReadNpyMemberHeader(zip::MemberReader& reader, const zip::Entry& entry,
                                const std::string& what, uint64_t* data_start);

// The .npz's member X.npy in `entries` (the last of that name, as the readers always took it);
// an error naming `path` when there is none.
const zip::Entry& XMember(const std::vector<zip::Entry>& entries, const std::string& path);

}  // namespace lethe::io
