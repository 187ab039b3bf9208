#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "io/input_file.h"

namespace lethe::io {
namespace {

std::atomic<uint64_t> temp_counter{0};

// Best effort: makes the rename itself durable. Failure is not an error (some file
// systems refuse fsync on directories); the data was already fsync'ed.
void SyncParentDirectory(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  // An existing output that is not a regular file (/dev/null, /dev/stdout, a FIFO) is
  // written in place: renaming a temporary file over it would replace the device node,
  // and "all or nothing" has no meaning for a stream.
  if (IsExistingStream(path_)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) Fail(path_, ": cannot open for writing: ", std::strerror(errno));
    direct_ = true;
    return;
  }
  // Same directory as the target, so that rename() stays within one file system.
  temp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." +
               std::to_string(temp_counter.fetch_add(1));
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0)
    Fail(path_, ": cannot create temporary file ", temp_path_, ": ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !direct_) ::unlink(temp_path_.c_str());
}

void AtomicFile::Write(const void* data, size_t size) {
  LETHE_CHECK(fd_ >= 0 && !committed_, "write to a closed AtomicFile");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {  // write() may write less than asked (signals, pipes, quotas)
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail(path_, ": write failed: ", std::strerror(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::Commit() {
  LETHE_CHECK(fd_ >= 0 && !committed_, "AtomicFile committed twice");
  if (direct_) {
    const int fd = fd_;
    fd_ = -1;
    committed_ = true;
    if (::close(fd) != 0) Fail(path_, ": close failed: ", std::strerror(errno));
    return;
  }
  if (::fsync(fd_) != 0) Fail(path_, ": fsync failed: ", std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) Fail(path_, ": close failed: ", std::strerror(errno));
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    Fail(path_, ": cannot rename ", temp_path_, " into place: ", std::strerror(errno));
  committed_ = true;
  SyncParentDirectory(path_);
}

void WriteFileAtomically(const std::string& path, const std::string& contents) {
  AtomicFile file(path);
  file.Write(contents);
  file.Commit();
}

bool IsExistingStream(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

void CheckOutputIsNotAnInput(const std::string& output, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  struct stat out_stat;
  const bool out_exists = ::stat(output.c_str(), &out_stat) == 0;
  for (const std::string& input : inputs) {
    struct stat in_stat;
    bool same;
    if (out_exists && ::stat(input.c_str(), &in_stat) == 0) {
      // Catches hard links, symlinks and different spellings of one path.
      same = out_stat.st_dev == in_stat.st_dev && out_stat.st_ino == in_stat.st_ino;
    } else {
      std::error_code ec1, ec2;
      const fs::path a = fs::weakly_canonical(output, ec1);
      const fs::path b = fs::weakly_canonical(input, ec2);
      same = !ec1 && !ec2
                 ? a == b
                 : fs::path(output).lexically_normal() == fs::path(input).lexically_normal();
    }
    if (same) Fail(output, ": refusing to overwrite input file ", input);
  }
}

void CheckOutputCanBeWritten(const std::string& output) {
  if (IsExistingStream(output)) {
    // A device or FIFO (/dev/null): written in place (AtomicFile), so it must be writable.
    if (::access(output.c_str(), W_OK) != 0)
      Fail(output, ": cannot write: ", std::strerror(errno));
    return;
  }
  std::string dir = std::filesystem::path(output).parent_path().string();
  if (dir.empty()) dir = ".";
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    Fail(output, ": cannot write: directory ", dir, ": ", std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) Fail(output, ": cannot write: ", dir, " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    Fail(output, ": cannot write: directory ", dir, ": ", std::strerror(errno));
  if (::stat(output.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    Fail(output, ": cannot write: ", std::strerror(EISDIR));
}

std::string ReadFile(const std::string& path) {
  InputFile file(path);
  return file.ReadString(0, static_cast<size_t>(file.size()));
}

}  // namespace lethe::io
