#include <gtest/gtest.h>

#include <filesystem>

#include "io/safetensors.h"
#include "test_util.h"

namespace lethe::io {
namespace {

using testing::PutLe;
using testing::TempDir;
using testing::WriteBytes;

// A safetensors file from a literal header and data section.
std::string Make(const std::string& header, const std::string& data) {
  std::string out;
  PutLe<uint64_t>(&out, header.size());
  return out + header + data;
}

Array Filled(DType dtype, std::vector<int64_t> shape) {
  Array a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  a.bytes.resize(static_cast<size_t>(a.NumElements()) * DTypeSize(dtype));
  for (size_t i = 0; i < a.bytes.size(); ++i) a.bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  return a;
}

TEST(Safetensors, RoundTripEveryDType) {
  TempDir tmp;
  const std::vector<DType> dtypes = {
      DType::kBool, DType::kU8,  DType::kI8,  DType::kI16,  DType::kI32, DType::kI64, DType::kU16,
      DType::kU32,  DType::kU64, DType::kF16, DType::kBF16, DType::kF32, DType::kF64};
  SafetensorsFile file;
  file.metadata = {{"format", "pt"}, {"lethe", "spec \"json\""}};
  for (size_t i = 0; i < dtypes.size(); ++i)
    file.tensors.emplace_back(
        std::string("t").append(std::to_string(i)).append(DTypeName(dtypes[i])),
        Filled(dtypes[i], {2, static_cast<int64_t>(i % 3 + 1)}));
  file.tensors.emplace_back("scalar", Filled(DType::kF32, {}));
  file.tensors.emplace_back("empty", Filled(DType::kF64, {0, 5}));
  const std::string path = tmp.Path("model.safetensors");
  WriteSafetensors(path, file);

  const SafetensorsFile back = ReadSafetensors(path);
  EXPECT_EQ(back.metadata, file.metadata);
  ASSERT_EQ(back.tensors.size(), file.tensors.size());
  for (const auto& [name, array] : file.tensors) {
    const Array* got = back.Find(name);
    ASSERT_NE(got, nullptr) << name;
    EXPECT_EQ(got->dtype, array.dtype) << name;
    EXPECT_EQ(got->shape, array.shape) << name;
    EXPECT_EQ(got->bytes, array.bytes) << name;
  }
  EXPECT_EQ(back.Find("missing"), nullptr);
  EXPECT_EQ(tmp.List(), std::vector<std::string>{"model.safetensors"});  // no temp left

  // The layout the reference writes: header padded with spaces to 8 bytes, metadata first.
  const std::string raw = testing::ReadBytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw.compare(8, 15, "{\"__metadata__\""), 0);
}

TEST(Safetensors, TensorsKeepGivenOrderAndOffsets) {
  TempDir tmp;
  SafetensorsFile file;
  file.tensors.emplace_back("z", Filled(DType::kF32, {3}));
  file.tensors.emplace_back("a", Filled(DType::kU8, {1}));
  const std::string path = tmp.Path("m.safetensors");
  WriteSafetensors(path, file);
  const std::string raw = testing::ReadBytes(path);
  EXPECT_NE(raw.find("\"z\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}"),
            std::string::npos);
  EXPECT_NE(raw.find("\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[12,13]}"),
            std::string::npos);
  EXPECT_EQ(raw.find("__metadata__"), std::string::npos);  // omitted when empty
  const SafetensorsFile back = ReadSafetensors(path);
  EXPECT_EQ(back.tensors[0].first, "z");
  EXPECT_EQ(back.tensors[1].first, "a");
}

TEST(Safetensors, ReadsHandWrittenFile) {
  TempDir tmp;
  const std::string path = tmp.Path("hand.safetensors");
  // Tensors listed out of offset order; a zero-sized tensor; padding spaces.
  WriteBytes(path, Make(R"({"b":{"shape":[1],"dtype":"U8","data_offsets":[4,5]},)"
                        R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                        R"("a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}}   )",
                        std::string("\x01\x00\xff\xff\x07", 5)));
  const SafetensorsFile f = ReadSafetensors(path);
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors[0].first, "a");  // in data-offset order
  EXPECT_EQ(f.Find("a")->ToInt64("a"), (std::vector<int64_t>{1, -1}));
  EXPECT_EQ(f.Find("b")->ToInt64("b"), (std::vector<int64_t>{7}));
  EXPECT_EQ(f.Find("e")->NumElements(), 0);
}

// A JSON object from already-encoded "key":value entries.
std::string Object(const std::vector<std::string>& entries) {
  std::string s = "{";
  for (size_t i = 0; i < entries.size(); ++i) s.append(i ? "," : "").append(entries[i]);
  return s.append("}");
}

struct Malformed {
  const char* label;
  std::string bytes;
  const char* phrase;
};

std::string Tensor(const std::string& name, const std::string& dtype, const std::string& shape,
                   uint64_t begin, uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

TEST(Safetensors, RejectsMalformedFiles) {
  TempDir tmp;
  std::string huge_len;
  PutLe<uint64_t>(&huge_len, 10'000'000'000ull);  // a header "of 10 GB"
  std::string past_eof;
  PutLe<uint64_t>(&past_eof, 100);
  const std::string f32x2 = Tensor("a", "F32", "[2]", 0, 8);
  const std::vector<Malformed> cases = {
      {"empty", "", "too short"},
      {"truncated_length", "\x05\x00\x00", "too short"},
      {"header_past_eof", past_eof + "{}", "header length 100 exceeds file size 10"},
      {"header_10gb", huge_len + "{}", "header length 10000000000 exceeds file size"},
      {"bad_json", Make("{\"a\":", ""), "not valid JSON"},
      {"not_object", Make("[1, 2]", ""), "must be a JSON object"},
      {"entry_not_object", Make("{\"a\":3}", ""), "entry must be an object"},
      {"hole",
       Make(Object({Tensor("a", "F32", "[1]", 0, 4), Tensor("b", "F32", "[1]", 8, 12)}),
            std::string(12, '\0')),
       "hole in the data buffer"},
      {"overlap", Make(Object({f32x2, Tensor("b", "F32", "[2]", 4, 12)}), std::string(12, '\0')),
       "overlaps"},
      {"trailing", Make(Object({f32x2}), std::string(9, '\0')), "1 trailing bytes"},
      {"past_end", Make(Object({f32x2}), std::string(4, '\0')), "past the end of the data buffer"},
      {"size_mismatch", Make(Object({Tensor("a", "F32", "[3]", 0, 8)}), std::string(8, '\0')),
       "needs 12"},
      {"shape_overflow", Make(Object({Tensor("a", "F32", "[4611686018427387904,4]", 0, 0)}), ""),
       "overflows"},
      {"bytes_overflow", Make(Object({Tensor("a", "F64", "[4611686018427387904]", 0, 0)}), ""),
       "overflows"},
      {"unknown_dtype", Make(Object({Tensor("a", "F8", "[1]", 0, 1)}), "x"), "unknown dtype"},
      {"reversed", Make(Object({Tensor("a", "U8", "[0]", 4, 0)}), "xxxx"), "reversed"},
      {"negative_dim", Make(Object({Tensor("a", "U8", "[-1]", 0, 0)}), ""), "non-negative"},
      {"extra_key", Make(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}})", "x"),
       "unknown key \"x\""},
      {"missing_offsets", Make(R"({"a":{"dtype":"U8","shape":[1]}})", "x"),
       "missing \"data_offsets\""},
      {"offsets_arity", Make(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "x"),
       "[begin, end]"},
      {"metadata_value", Make(R"({"__metadata__":{"k":1}})", ""), "must be a string"},
      {"metadata_type", Make(R"({"__metadata__":[]})", ""), "__metadata__ must be an object"},
      {"duplicate_key", Make(Object({f32x2, f32x2}), std::string(8, '\0')), "duplicate key \"a\""},
  };
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = tmp.Path(std::string(c.label) + ".safetensors");
    WriteBytes(path, c.bytes);
    EXPECT_LETHE_ERROR(ReadSafetensors(path), path, c.phrase);
  }
}

TEST(Safetensors, HeaderLimitCheckedBeforeAllocating) {
  TempDir tmp;
  const std::string path = tmp.Path("big.safetensors");
  std::string prefix;
  PutLe<uint64_t>(&prefix, 100'000'001);
  WriteBytes(path, prefix);
  std::filesystem::resize_file(path, 100'000'200);  // sparse: takes no disk space
  EXPECT_LETHE_ERROR(ReadSafetensors(path), path, "exceeds the limit of 100000000 bytes");
}

TEST(Safetensors, MissingFile) {
  TempDir tmp;
  const std::string path = tmp.Path("absent.safetensors");
  EXPECT_LETHE_ERROR(ReadSafetensors(path), path, "cannot open");
}

TEST(Safetensors, WriterRefusesInconsistentTensors) {
  TempDir tmp;
  const std::string path = tmp.Path("w.safetensors");
  SafetensorsFile dup;
  dup.tensors.emplace_back("a", Filled(DType::kU8, {1}));
  dup.tensors.emplace_back("a", Filled(DType::kU8, {1}));
  EXPECT_LETHE_ERROR(WriteSafetensors(path, dup), path, "duplicate");
  SafetensorsFile bad;
  Array short_array = Filled(DType::kF32, {2});
  short_array.bytes.pop_back();
  bad.tensors.emplace_back("a", short_array);
  EXPECT_LETHE_ERROR(WriteSafetensors(path, bad), path, "needs 8");
  EXPECT_TRUE(tmp.List().empty());
}

}  // namespace
}  // namespace lethe::io
