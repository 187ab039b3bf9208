// Internal to lethe_io: positioned reads from a file whose size is known up front, so
// parsers can check every offset and length against the file size before allocating.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lethe::io {

class InputFile {
 public:
  explicit InputFile(const std::string& path);  // throws "PATH: cannot open: REASON"
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }

  // Reads exactly `size` bytes at `offset`. Callers check ranges against size() first;
  // a short read here means the file shrank while being read, reported as an error.
  void ReadAt(uint64_t offset, void* out, size_t size) const;
  std::string ReadString(uint64_t offset, size_t size) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace lethe::io
