// .npz = a zip archive of NAME.npy members (numpy.savez stores them, savez_compressed
// deflates them; both write ZIP64 extra fields in the local headers).
#include <algorithm>

#include "common/checked_alloc.h"
#include "common/error.h"
#include "common/quote.h"
#include "io/input_file.h"
#include "io/npy.h"
#include "io/npy_format.h"
#include "io/npz_member.h"
#include "io/zip.h"

namespace lethe::io {

npy::Header ReadNpyMemberHeader(zip::MemberReader& reader, const zip::Entry& entry,
                                const std::string& what, uint64_t* data_start) {
  const uint64_t size = entry.uncompressed_size;
  std::string first(static_cast<size_t>(std::min<uint64_t>(size, npy::kPreambleSize)), '\0');
  reader.Read(first.data(), first.size());
  const npy::Preamble preamble = npy::ParsePreamble(first, size, what);
  // `first` already holds the start of the dict (2 bytes for version 1.0).
  const size_t have = first.size() - preamble.header_start;
  if (preamble.header_size < have) Fail(what, ": malformed npy header: too short");
  std::string dict = first.substr(preamble.header_start);
  dict.resize(static_cast<size_t>(preamble.header_size));
  reader.Read(dict.data() + have, dict.size() - have);
  npy::Header header = npy::ParseHeader(dict, preamble, what);
  *data_start = preamble.header_start + preamble.header_size;
  if (size - *data_start != header.data_bytes)
    Fail(what, ": declared size ", size, " but its npy header implies ",
         *data_start + header.data_bytes, " bytes");
  return header;
}

namespace {

// Inflated bytes are written this much at a time into memory reserved (not touched) up
// front, so pages become resident only as data arrive: a corrupt stream fails having
// cost what it produced, not its declared size. Small enough to stay in cache while
// zlib writes over the zeros resize() puts there.
constexpr size_t kInflateChunk = size_t{1} << 20;

}  // namespace

std::map<std::string, Array> ReadNpz(const std::string& path,
                                     const std::optional<std::set<std::string>>& wanted) {
  InputFile file(path);
  const std::vector<zip::Entry> entries = zip::ReadDirectory(file);
  const std::string suffix = ".npy";
  std::set<std::string> keys;
  std::vector<const zip::Entry*> to_read;
  uint64_t total = 0;
  for (const zip::Entry& entry : entries) {
    const std::string what = path + ": member " + Quote(entry.name);
    if (entry.name.size() <= suffix.size() ||
        entry.name.compare(entry.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      Fail(what, ": not an .npy file");
    const std::string key = entry.name.substr(0, entry.name.size() - suffix.size());
    if (!keys.insert(key).second) Fail(what, ": duplicate member");
    if (wanted && !wanted->count(key)) continue;  // never inflated, never kept
    { zip::MemberReader ratio_check(file, entry); }  // refuses one member's zip-bomb ratio
    to_read.push_back(&entry);
    // No overflow: each size is bounded by its ratio check, and members do not overlap.
    total += entry.uncompressed_size;
  }
  const uint64_t budget = zip::kMaxTotalRatio * file.size() + zip::kRatioSlack;
  if (total > budget)
    Fail(path, ": the members to read declare ", total, " bytes uncompressed, more than ",
         zip::kMaxTotalRatio, "x the file's ", file.size(),
         " bytes (zip bomb? if the data are real, save them with numpy.savez, uncompressed)");

  std::map<std::string, Array> arrays;
  for (const zip::Entry* entry_ptr : to_read) {
    const zip::Entry& entry = *entry_ptr;
    const std::string what = path + ": member " + Quote(entry.name);
    const std::string key = entry.name.substr(0, entry.name.size() - suffix.size());

    // The npy header says how many bytes the member must hold. Check that against the
    // zip's declared size before allocating anything for the data.
    zip::MemberReader reader(file, entry);
    uint64_t data_start = 0;
    npy::Header header = ReadNpyMemberHeader(reader, entry, what, &data_start);
    HostVector<uint8_t> data;
    ReserveChecked(data, header.data_bytes, what);
    while (data.size() < header.data_bytes) {
      const size_t done = data.size();
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(header.data_bytes - done,
                                                                  kInflateChunk));
      data.resize(done + chunk);  // within capacity: no reallocation
      reader.Read(data.data() + done, chunk);
    }
    reader.Finish();
    arrays.emplace(key, npy::FromData(std::move(header), std::move(data)));
  }
  return arrays;
}

const zip::Entry& XMember(const std::vector<zip::Entry>& entries, const std::string& path) {
  const zip::Entry* entry = nullptr;
  for (const zip::Entry& e : entries)
    if (e.name == "X.npy") entry = &e;
  if (!entry) Fail(path, ": missing array 'X'");
  return *entry;
}

}  // namespace lethe::io
