// .npz = a zip archive of NAME.npy members (numpy.savez stores them, savez_compressed
// deflates them; both write ZIP64 extra fields in the local headers).
#include <algorithm>

#include "common/error.h"
#include "io/input_file.h"
#include "io/npy.h"
#include "io/npy_format.h"
#include "io/zip.h"

namespace lethe::io {

std::map<std::string, Array> ReadNpz(const std::string& path) {
  InputFile file(path);
  const std::vector<zip::Entry> entries = zip::ReadDirectory(file);
  std::map<std::string, Array> arrays;
  for (const zip::Entry& entry : entries) {
    const std::string what = path + ": member '" + entry.name + "'";
    const std::string suffix = ".npy";
    if (entry.name.size() <= suffix.size() ||
        entry.name.compare(entry.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      Fail(what, ": not an .npy file");
    const std::string key = entry.name.substr(0, entry.name.size() - suffix.size());
    if (arrays.count(key)) Fail(what, ": duplicate member");

    // The npy header says how many bytes the member must hold. Check that against the
    // zip's declared size before allocating anything for the data.
    zip::MemberReader reader(file, entry);
    const uint64_t total = entry.uncompressed_size;
    std::string first(static_cast<size_t>(std::min<uint64_t>(total, npy::kPreambleSize)), '\0');
    reader.Read(first.data(), first.size());
    const npy::Preamble preamble = npy::ParsePreamble(first, total, what);
    // `first` already holds the start of the dict (2 bytes for version 1.0).
    const size_t have = first.size() - preamble.header_start;
    if (preamble.header_size < have) Fail(what, ": malformed npy header: too short");
    std::string dict = first.substr(preamble.header_start);
    dict.resize(static_cast<size_t>(preamble.header_size));
    reader.Read(dict.data() + have, dict.size() - have);
    npy::Header header = npy::ParseHeader(dict, preamble, what);
    const uint64_t data_start = preamble.header_start + preamble.header_size;
    if (total - data_start != header.data_bytes)
      Fail(what, ": declared size ", total, " but its npy header implies ",
           data_start + header.data_bytes, " bytes");
    HostVector<uint8_t> data(static_cast<size_t>(header.data_bytes));
    reader.Read(data.data(), data.size());
    reader.Finish();
    arrays.emplace(key, npy::FromData(std::move(header), std::move(data)));
  }
  return arrays;
}

}  // namespace lethe::io
