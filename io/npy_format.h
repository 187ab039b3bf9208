// Internal to lethe_io: the pieces of the .npy format shared by the .npy reader (a whole
// file) and the .npz reader (a zip member read as a stream). Both read the preamble,
// check the header length against what is available, parse the header, check the
// data size, and only then allocate.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "io/array.h"

namespace lethe::io::npy {

constexpr size_t kPreambleSize = 12;          // magic 6, version 2, length 2 (v1) or 4 (v2/3)
constexpr uint64_t kMaxHeaderSize = 1 << 20;  // numpy writes a few hundred bytes

struct Preamble {
  int major = 1;
  uint64_t header_start = 0;  // 10 (v1) or 12 (v2/v3)
  uint64_t header_size = 0;   // bytes of dict literal (including padding)
};

// `first` holds the first min(kPreambleSize, total) bytes. `total` is the size of the
// whole .npy (file or zip member): the header must fit inside it.
Preamble ParsePreamble(std::string_view first, uint64_t total, const std::string& what);

struct Header {
  DType dtype = DType::kF64;
  std::vector<int64_t> shape;
  bool fortran_order = false;
  uint64_t data_bytes = 0;  // numel * itemsize, overflow-checked
};

Header ParseHeader(std::string_view dict, const Preamble& preamble, const std::string& what);

// Builds the array from exactly header.data_bytes bytes, transposing Fortran order.
Array FromData(Header header, HostVector<uint8_t> data);

}  // namespace lethe::io::npy
