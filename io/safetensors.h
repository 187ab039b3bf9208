// safetensors reader and writer (https://huggingface.co/docs/safetensors).
//
// Layout: u64 little-endian header length N, N bytes of JSON header, then the data
// buffer. The header maps tensor names to {"dtype", "shape", "data_offsets": [begin,
// end]} (offsets relative to the data buffer) plus an optional "__metadata__" object
// of string -> string.
//
// The reader is strict, as the reference implementation is: the header length is
// bounded (100 MB) and checked against the file size before anything is allocated;
// every shape product and offset is checked for overflow; end - begin must equal
// numel * dtype size; sorted by offset, the tensors must tile the data buffer exactly
// (no holes, no overlaps, no bytes after the last tensor).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/array.h"

namespace lethe::io {

struct SafetensorsFile {
  std::vector<std::pair<std::string, Array>> tensors;  // in data-offset order
  std::map<std::string, std::string> metadata;         // "__metadata__"

  const Array* Find(const std::string& name) const;  // nullptr if absent
};

// Throws lethe::Error "PATH: <problem>" for any malformed input.
SafetensorsFile ReadSafetensors(const std::string& path);

// Writes atomically (AtomicFile). Tensors are laid out in the given order.
void WriteSafetensors(const std::string& path, const SafetensorsFile& file);

}  // namespace lethe::io
