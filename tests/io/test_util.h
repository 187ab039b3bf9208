// Helpers shared by the io tests: a per-test temporary directory, byte-level file
// writers, an assertion on lethe::Error messages, and a small zip writer able to
// produce malformed archives on purpose.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"

namespace lethe::io::testing {

inline std::string FixturePath(const std::string& name) {
  return std::string(LETHE_IO_TEST_DATA) + "/" + name;
}

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "lethe_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) +
                       "_" + (info ? info->name() : "none");
    for (char& c : name)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
    dir_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::create_directories(dir_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  const std::filesystem::path& dir() const { return dir_; }
  // Names of the entries in the directory, sorted.
  std::vector<std::string> List() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::filesystem::path dir_;
};

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

template <typename T>
void PutLe(std::string* out, T value, int bytes = sizeof(T)) {
  for (int i = 0; i < bytes; ++i)
    out->push_back(static_cast<char>(static_cast<uint64_t>(value) >> (8 * i)));
}

// Runs `statement`, expecting a lethe::Error whose message is one line starting with
// `prefix` (the file path) and containing `phrase`.
#define EXPECT_LETHE_ERROR(statement, prefix, phrase)                        \
  do {                                                                       \
    try {                                                                    \
      statement;                                                             \
      ADD_FAILURE() << "no lethe::Error from " #statement;                   \
    } catch (const ::lethe::Error& e) {                                      \
      const std::string message = e.what();                                  \
      EXPECT_EQ(message.rfind(std::string(prefix) + ":", 0), 0u) << message; \
      EXPECT_NE(message.find(phrase), std::string::npos) << message;         \
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;           \
    }                                                                        \
  } while (0)

// Raw deflate (no zlib header), as zip method 8 stores it.
inline std::string Deflate(const std::string& data) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Builds zip archives member by member; each field can be overridden to craft a
// malformed archive.
struct ZipMember {
  std::string name;
  std::string data;  // uncompressed
  uint16_t method = 0;
  uint16_t flags = 0;
  bool zip64_local = false;    // saturated sizes in the local header + zip64 extra
  bool zip64_central = false;  // saturated sizes/offset in the central header + zip64 extra
  int64_t declared_size = -1;  // uncompressed size to declare; -1: the true size
  bool bad_crc = false;
  std::string payload_override;  // compressed bytes to store instead of the real ones
  bool use_payload_override = false;
};

inline std::string BuildZip(const std::vector<ZipMember>& members, bool zip64_end = false) {
  std::string out, central;
  for (const ZipMember& m : members) {
    const std::string payload = m.use_payload_override ? m.payload_override
                                : m.method == 8        ? Deflate(m.data)
                                                       : m.data;
    uint32_t crc = static_cast<uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(m.data.data()), static_cast<uInt>(m.data.size())));
    if (m.bad_crc) crc ^= 1;
    const uint64_t usize =
        m.declared_size >= 0 ? static_cast<uint64_t>(m.declared_size) : m.data.size();
    const uint64_t csize = payload.size();
    const uint64_t offset = out.size();
    std::string local_extra;
    if (m.zip64_local) {
      PutLe<uint16_t>(&local_extra, 1);
      PutLe<uint16_t>(&local_extra, 16);
      PutLe<uint64_t>(&local_extra, usize);
      PutLe<uint64_t>(&local_extra, csize);
    }
    PutLe<uint32_t>(&out, 0x04034b50);
    PutLe<uint16_t>(&out, m.zip64_local ? 45 : 20);
    PutLe<uint16_t>(&out, m.flags);
    PutLe<uint16_t>(&out, m.method);
    PutLe<uint32_t>(&out, 0);  // time, date
    PutLe<uint32_t>(&out, crc);
    PutLe<uint32_t>(&out, m.zip64_local ? 0xffffffffu : static_cast<uint32_t>(csize));
    PutLe<uint32_t>(&out, m.zip64_local ? 0xffffffffu : static_cast<uint32_t>(usize));
    PutLe<uint16_t>(&out, m.name.size());
    PutLe<uint16_t>(&out, local_extra.size());
    out += m.name + local_extra + payload;

    std::string central_extra;
    if (m.zip64_central) {
      PutLe<uint16_t>(&central_extra, 1);
      PutLe<uint16_t>(&central_extra, 24);
      PutLe<uint64_t>(&central_extra, usize);
      PutLe<uint64_t>(&central_extra, csize);
      PutLe<uint64_t>(&central_extra, offset);
    }
    PutLe<uint32_t>(&central, 0x02014b50);
    PutLe<uint16_t>(&central, 45);
    PutLe<uint16_t>(&central, 45);
    PutLe<uint16_t>(&central, m.flags);
    PutLe<uint16_t>(&central, m.method);
    PutLe<uint32_t>(&central, 0);
    PutLe<uint32_t>(&central, crc);
    PutLe<uint32_t>(&central, m.zip64_central ? 0xffffffffu : static_cast<uint32_t>(csize));
    PutLe<uint32_t>(&central, m.zip64_central ? 0xffffffffu : static_cast<uint32_t>(usize));
    PutLe<uint16_t>(&central, m.name.size());
    PutLe<uint16_t>(&central, central_extra.size());
    PutLe<uint16_t>(&central, 0);  // comment
    PutLe<uint16_t>(&central, 0);  // disk
    PutLe<uint16_t>(&central, 0);  // internal attributes
    PutLe<uint32_t>(&central, 0);  // external attributes
    PutLe<uint32_t>(&central, m.zip64_central ? 0xffffffffu : static_cast<uint32_t>(offset));
    central += m.name + central_extra;
  }
  const uint64_t cd_offset = out.size();
  out += central;
  if (zip64_end) {
    const uint64_t record = out.size();
    PutLe<uint32_t>(&out, 0x06064b50);
    PutLe<uint64_t>(&out, 44);
    PutLe<uint16_t>(&out, 45);
    PutLe<uint16_t>(&out, 45);
    PutLe<uint32_t>(&out, 0);
    PutLe<uint32_t>(&out, 0);
    PutLe<uint64_t>(&out, members.size());
    PutLe<uint64_t>(&out, members.size());
    PutLe<uint64_t>(&out, central.size());
    PutLe<uint64_t>(&out, cd_offset);
    PutLe<uint32_t>(&out, 0x07064b50);
    PutLe<uint32_t>(&out, 0);
    PutLe<uint64_t>(&out, record);
    PutLe<uint32_t>(&out, 1);
  }
  PutLe<uint32_t>(&out, 0x06054b50);
  PutLe<uint16_t>(&out, 0);
  PutLe<uint16_t>(&out, 0);
  PutLe<uint16_t>(&out, zip64_end ? 0xffff : members.size());
  PutLe<uint16_t>(&out, zip64_end ? 0xffff : members.size());
  PutLe<uint32_t>(&out, zip64_end ? 0xffffffffu : static_cast<uint32_t>(central.size()));
  PutLe<uint32_t>(&out, zip64_end ? 0xffffffffu : static_cast<uint32_t>(cd_offset));
  PutLe<uint16_t>(&out, 0);
  return out;
}

}  // namespace lethe::io::testing
