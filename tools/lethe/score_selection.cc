#include "tools/lethe/score_selection.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "common/quote.h"
#include "io/npy.h"

namespace lethe::cli {

void TopK::Push(int64_t index, double key, double value) {
  if (k_ <= 0) return;
  const Entry e{key, index, value};
  auto worse_on_top = [&](const Entry& a, const Entry& b) { return Better(a, b); };
  if (static_cast<int64_t>(heap_.size()) < k_) {
    heap_.push_back(e);
    std::push_heap(heap_.begin(), heap_.end(), worse_on_top);
  } else if (Better(e, heap_.front())) {
    std::pop_heap(heap_.begin(), heap_.end(), worse_on_top);
    heap_.back() = e;
    std::push_heap(heap_.begin(), heap_.end(), worse_on_top);
  }
}

std::vector<std::pair<int64_t, double>> TopK::Sorted() const {
  std::vector<Entry> all = heap_;
  std::sort(all.begin(), all.end(), [&](const Entry& a, const Entry& b) { return Better(a, b); });
  std::vector<std::pair<int64_t, double>> out;
  for (const Entry& e : all) out.emplace_back(e.index, e.value);
  return out;
}

namespace {

void WriteAll(int fd, const void* data, size_t size, uint64_t offset, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t w = ::pwrite(fd, p, size, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) Fail(what, ": cannot write: ", std::strerror(errno));
    p += w, size -= static_cast<size_t>(w), offset += static_cast<uint64_t>(w);
  }
}

}  // namespace

ScoresNpy::ScoresNpy(std::string path, int64_t m, int64_t n, bool scratch)
    : path_(std::move(path)), m_(m), n_(n) {
  if (scratch) {
    const char* dir = std::getenv("TMPDIR");
    temp_ = std::string(dir && *dir ? dir : "/tmp") + "/lethe-scores-XXXXXX";
  } else {
    temp_ = path_ + ".tmp-XXXXXX";
  }
  fd_ = ::mkstemp(temp_.data());
  if (fd_ < 0) Fail(path_, ": cannot create ", Quote(temp_), ": ", std::strerror(errno));
  if (scratch) {  // nothing to leave behind, whatever happens
    ::unlink(temp_.c_str());
    temp_.clear();
  } else {
    // mkstemp creates the file 0600; an output gets what every other output gets (io/
    // atomic_file.cc): 0666 less the umask.
    const mode_t mask = ::umask(0);
    ::umask(mask);
    if (::fchmod(fd_, 0666 & ~mask) != 0) Fail(path_, ": cannot write: ", std::strerror(errno));
  }
  const std::string header = io::SerializeNpyHeader(io::DType::kF64, {m, n});
  WriteAll(fd_, header.data(), header.size(), 0, path_);
  data_at_ = header.size();
  // The file's full size at once: a block of the last columns extends no hole.
  if (::ftruncate(fd_, static_cast<off_t>(data_at_ + static_cast<uint64_t>(m * n) * 8)) != 0)
    Fail(path_, ": cannot write: ", std::strerror(errno));
}

ScoresNpy::~ScoresNpy() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_.empty()) ::unlink(temp_.c_str());
}

void ScoresNpy::WriteBlock(int64_t begin, int64_t count, const double* block) {
  for (int64_t j = 0; j < m_; ++j)
    WriteAll(fd_, block + j * count, static_cast<size_t>(count) * 8,
             data_at_ + static_cast<uint64_t>(j * n_ + begin) * 8, path_);
}

void ScoresNpy::ReadRow(int64_t j, double* out) const {
  size_t size = static_cast<size_t>(n_) * 8;
  uint64_t offset = data_at_ + static_cast<uint64_t>(j * n_) * 8;
  char* p = reinterpret_cast<char*>(out);
  while (size > 0) {
    const ssize_t r = ::pread(fd_, p, size, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) Fail(path_, ": cannot read back its scratch scores: ", std::strerror(errno));
    p += r, size -= static_cast<size_t>(r), offset += static_cast<uint64_t>(r);
  }
}

void ScoresNpy::Commit() {
  LETHE_CHECK(!temp_.empty());
  if (::fsync(fd_) != 0) Fail(path_, ": cannot write: ", std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  if (std::rename(temp_.c_str(), path_.c_str()) != 0)
    Fail(path_, ": cannot rename ", Quote(temp_), " into place: ", std::strerror(errno));
  committed_ = true;
}

}  // namespace lethe::cli
