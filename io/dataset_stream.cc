#include "io/dataset_stream.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/error.h"
#include "common/quote.h"
#include "io/dataset_arrays.h"
#include "io/input_file.h"
#include "io/npy.h"
#include "io/npy_format.h"
#include "io/npz_member.h"
#include "io/zip.h"

namespace lethe::io {
namespace {

// A temporary file for an inflated X: created here, removed by the guard unless released
// (once it is open for reading it is unlinked at once).
struct TempFile {
  std::string path;
  int fd = -1;
  explicit TempFile(const std::string& data_path) {
    const char* dir = std::getenv("TMPDIR");
    path = std::string(dir && *dir ? dir : "/tmp") + "/lethe-X-XXXXXX";
    fd = ::mkstemp(path.data());
    if (fd < 0)
      Fail(data_path, ": cannot create a temporary file for its deflated X in ",
           Quote(path.substr(0, path.rfind('/'))), ": ", std::strerror(errno),
           " (set TMPDIR, or save the data with numpy.savez, uncompressed)");
  }
  void Write(const void* data, size_t size, const std::string& data_path) const {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t w = ::write(fd, p, size);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        Fail(data_path, ": cannot write its inflated X to ", Quote(path), ": ",
             std::strerror(errno), " (set TMPDIR to a larger disk)");
      p += w, size -= static_cast<size_t>(w);
    }
  }
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!path.empty()) ::unlink(path.c_str());
  }
};

// Row of the first non-finite value among count rows of width d, or -1.
int64_t FirstNonFinite(const double* v, int64_t count, int64_t d) {
  for (int64_t i = 0; i < count * d; ++i)
    if (!std::isfinite(v[i])) return i / d;
  return -1;
}

}  // namespace

int64_t NpzXElements(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext != ".npz") return -1;
  InputFile file(path);
  for (const zip::Entry& e : zip::ReadDirectory(file)) {
    if (e.name != "X.npy") continue;
    zip::MemberReader reader(file, e);
    uint64_t data_start = 0;
    const npy::Header h =
        ReadNpyMemberHeader(reader, e, path + ": member " + Quote(e.name), &data_start);
    int64_t elements = 1;
    for (int64_t s : h.shape) elements *= s;  // bounded by data_bytes, checked against the file
    return elements;
  }
  return -1;
}

std::unique_ptr<StreamedX> StreamedX::Open(const std::string& path, Dataset* meta,
                                           int64_t block_bytes,
                                           const std::function<void(int64_t, int64_t)>& progress) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext == ".csv")
    Fail(path, ": a CSV file cannot be streamed by rows (--max-memory): its rows have no "
               "offsets; save the data as .npz (numpy.savez)");
  if (ext != ".npz") Fail(path, ": unsupported dataset format '", ext, "' (expected .npz or .csv)");

  std::unique_ptr<StreamedX> x(new StreamedX);
  x->path_ = path;
  InputFile file(path);
  const std::vector<zip::Entry> entries = zip::ReadDirectory(file);
  const zip::Entry* entry = &XMember(entries, path);
  const std::string what = path + ": member " + Quote(entry->name);

  zip::MemberReader reader(file, *entry);
  uint64_t data_start = 0;
  const npy::Header header = ReadNpyMemberHeader(reader, *entry, what, &data_start);
  if (header.fortran_order && header.shape.size() > 1)
    Fail(path, ": X is stored in Fortran order, which cannot be read by rows (--max-memory); "
               "save it C-ordered (numpy.ascontiguousarray)");

  // y and ids whole, and every check LoadDataset makes of them and of X's shape and dtype.
  *meta = NpzDatasetMeta(path, header);
  x->dtype_ = header.dtype;
  x->n_ = meta->n;
  x->d_ = meta->d;

  // The opening pass: X's finiteness checked block by block (and a deflated X inflated).
  const int64_t rows_per_block =
      std::max<int64_t>(1, block_bytes / std::max<int64_t>(1, x->row_bytes() + 8 * x->d_));
  std::vector<double> values;
  const bool stored = entry->method == 0;
  std::unique_ptr<TempFile> temp;
  if (stored) {
    x->data_at_ = entry->data_offset + data_start;
    x->file_ = std::make_unique<InputFile>(path);
  } else {
    temp = std::make_unique<TempFile>(path);
    x->inflated_ = true;
  }
  for (int64_t row = 0; row < x->n_; row += rows_per_block) {
    const int64_t count = std::min(rows_per_block, x->n_ - row);
    values.resize(static_cast<size_t>(count * x->d_));
    if (stored) {
      x->ReadRows(row, count, values.data());
    } else {
      x->block_.dtype = x->dtype_;
      x->block_.shape = {count * x->d_};
      x->block_.bytes.resize(static_cast<size_t>(count * x->row_bytes()));
      reader.Read(x->block_.bytes.data(), x->block_.bytes.size());
      temp->Write(x->block_.bytes.data(), x->block_.bytes.size(), path);
      x->block_.ToDouble(path + ": X", values.data());
    }
    if (const int64_t bad = FirstNonFinite(values.data(), count, x->d_); bad >= 0)
      Fail(path, ": X contains NaN or Inf at row ", row + bad);
    if (progress) progress(row + count, x->n_);
  }
  if (!stored) {
    reader.Finish();  // the member's end and its CRC-32
    if (::fsync(temp->fd) != 0 && errno != EINVAL)
      Fail(path, ": cannot write its inflated X to ", Quote(temp->path), ": ", std::strerror(errno));
    x->file_ = std::make_unique<InputFile>(temp->path);
    x->data_at_ = 0;
    // temp's destructor closes its descriptor and unlinks the path; file_ keeps its own
    // descriptor, so the inflated data live exactly as long as this object.
  }
  return x;
}

StreamedX::~StreamedX() = default;

void StreamedX::ReadRows(int64_t row, int64_t count, double* out) const {
  LETHE_CHECK(row >= 0 && count >= 0 && row + count <= n_);
  if (count == 0) return;
  block_.dtype = dtype_;
  block_.shape = {count * d_};
  block_.bytes.resize(static_cast<size_t>(count * row_bytes()));
  file_->ReadAt(data_at_ + static_cast<uint64_t>(row) * static_cast<uint64_t>(row_bytes()),
                block_.bytes.data(), block_.bytes.size());
  block_.ToDouble(path_ + ": X", out);
}

}  // namespace lethe::io
