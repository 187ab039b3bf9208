// Internal to lethe_io: a reader for the zip archives numpy writes (.npz), following
// PKWARE's APPNOTE.TXT (https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT).
// Members are found through the central directory (sections 4.3.12-4.3.16), ZIP64
// records and extra fields (4.3.14, 4.3.15, 4.5.3) are understood, and only methods 0
// (stored) and 8 (deflate) are read. Every size and offset is checked against the file
// before it is used; a member is streamed, so memory follows what the caller asks for.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/input_file.h"

namespace lethe::io::zip {

struct Entry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflate
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_offset = 0;  // its local header
  uint64_t data_offset = 0;   // first byte of the member's (compressed) data
};

// Reads and validates the central directory and every local header; members must not
// overlap (each byte of the file belongs to at most one member).
// Throws lethe::Error "PATH: problem" or "PATH: member 'NAME': problem".
std::vector<Entry> ReadDirectory(const InputFile& file);

// Largest accepted deflate expansion of one member: declared uncompressed size at most
// kMaxRatio * compressed size + kRatioSlack. Real data (floats) compresses far less.
constexpr uint64_t kMaxRatio = 1024;
constexpr uint64_t kRatioSlack = 1 << 20;
// Largest accepted expansion of all the members a reader takes from one archive: their
// declared sizes together at most kMaxTotalRatio * file size + kRatioSlack. Deflate
// reaches ~1030x on constant data; float features compress 1-10x, one-hot or mostly-zero
// ones perhaps 100x. An archive beyond this is refused with a message that says so
// (numpy.savez, uncompressed, is never refused).
constexpr uint64_t kMaxTotalRatio = 256;

// Streams one member's uncompressed bytes, never past its declared size.
class MemberReader {
 public:
  MemberReader(const InputFile& file, const Entry& entry);  // refuses zip-bomb ratios
  ~MemberReader();
  MemberReader(const MemberReader&) = delete;
  MemberReader& operator=(const MemberReader&) = delete;

  // Reads exactly `size` more bytes; an error if the member holds fewer.
  void Read(void* out, size_t size);
  // The member must end exactly at its declared size, and its CRC-32 must match.
  void Finish();

 private:
  [[noreturn]] void Error(const std::string& problem) const;
  void Refill();

  const InputFile& file_;
  const Entry& entry_;
  uint64_t produced_ = 0;  // uncompressed bytes handed out
  uint64_t consumed_ = 0;  // compressed bytes read from the file
  uint32_t crc_ = 0;
  bool stream_end_ = false;
  z_stream z_{};
  bool z_open_ = false;
  std::vector<unsigned char> input_;
};

}  // namespace lethe::io::zip
