#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "io/npy.h"
#include "test_util.h"

namespace lethe::io {
namespace {

using testing::FixturePath;
using testing::PutLe;
using testing::TempDir;
using testing::WriteBytes;

// An .npy file from a literal header dict (padding added) and raw data.
std::string MakeNpy(const std::string& dict, const std::string& data, int major = 1) {
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const std::string header = dict + std::string(16 - dict.size() % 16, ' ') + "\n";
  if (major == 1)
    PutLe<uint16_t>(&out, header.size());
  else
    PutLe<uint32_t>(&out, header.size());
  return out + header + data;
}

std::string Doubles(std::initializer_list<double> values) {
  std::string s(values.size() * 8, '\0');
  std::memcpy(s.data(), std::data(values), s.size());
  return s;
}

TEST(Npy, RoundTripEveryDType) {
  TempDir tmp;
  const std::vector<DType> dtypes = {DType::kBool, DType::kU8,  DType::kI8,  DType::kI16,
                                     DType::kI32,  DType::kI64, DType::kU16, DType::kU32,
                                     DType::kU64,  DType::kF16, DType::kF32, DType::kF64};
  const std::vector<std::vector<int64_t>> shapes = {{}, {5}, {2, 3}, {0, 4}, {2, 1, 2}};
  for (DType dtype : dtypes) {
    for (const auto& shape : shapes) {
      Array a;
      a.dtype = dtype;
      a.shape = shape;
      a.bytes.resize(static_cast<size_t>(a.NumElements()) * DTypeSize(dtype));
      for (size_t i = 0; i < a.bytes.size(); ++i) a.bytes[i] = static_cast<uint8_t>(3 * i + 1);
      if (dtype == DType::kBool)
        for (auto& b : a.bytes) b &= 1;
      const Array parsed = ParseNpy(SerializeNpy(a), "mem.npy");
      EXPECT_EQ(parsed.dtype, dtype);
      EXPECT_EQ(parsed.shape, shape);
      EXPECT_EQ(parsed.bytes, a.bytes);
      const std::string path = tmp.Path("a.npy");
      WriteNpy(path, a);
      const Array read = ReadNpy(path);
      EXPECT_EQ(read.shape, shape);
      EXPECT_EQ(read.bytes, a.bytes);
      EXPECT_EQ(std::filesystem::file_size(path) % 64, a.bytes.size() % 64);  // 64-aligned data
    }
  }
}

TEST(Npy, BFloat16HasNoNumpyDType) {
  TempDir tmp;
  const std::string path = tmp.Path("b.npy");
  EXPECT_LETHE_ERROR(WriteNpy(path, Array::FromDouble({1.0}, {1}, DType::kBF16)), path,
                     "has no numpy dtype");
}

TEST(Npy, FortranOrderIsTransposed) {
  const Array a = ReadNpy(FixturePath("fortran.npy"));
  ASSERT_EQ(a.shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(a.dtype, DType::kI32);
  const std::vector<int64_t> v = a.ToInt64("a");
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_EQ(v[(i * 3 + j) * 4 + k], 100 * i + 10 * j + k);
}

TEST(Npy, Versions2And3) {
  for (const char* name : {"v2.npy", "v3.npy"}) {
    const Array a = ReadNpy(FixturePath(name));
    EXPECT_EQ(a.dtype, DType::kI16);
    EXPECT_EQ(a.ToInt64(name), (std::vector<int64_t>{-2, -1, 0, 1, 2}));
  }
}

TEST(Npy, HalfAndBoolFixtures) {
  const std::vector<double> h = ReadNpy(FixturePath("f16.npy")).ToDouble("f16");
  ASSERT_EQ(h.size(), 11u);
  EXPECT_EQ(h[2], 1.0);
  EXPECT_EQ(h[3], -2.5);
  EXPECT_EQ(h[4], 65504.0);
  EXPECT_EQ(h[5], std::ldexp(1.0, -24));
  EXPECT_EQ(h[6], std::ldexp(1.0, -14));
  EXPECT_EQ(h[7], 3 * std::ldexp(1.0, -24));
  EXPECT_TRUE(std::isinf(h[8]) && h[8] > 0);
  EXPECT_TRUE(std::isinf(h[9]) && h[9] < 0);
  EXPECT_TRUE(std::isnan(h[10]));
  const Array b = ReadNpy(FixturePath("bool.npy"));
  EXPECT_EQ(b.dtype, DType::kBool);
  EXPECT_EQ(b.ToInt64("b"), (std::vector<int64_t>{1, 0, 1}));
}

TEST(Npy, BigEndianRefused) {
  const std::string path = FixturePath("bigendian.npy");
  EXPECT_LETHE_ERROR(ReadNpy(path), path, "big-endian dtype '>f8' is not supported");
}

TEST(Npy, HeaderDictParsedRobustly) {
  const std::string data = Doubles({1, 2, 3, 4, 5, 6});
  for (const std::string dict : {
           "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
           "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f8'}",
           "{ \"descr\" : \"<f8\" ,'fortran_order':False,'shape':( 2 ,3 , ) , }",
           "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L)}",
       }) {
    SCOPED_TRACE(dict);
    const Array a = ParseNpy(MakeNpy(dict, data), "d.npy");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(a.ToDouble("a"), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  }
  const Array f =
      ParseNpy(MakeNpy("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3)}", data), "f.npy");
  EXPECT_EQ(f.ToDouble("f"), (std::vector<double>{1, 3, 5, 2, 4, 6}));
  const Array scalar =
      ParseNpy(MakeNpy("{'descr': '<f8', 'fortran_order': False, 'shape': ()}", Doubles({7})), "s");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.ToDouble("s")[0], 7.0);
}

TEST(Npy, RejectsMalformedFiles) {
  TempDir tmp;
  const std::string ok_dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}";
  const std::string two = Doubles({1, 2});
  std::string huge_header = "\x93NUMPY\x02";
  huge_header += '\0';
  PutLe<uint32_t>(&huge_header, 0x7fffffff);
  std::string past_eof = "\x93NUMPY\x01";
  past_eof += '\0';
  PutLe<uint16_t>(&past_eof, 5000);
  past_eof += "{'descr'";
  struct Case {
    const char* label;
    std::string bytes;
    const char* phrase;
  };
  const std::vector<Case> cases = {
      {"empty", "", "too short"},
      {"bad_magic", "\x93NUMPZ\x01" + std::string(60, ' '), "bad magic"},
      {"version", MakeNpy(ok_dict, two, 4), "unsupported npy version 4.0"},
      {"header_past_eof", past_eof, "header length 5000 exceeds file size"},
      {"header_2gb", huge_header + "{}", "header length 2147483647 exceeds file size"},
      {"truncated", MakeNpy(ok_dict, two.substr(0, 12)), "truncated: data is 12 bytes"},
      {"extra", MakeNpy(ok_dict, two + "xyz"), "3 trailing bytes"},
      {"shape_overflow",
       MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4)}", ""),
       "shape overflows"},
      {"bytes_overflow",
       MakeNpy("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,)}", ""),
       "shape overflows"},
      {"dim_too_large",
       MakeNpy("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}", ""),
       "dimension too large"},
      {"big_endian", MakeNpy("{'descr': '>i4', 'fortran_order': False, 'shape': (1,)}", "abcd"),
       "big-endian dtype '>i4'"},
      {"pickle", MakeNpy("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", "12345678"),
       "pickles"},
      {"complex", MakeNpy("{'descr': '<c16', 'fortran_order': False, 'shape': (1,)}", two),
       "unsupported dtype '<c16'"},
      {"no_byte_order", MakeNpy("{'descr': '|f8', 'fortran_order': False, 'shape': (1,)}", two),
       "unsupported dtype '|f8'"},
      {"structured",
       MakeNpy("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,)}", two),
       "structured dtypes"},
      {"missing_shape", MakeNpy("{'descr': '<f8', 'fortran_order': False}", two),
       "missing key 'shape'"},
      {"unknown_key", MakeNpy(ok_dict.substr(0, ok_dict.size() - 1) + ", 'x': 1}", two),
       "unexpected key 'x'"},
      {"duplicate_key",
       MakeNpy("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, "
               "'shape': (2,)}",
               two),
       "duplicate key 'descr'"},
      {"bad_bool", MakeNpy("{'descr': '<f8', 'fortran_order': 0, 'shape': (2,)}", two),
       "expected True or False"},
      {"junk_after", MakeNpy(ok_dict + " x", two), "after the closing '}'"},
      {"negative_dim", MakeNpy("{'descr': '<f8', 'fortran_order': False, 'shape': (-2,)}", two),
       "non-negative integer"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = tmp.Path(std::string(c.label) + ".npy");
    WriteBytes(path, c.bytes);
    EXPECT_LETHE_ERROR(ReadNpy(path), path, c.phrase);
    EXPECT_LETHE_ERROR(ParseNpy(c.bytes, "mem.npy"), "mem.npy", c.phrase);
  }
}

TEST(Npy, HeaderLimitCheckedBeforeAllocating) {
  TempDir tmp;
  const std::string path = tmp.Path("big.npy");
  std::string bytes = "\x93NUMPY\x02";
  bytes += '\0';
  PutLe<uint32_t>(&bytes, 2 << 20);
  WriteBytes(path, bytes);
  std::filesystem::resize_file(path, 3 << 20);  // sparse
  EXPECT_LETHE_ERROR(ReadNpy(path), path, "exceeds the limit of 1048576 bytes");
}

}  // namespace
}  // namespace lethe::io
