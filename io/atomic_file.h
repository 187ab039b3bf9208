// Writes an output file so that it either appears complete or not at all: the bytes go
// to a temporary file in the same directory, which is flushed and renamed over the
// target on Commit(). If Commit() is never reached (an error, an exception), the
// destructor removes the temporary file and the target is left untouched. An existing
// output that is not a regular file (/dev/null, a FIFO) is written in place instead.
#pragma once

#include <string>
#include <vector>

namespace lethe::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // throws lethe::Error if the temp file cannot be created
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void Write(const void* data, size_t size);
  void Write(const std::string& text) { Write(text.data(), text.size()); }
  void Commit();  // flush, fsync, rename; throws lethe::Error on failure
  const std::string& path() const { return path_; }

 private:
  std::string path_, temp_path_;
  int fd_ = -1;
  bool committed_ = false;
  bool direct_ = false;  // writing an existing device or FIFO in place (no temporary file)
};

// Whole-file helper: AtomicFile + Write + Commit.
void WriteFileAtomically(const std::string& path, const std::string& contents);

// Whether `path` exists and is neither a regular file nor a directory (/dev/null, a FIFO): an
// output that is written in place, never replaced by a renamed temporary file.
bool IsExistingStream(const std::string& path);

// Throws lethe::Error "OUT: refusing to overwrite input file IN" if `output` names the
// same file as any of `inputs` (compared by device and inode where the file exists,
// else by canonical path).
void CheckOutputIsNotAnInput(const std::string& output, const std::vector<std::string>& inputs);

// Throws lethe::Error "OUT: cannot write: ..." if `output` could not be created: its
// directory does not exist, is not a directory or is not writable, or `output` is itself a
// directory. Commands call it before any work, so a typo in an output path fails at once
// rather than after the computation. Creates nothing.
void CheckOutputCanBeWritten(const std::string& output);

// Reads a whole file, throwing lethe::Error "PATH: cannot open: REASON" on failure.
std::string ReadFile(const std::string& path);

}  // namespace lethe::io
