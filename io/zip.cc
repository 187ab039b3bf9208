#include "io/zip.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "common/quote.h"

namespace lethe::io::zip {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEndSize = 22, kZip64EndSize = 56, kZip64LocatorSize = 20;
constexpr size_t kCentralSize = 46, kLocalSize = 30;
constexpr uint64_t kMaxComment = 65535;
constexpr uint16_t kFlagEncrypted = 1 << 0, kFlagDataDescriptor = 1 << 3,
                   kFlagStrongEncryption = 1 << 6;

uint64_t Le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
const unsigned char* U(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// The ZIP64 extended information extra field (id 0x0001) holds, in this order, only
// the values whose 32-bit (16-bit for the disk) field is saturated.
struct Zip64Values {
  uint64_t* uncompressed;
  uint64_t* compressed;
  uint64_t* offset;  // nullptr in local headers
};

void ApplyZip64Extra(const unsigned char* extra, size_t size, Zip64Values v, bool local,
                     const std::string& where) {
  size_t pos = 0;
  while (pos + 4 <= size) {
    const uint64_t id = Le(extra + pos, 2), len = Le(extra + pos + 2, 2);
    pos += 4;
    if (len > size - pos) Fail(where, ": extra field runs past its header");
    if (id == 0x0001) {
      const unsigned char* p = extra + pos;
      size_t left = len;
      auto take = [&](uint64_t* field) {
        // Local headers must carry both sizes once either is saturated (APPNOTE 4.5.3).
        if (!field || (*field != 0xffffffff && !local)) return;
        if (left < 8) Fail(where, ": truncated zip64 extra field");
        *field = Le(p, 8);
        p += 8;
        left -= 8;
      };
      take(v.uncompressed);
      take(v.compressed);
      take(v.offset);
      return;
    }
    pos += len;
  }
}

}  // namespace

std::vector<Entry> ReadDirectory(const InputFile& file) {
  const std::string& path = file.path();
  const uint64_t size = file.size();
  if (size < kEndSize) Fail(path, ": not a zip archive (", size, " bytes)");

  // The end record is the last 22 bytes plus a comment of at most 65535 bytes: scan
  // back for its signature, accepting it only if its comment ends exactly at EOF.
  const uint64_t tail_size = std::min<uint64_t>(size, kEndSize + kMaxComment);
  const uint64_t tail_start = size - tail_size;
  const std::string tail = file.ReadString(tail_start, static_cast<size_t>(tail_size));
  size_t end_pos = std::string::npos;
  for (size_t i = tail.size() - kEndSize + 1; i-- > 0;) {
    if (Le(U(tail) + i, 4) == kEndSig && i + kEndSize + Le(U(tail) + i + 20, 2) == tail.size()) {
      end_pos = i;
      break;
    }
  }
  if (end_pos == std::string::npos)
    Fail(path, ": not a zip archive (no end of central directory record)");
  const unsigned char* end = U(tail) + end_pos;
  uint64_t end_offset = tail_start + end_pos;
  if (Le(end + 4, 2) != 0 || Le(end + 6, 2) != 0)
    Fail(path, ": multi-disk zip archives are not supported");
  uint64_t entries = Le(end + 10, 2), cd_size = Le(end + 12, 4), cd_offset = Le(end + 16, 4);
  uint64_t cd_limit = end_offset;  // the central directory ends before the end record(s)

  if (end_offset >= kZip64LocatorSize) {
    unsigned char loc[kZip64LocatorSize];
    file.ReadAt(end_offset - kZip64LocatorSize, loc, sizeof loc);
    if (Le(loc, 4) == kZip64LocatorSig) {
      const uint64_t z64 = Le(loc + 8, 8);
      if (z64 > end_offset - kZip64LocatorSize ||
          end_offset - kZip64LocatorSize - z64 < kZip64EndSize)
        Fail(path, ": zip64 end record offset ", z64, " is out of range");
      unsigned char rec[kZip64EndSize];
      file.ReadAt(z64, rec, sizeof rec);
      if (Le(rec, 4) != kZip64EndSig) Fail(path, ": bad zip64 end of central directory record");
      if (Le(rec + 16, 4) != 0 || Le(rec + 20, 4) != 0)
        Fail(path, ": multi-disk zip archives are not supported");
      entries = Le(rec + 32, 8);
      cd_size = Le(rec + 40, 8);
      cd_offset = Le(rec + 48, 8);
      cd_limit = z64;
    }
  }
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
    Fail(path, ": central directory (offset ", cd_offset, ", size ", cd_size,
         ") lies outside the file");
  if (entries > cd_size / kCentralSize)
    Fail(path, ": central directory of ", cd_size, " bytes cannot hold ", entries, " entries");

  const std::string cd = file.ReadString(cd_offset, static_cast<size_t>(cd_size));
  std::vector<Entry> result;
  size_t pos = 0;
  for (uint64_t n = 0; n < entries; ++n) {
    if (cd.size() - pos < kCentralSize || Le(U(cd) + pos, 4) != kCentralSig)
      Fail(path, ": corrupt central directory entry ", n);
    const unsigned char* h = U(cd) + pos;
    const uint64_t name_len = Le(h + 28, 2), extra_len = Le(h + 30, 2), comment_len = Le(h + 32, 2);
    if (cd.size() - pos - kCentralSize < name_len + extra_len + comment_len)
      Fail(path, ": corrupt central directory entry ", n);
    Entry e;
    e.name.assign(cd, pos + kCentralSize, name_len);
    const std::string where = path + ": member " + Quote(e.name);
    const uint64_t flags = Le(h + 8, 2);
    e.method = static_cast<uint16_t>(Le(h + 10, 2));
    e.crc32 = static_cast<uint32_t>(Le(h + 16, 4));
    e.compressed_size = Le(h + 20, 4);
    e.uncompressed_size = Le(h + 24, 4);
    uint64_t local_offset = Le(h + 42, 4);
    if (flags & (kFlagEncrypted | kFlagStrongEncryption) || e.method == 99)
      Fail(where, ": encrypted members are not supported");
    if (e.method != 0 && e.method != 8)
      Fail(where, ": unsupported compression method ", e.method, " (only stored and deflate)");
    if (Le(h + 34, 2) != 0 && Le(h + 34, 2) != 0xffff)
      Fail(where, ": multi-disk zip archives are not supported");
    ApplyZip64Extra(h + kCentralSize + name_len, extra_len,
                    {&e.uncompressed_size, &e.compressed_size, &local_offset}, false, where);
    pos += kCentralSize + name_len + extra_len + comment_len;

    // The local header repeats name, method and (unless a data descriptor follows the
    // data) CRC and sizes; they must agree with the central directory.
    if (local_offset > cd_offset || cd_offset - local_offset < kLocalSize)
      Fail(where, ": local header offset ", local_offset, " is out of range");
    unsigned char local[kLocalSize];
    file.ReadAt(local_offset, local, kLocalSize);
    if (Le(local, 4) != kLocalSig) Fail(where, ": bad local header signature");
    const uint64_t lname_len = Le(local + 26, 2), lextra_len = Le(local + 28, 2);
    if (cd_offset - local_offset - kLocalSize < lname_len + lextra_len)
      Fail(where, ": local header runs into the central directory");
    const std::string lrest =
        file.ReadString(local_offset + kLocalSize, static_cast<size_t>(lname_len + lextra_len));
    if (lrest.compare(0, lname_len, e.name) != 0 || lname_len != name_len)
      Fail(where, ": local header names a different file");
    const uint64_t lflags = Le(local + 6, 2);
    if (Le(local + 8, 2) != e.method) Fail(where, ": local header disagrees on the method");
    if (lflags & (kFlagEncrypted | kFlagStrongEncryption))
      Fail(where, ": encrypted members are not supported");
    if (!(lflags & kFlagDataDescriptor)) {
      uint64_t lcrc = Le(local + 14, 4), lcsize = Le(local + 18, 4), lusize = Le(local + 22, 4);
      const bool z64 = lcsize == 0xffffffff || lusize == 0xffffffff;
      if (z64)
        ApplyZip64Extra(U(lrest) + lname_len, lextra_len, {&lusize, &lcsize, nullptr}, true, where);
      if (lcrc != e.crc32 || lcsize != e.compressed_size || lusize != e.uncompressed_size)
        Fail(where, ": local header disagrees with the central directory");
    }
    e.local_offset = local_offset;
    e.data_offset = local_offset + kLocalSize + lname_len + lextra_len;
    if (e.compressed_size > cd_offset - e.data_offset)
      Fail(where, ": compressed size ", e.compressed_size, " runs past the member data");
    result.push_back(std::move(e));
  }

  // Members may not share bytes: 250 directory entries over one 4 MiB payload made a
  // 4.3 MB file yield 1.2 GB. Sorted by offset, each member (local header and data)
  // must end before the next begins.
  std::vector<const Entry*> by_offset;
  for (const Entry& e : result) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->local_offset < b->local_offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Entry& before = *by_offset[i - 1];
    if (by_offset[i]->local_offset < before.data_offset + before.compressed_size)
      Fail(path, ": member ", Quote(by_offset[i]->name), " overlaps member ", Quote(before.name));
  }
  return result;
}

MemberReader::MemberReader(const InputFile& file, const Entry& entry) : file_(file), entry_(entry) {
  if (entry.method == 0) {
    if (entry.uncompressed_size != entry.compressed_size)
      Error("stored member has compressed size " + std::to_string(entry.compressed_size) +
            " but uncompressed size " + std::to_string(entry.uncompressed_size));
    return;
  }
  // compressed_size is bounded by the file size, so this cannot overflow.
  if (entry.uncompressed_size > kMaxRatio * entry.compressed_size + kRatioSlack)
    Error("declared uncompressed size " + std::to_string(entry.uncompressed_size) +
          " is implausible for " + std::to_string(entry.compressed_size) +
          " compressed bytes (zip bomb?)");
  if (inflateInit2(&z_, -MAX_WBITS) != Z_OK) Error("cannot initialise zlib");  // raw deflate
  z_open_ = true;
}

MemberReader::~MemberReader() {
  if (z_open_) inflateEnd(&z_);
}

void MemberReader::Error(const std::string& problem) const {
  Fail(file_.path(), ": member ", Quote(entry_.name), ": ", problem);
}

void MemberReader::Refill() {
  const uint64_t chunk = std::min<uint64_t>(entry_.compressed_size - consumed_, 1 << 16);
  input_.resize(static_cast<size_t>(chunk));
  file_.ReadAt(entry_.data_offset + consumed_, input_.data(), input_.size());
  consumed_ += chunk;
  z_.next_in = input_.data();
  z_.avail_in = static_cast<uInt>(chunk);
}

void MemberReader::Read(void* out, size_t size) {
  if (size > entry_.uncompressed_size - produced_)
    Error("data runs past the declared size " + std::to_string(entry_.uncompressed_size));
  auto* dst = static_cast<unsigned char*>(out);
  if (entry_.method == 0) {
    if (size) file_.ReadAt(entry_.data_offset + produced_, dst, size);
  } else {
    size_t done = 0;
    while (done < size) {
      if (stream_end_) Error("decompressed data is shorter than the declared size");
      if (z_.avail_in == 0) {
        if (consumed_ == entry_.compressed_size) Error("truncated deflate stream");
        Refill();
      }
      z_.next_out = dst + done;
      z_.avail_out = static_cast<uInt>(std::min<size_t>(size - done, 1u << 30));
      const uInt before = z_.avail_out;
      const int ret = inflate(&z_, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        stream_end_ = true;
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
        Error(std::string("corrupt deflate data: ") + (z_.msg ? z_.msg : "zlib error"));
      }
      done += before - z_.avail_out;
    }
  }
  if (size) crc_ = static_cast<uint32_t>(crc32_z(crc_, dst, size));  // crc32_z(NULL) resets
  produced_ += size;
}

void MemberReader::Finish() {
  if (produced_ != entry_.uncompressed_size)
    Error("decompressed data is shorter than the declared size");
  if (entry_.method == 8) {
    // The deflate stream must end here: one more byte of output means the member is
    // longer than declared.
    unsigned char extra;
    while (!stream_end_) {
      if (z_.avail_in == 0) {
        if (consumed_ == entry_.compressed_size) Error("truncated deflate stream");
        Refill();
      }
      z_.next_out = &extra;
      z_.avail_out = 1;
      const int ret = inflate(&z_, Z_NO_FLUSH);
      if (z_.avail_out == 0) Error("decompressed data is longer than the declared size");
      if (ret == Z_STREAM_END)
        stream_end_ = true;
      else if (ret != Z_OK && ret != Z_BUF_ERROR)
        Error(std::string("corrupt deflate data: ") + (z_.msg ? z_.msg : "zlib error"));
    }
    if (z_.avail_in != 0 || consumed_ != entry_.compressed_size)
      Error("compressed data continues after the end of the deflate stream");
  }
  if (crc_ != entry_.crc32) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "CRC-32 mismatch (stored %08x, computed %08x)", entry_.crc32,
                  crc_);
    Error(buf);
  }
}

}  // namespace lethe::io::zip
