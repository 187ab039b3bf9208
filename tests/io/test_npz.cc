#include <gtest/gtest.h>

#include <random>

#include "io/npy.h"
#include "test_util.h"

namespace lethe::io {
namespace {

using testing::BuildZip;
using testing::FixturePath;
using testing::TempDir;
using testing::WriteBytes;
using testing::ZipMember;

std::string NpyOf(const std::vector<double>& values) {
  return SerializeNpy(
      Array::FromDouble(values, {static_cast<int64_t>(values.size())}, DType::kF64));
}

ZipMember Member(const std::string& name, const std::string& data, uint16_t method) {
  ZipMember m;
  m.name = name;
  m.data = data;
  m.method = method;
  return m;
}

TEST(Npz, NumpySavez) {
  const std::map<std::string, Array> a = ReadNpz(FixturePath("savez.npz"));
  ASSERT_EQ(a.size(), 3u);
  const Array& X = a.at("X");
  EXPECT_EQ(X.dtype, DType::kF64);
  EXPECT_EQ(X.shape, (std::vector<int64_t>{4, 3}));
  const std::vector<double> x = X.ToDouble("X");
  for (int i = 0; i < 12; ++i) EXPECT_EQ(x[i], (i + 0.5) / 4);
  EXPECT_EQ(a.at("y").ToInt64("y"), (std::vector<int64_t>{0, 1, 2, 1}));
  EXPECT_EQ(a.at("ids").ToInt64("ids"), (std::vector<int64_t>{10, 11, 12, 13}));
}

TEST(Npz, NumpySavezCompressed) {
  const std::map<std::string, Array> a = ReadNpz(FixturePath("savez_compressed.npz"));
  EXPECT_EQ(a.at("X").dtype, DType::kF32);
  const std::vector<double> x = a.at("X").ToDouble("X");
  for (int i = 0; i < 12; ++i) EXPECT_EQ(x[i], (i + 0.5) / 4);
  EXPECT_EQ(a.at("y").shape, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(a.at("y").ToDouble("y")[7], 1.75);
  EXPECT_EQ(a.at("ids").dtype, DType::kI32);

  const std::vector<double> big =
      ReadNpz(FixturePath("big_compressed.npz")).at("big").ToDouble("b");
  ASSERT_EQ(big.size(), 32768u);
  for (size_t i = 0; i < big.size(); ++i) ASSERT_EQ(big[i], static_cast<double>(i % 1000));
}

TEST(Npz, CraftedArchivesReadBack) {
  TempDir tmp;
  // Incompressible data, so the deflate stream spans several 64 KiB read chunks.
  std::mt19937_64 rng(7);
  std::vector<double> noise(40000);
  for (double& v : noise) v = static_cast<double>(rng()) / 3.0;
  ZipMember big = Member("noise.npy", NpyOf(noise), 8);
  ZipMember local64 = Member("local64.npy", NpyOf({1, 2}), 8);
  local64.zip64_local = true;
  ZipMember central64 = Member("central64.npy", NpyOf({3}), 0);
  central64.zip64_central = true;
  central64.zip64_local = true;
  const std::string path = tmp.Path("crafted.npz");
  WriteBytes(path, BuildZip({big, local64, central64}, /*zip64_end=*/true));
  const std::map<std::string, Array> a = ReadNpz(path);
  EXPECT_EQ(a.at("noise").ToDouble("n"), noise);
  EXPECT_EQ(a.at("local64").ToDouble("l"), (std::vector<double>{1, 2}));
  EXPECT_EQ(a.at("central64").ToDouble("c"), (std::vector<double>{3}));
}

TEST(Npz, RejectsMalformedArchives) {
  TempDir tmp;
  const std::string npy = NpyOf({1, 2, 3, 4});
  struct Case {
    const char* label;
    std::string bytes;
    const char* phrase;
  };
  std::vector<Case> cases;
  const auto add = [&](const char* label, ZipMember m, const char* phrase) {
    cases.push_back({label, BuildZip({m}), phrase});
  };

  ZipMember bomb = Member("X.npy", npy, 8);
  bomb.declared_size = int64_t{1} << 40;  // a terabyte from a few dozen bytes
  bomb.zip64_central = bomb.zip64_local = true;
  add("bomb", bomb, "zip bomb");
  ZipMember lying = Member("X.npy", npy, 8);
  lying.declared_size = static_cast<int64_t>(npy.size()) + 8;
  add("declared_vs_header", lying, "but its npy header implies");
  ZipMember longer = Member("X.npy", npy + "tail", 8);
  longer.declared_size = static_cast<int64_t>(npy.size());
  add("longer_than_declared", longer, "longer than the declared size");
  ZipMember crc_stored = Member("X.npy", npy, 0);
  crc_stored.bad_crc = true;
  add("crc_stored", crc_stored, "CRC-32 mismatch");
  ZipMember crc_deflated = Member("X.npy", npy, 8);
  crc_deflated.bad_crc = true;
  add("crc_deflated", crc_deflated, "CRC-32 mismatch");
  ZipMember encrypted = Member("X.npy", npy, 0);
  encrypted.flags = 1;
  add("encrypted", encrypted, "encrypted members are not supported");
  ZipMember bzip2 = Member("X.npy", npy, 12);
  add("bzip2", bzip2, "unsupported compression method 12");
  ZipMember corrupt = Member("X.npy", npy, 8);
  corrupt.payload_override = std::string(40, '\xff');
  corrupt.use_payload_override = true;
  add("corrupt_deflate", corrupt, "corrupt deflate data");
  ZipMember cut = Member("X.npy", npy, 8);
  cut.payload_override = testing::Deflate(npy).substr(0, 20);
  cut.use_payload_override = true;
  add("truncated_deflate", cut, "deflate stream");
  ZipMember stored_sizes = Member("X.npy", npy, 0);
  stored_sizes.declared_size = 5;
  add("stored_sizes", stored_sizes, "stored member has compressed size");
  add("not_npy", Member("readme.txt", "hello", 0), "not an .npy file");
  add("bad_member", Member("X.npy", "garbage that is not npy", 0), "not an npy file");

  const std::string good = BuildZip({Member("X.npy", npy, 0)});
  cases.push_back({"duplicate", BuildZip({Member("X.npy", npy, 0), Member("X.npy", npy, 0)}),
                   "duplicate member"});
  cases.push_back({"empty_file", "", "not a zip archive"});
  cases.push_back({"cut_in_half", good.substr(0, good.size() / 2), "no end of central directory"});
  std::string cd_past_end = good;
  cd_past_end[cd_past_end.size() - 3] = '\x70';  // central directory offset far away
  cases.push_back({"cd_offset", cd_past_end, "lies outside the file"});
  std::string local_moved = good;
  local_moved[0] = 'X';  // break the local header signature
  cases.push_back({"local_sig", local_moved, "bad local header signature"});

  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = tmp.Path(std::string(c.label) + ".npz");
    WriteBytes(path, c.bytes);
    EXPECT_LETHE_ERROR(ReadNpz(path), path, c.phrase);
  }
}

}  // namespace
}  // namespace lethe::io
