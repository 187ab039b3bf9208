// Hostile input at the io layer (issue 13, docs/security.md): escaping of quoted input,
// bounded JSON, checked allocations, npz amplification, streamed CSV rows.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/checked_alloc.h"
#include "common/quote.h"
#include "io/csv.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "io/untrusted_json.h"
#include "tests/io/test_util.h"

namespace lethe::io {
namespace {

using testing::BuildZip;
using testing::TempDir;
using testing::WriteBytes;
using testing::ZipMember;

TEST(Escape, ControlCharactersBecomeVisible) {
  EXPECT_EQ(Escape("plain name.npy"), "plain name.npy");
  EXPECT_EQ(Escape("a\nb\r\tc"), "a\\nb\\r\\tc");
  EXPECT_EQ(Escape(std::string("\x1b[2J\0z", 6)), "\\x1b[2J\\x00z");
  EXPECT_EQ(Escape("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 é is printable
  EXPECT_EQ(Escape("\xc2\x9b"
                   "2J"),
            "\\xc2\\x9b2J");                             // C1 CSI is not
  EXPECT_EQ(Escape("\xff\xfe"), "\\xff\\xfe");           // not UTF-8
  EXPECT_EQ(Escape("\xe0\x80\x80"), "\\xe0\\x80\\x80");  // overlong
  EXPECT_EQ(Quote("x\ny"), "'x\\ny'");
  EXPECT_EQ(Escape(Escape("a\nb")), Escape("a\nb"));  // idempotent
}

TEST(Escape, LongTextIsCut) {
  const std::string line = Escape(std::string(50'000'000, 'x'));
  EXPECT_LT(line.size(), kMaxQuotedBytes + 40);
  EXPECT_NE(line.find("... (50000000 bytes)"), std::string::npos) << line;
}

TEST(UntrustedJson, DepthIsBounded) {
  const auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_NO_THROW(ParseUntrustedJson(nested(kMaxJsonDepth), "f", "header "));
  EXPECT_LETHE_ERROR(ParseUntrustedJson(nested(kMaxJsonDepth + 1), "f", "header "), "f",
                     "header nests deeper than 16 levels");
  // The reproducer: 66,000 levels overflowed the stack when the value was printed.
  EXPECT_LETHE_ERROR(ParseUntrustedJson("{\"a\": " + nested(66000) + "}", "f", ""), "f",
                     "nests deeper");
}

TEST(UntrustedJson, ValueCountIsBounded) {
  std::string many = "[";
  for (uint64_t i = 0; i <= kMaxJsonValues; ++i) many += "0,";
  many.back() = ']';
  EXPECT_LETHE_ERROR(ParseUntrustedJson(many, "f", "header "), "f",
                     "header has more than 1048576 JSON values");
}

TEST(UntrustedJson, DuplicateKeysAndSyntaxErrorsAreOneLine) {
  EXPECT_LETHE_ERROR(ParseUntrustedJson("{\"a\\n\": 1, \"a\\n\": 2}", "f", "header "), "f",
                     "header has duplicate key \"a\\n\"");
  EXPECT_LETHE_ERROR(ParseUntrustedJson("{\"a\": tru\x1b[2J}", "f", ""), "f", "not valid JSON");
}

TEST(CheckedAlloc, OverflowAndLimitAreErrors) {
  std::vector<double> v;
  EXPECT_LETHE_ERROR(ResizeChecked(v, uint64_t{1} << 62, "f: X"), "f: X", "overflow 64 bits");
  EXPECT_LETHE_ERROR(ResizeChecked(v, (MemoryLimitBytes() / 8) + 1, "f: X"), "f: X",
                     "more than the");
  EXPECT_TRUE(v.empty());
  ResizeChecked(v, 10, "f: X");
  EXPECT_EQ(v.size(), 10u);
}

TEST(Safetensors, HostileNamesAreEscaped) {
  TempDir tmp;
  const std::string path = tmp.Path("m.safetensors");
  std::string header =
      "{\"w\\nlethe eval: ok\\u001b[2J\":{\"dtype\":\"F32\",\"shape\":[2],"
      "\"data_offsets\":[0,4]}}";
  std::string file;
  testing::PutLe<uint64_t>(&file, header.size());
  WriteBytes(path, file + header + std::string(4, '\0'));
  EXPECT_LETHE_ERROR(ReadSafetensors(path), path,
                     "tensor 'w\\nlethe eval: ok\\x1b[2J': data_offsets [0, 4] hold 4 bytes");
}

ZipMember Member(const std::string& name, const std::string& data, uint16_t method = 0) {
  ZipMember m;
  m.name = name;
  m.data = data;
  m.method = method;
  return m;
}

// A stored member whose data are another member's local header and data.
std::string OverlappingArchive() {
  const std::string inner =
      BuildZip({Member("y.npy", SerializeNpy(Array::FromInt64({0, 1}, {2})))});
  const size_t inner_local_size = inner.find("PK\x01\x02");
  const std::string x_name = "X.npy";
  std::string outer = BuildZip({Member(x_name, inner.substr(0, inner_local_size))});
  const size_t outer_local_size = outer.find("PK\x01\x02");
  const size_t outer_end = outer.find("PK\x05\x06");
  std::string central = outer.substr(outer_local_size, outer_end - outer_local_size);
  std::string y_central =
      inner.substr(inner_local_size, inner.find("PK\x05\x06") - inner_local_size);
  const uint32_t y_offset = static_cast<uint32_t>(30 + x_name.size());
  for (int i = 0; i < 4; ++i) y_central[42 + i] = static_cast<char>(y_offset >> (8 * i));
  central += y_central;
  std::string out = outer.substr(0, outer_local_size) + central;
  testing::PutLe<uint32_t>(&out, 0x06054b50);
  testing::PutLe<uint32_t>(&out, 0);
  testing::PutLe<uint16_t>(&out, 2);
  testing::PutLe<uint16_t>(&out, 2);
  testing::PutLe<uint32_t>(&out, static_cast<uint32_t>(central.size()));
  testing::PutLe<uint32_t>(&out, static_cast<uint32_t>(outer_local_size));
  testing::PutLe<uint16_t>(&out, 0);
  return out;
}

TEST(Npz, OverlappingMembersAreRefused) {
  TempDir tmp;
  const std::string path = tmp.Path("overlap.npz");
  WriteBytes(path, OverlappingArchive());
  EXPECT_LETHE_ERROR(ReadNpz(path), path, "member 'y.npy' overlaps member 'X.npy'");
}

TEST(Npz, OnlyWantedMembersAreRead) {
  TempDir tmp;
  const std::string path = tmp.Path("extra.npz");
  ZipMember junk = Member("junk.npy", std::string(1000, 'j'), 8);
  junk.payload_override = std::string(50, '\xff');  // not a deflate stream
  junk.use_payload_override = true;
  WriteBytes(path, BuildZip({Member("X.npy", SerializeNpy(Array::FromInt64({1, 2}, {2}))), junk}));
  EXPECT_LETHE_ERROR(ReadNpz(path), path, "member 'junk.npy'");
  const auto arrays = ReadNpz(path, std::set<std::string>{"X", "y"});
  EXPECT_EQ(arrays.size(), 1u);
  EXPECT_EQ(arrays.count("X"), 1u);
}

TEST(Npz, TotalExpansionIsBudgeted) {
  TempDir tmp;
  const std::string path = tmp.Path("zeros.npz");
  const std::vector<double> zeros(5'000'000);  // 40 MB that deflate to ~40 kB
  WriteBytes(path,
             BuildZip({Member(
                 "X.npy", SerializeNpy(Array::FromDouble(zeros, {5'000'000}, DType::kF64)), 8)}));
  EXPECT_LETHE_ERROR(ReadNpz(path), path, "members to read declare");
}

TEST(Csv, FieldCountIsCheckedWhileParsing) {
  TempDir tmp;
  const std::string path = tmp.Path("commas.csv");
  WriteBytes(path, "a,label\n" + std::string(1'000'000, ',') + "\n");
  EXPECT_LETHE_ERROR(ReadCsv(path), path, ":2: row has 1000001 fields but the header has 2");
  WriteBytes(path, "\"a\n\x1b\",\"a\n\x1b\"\n1,2\n");
  EXPECT_LETHE_ERROR(ReadCsv(path), path, "duplicate column 'a\\n\\x1b'");
}

TEST(Csv, OneColumnBlankRowsAreKept) {
  TempDir tmp;
  const std::string path = tmp.Path("one.csv");
  WriteBytes(path, "a\n1\n\n\n2\n\n");
  const CsvTable t = ReadCsv(path);
  ASSERT_EQ(t.rows.size(), 4u);
  EXPECT_EQ(t.rows[1], std::vector<std::string>{""});
  EXPECT_EQ(t.rows[3], std::vector<std::string>{"2"});
  EXPECT_EQ(t.row_lines, (std::vector<int64_t>{2, 3, 4, 5}));
}

}  // namespace
}  // namespace lethe::io
