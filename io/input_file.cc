#include "io/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/checked_alloc.h"
#include "common/error.h"

namespace lethe::io {

InputFile::InputFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) Fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    Fail(path, ": cannot open: ", std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd_);
    Fail(path, ": cannot open: ", std::strerror(EISDIR));
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::ReadAt(uint64_t offset, void* out, size_t size) const {
  auto* p = static_cast<char*>(out);
  while (size > 0) {
    const ssize_t got = ::pread(fd_, p, size, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      Fail(path_, ": read failed: ", std::strerror(errno));
    }
    if (got == 0) Fail(path_, ": unexpected end of file at byte ", offset, " (file changed?)");
    p += got;
    size -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

std::string InputFile::ReadString(uint64_t offset, size_t size) const {
  // Callers check `size` against the file; this names the file if it still does not fit.
  std::string s;
  ResizeChecked(s, size, path_ + ": reading " + std::to_string(size) + " bytes");
  ReadAt(offset, s.data(), size);
  return s;
}

}  // namespace lethe::io
