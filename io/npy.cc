// The .npy format, version 1.0 / 2.0 / 3.0:
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
//   "\x93NUMPY" major minor, header length (u16 LE for 1.0, u32 LE for 2.0 and 3.0),
//   a Python dict literal padded with spaces and ended by '\n', then the raw data.
#include "io/npy.h"

#include <cstring>
#include <limits>

#include "common/checked_alloc.h"
#include "common/error.h"
#include "common/quote.h"
#include "io/atomic_file.h"
#include "io/input_file.h"
#include "io/npy_format.h"

namespace lethe::io {
namespace npy {
namespace {

constexpr char kMagic[] = "\x93NUMPY";

struct DescrName {
  const char* code;
  DType dtype;
};
constexpr DescrName kDescrs[] = {{"b1", DType::kBool}, {"u1", DType::kU8},  {"i1", DType::kI8},
                                 {"i2", DType::kI16},  {"i4", DType::kI32}, {"i8", DType::kI64},
                                 {"u2", DType::kU16},  {"u4", DType::kU32}, {"u8", DType::kU64},
                                 {"f2", DType::kF16},  {"f4", DType::kF32}, {"f8", DType::kF64}};

DType ParseDescr(const std::string& descr, const std::string& what) {
  if (descr.size() >= 2) {
    const char order = descr[0];
    const std::string code = descr.substr(1);
    for (const DescrName& d : kDescrs) {
      if (code != d.code) continue;
      const bool one_byte = DTypeSize(d.dtype) == 1;
      if (order == '<' || (one_byte && (order == '|' || order == '>'))) return d.dtype;
      if (order == '>')
        Fail(what, ": big-endian dtype ", Quote(descr), " is not supported (save it with a.astype('<",
             code, "'))");
      Fail(what, ": unsupported dtype ", Quote(descr), " (expected little-endian '<", code, "')");
    }
    if (code[0] == 'O') Fail(what, ": object arrays (pickles) are not supported");
  }
  Fail(what, ": unsupported dtype ", Quote(descr),
       " (supported: bool, int8-64, uint8-64, float16/32/64, little-endian)");
}

// A recursive-descent reader for the small subset of Python literals numpy writes:
// {'key': value, ...} with string, True/False and tuple-of-int values. Any key order,
// optional trailing commas, and arbitrary spaces are accepted.
class DictParser {
 public:
  DictParser(std::string_view text, const std::string& what) : text_(text), what_(what) {}

  Header Parse() {
    Header h;
    bool have_descr = false, have_order = false, have_shape = false;
    Expect('{');
    while (true) {
      SkipSpace();
      if (Peek() == '}') break;
      const std::string key = String();
      Expect(':');
      SkipSpace();
      if (key == "descr") {
        if (have_descr) Error("duplicate key 'descr'");
        if (Peek() == '[') Error("structured dtypes are not supported");
        h.dtype = ParseDescr(String(), what_);
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_order) Error("duplicate key 'fortran_order'");
        h.fortran_order = Bool();
        have_order = true;
      } else if (key == "shape") {
        if (have_shape) Error("duplicate key 'shape'");
        h.shape = Tuple();
        have_shape = true;
      } else {
        Error("unexpected key " + Quote(key));
      }
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
      } else if (Peek() != '}') {
        Error("expected ',' or '}'");
      }
    }
    ++pos_;
    SkipSpace();  // the padding: spaces and the final '\n'
    if (pos_ != text_.size()) Error("unexpected text after the closing '}'");
    if (!have_descr) Error("missing key 'descr'");
    if (!have_order) Error("missing key 'fortran_order'");
    if (!have_shape) Error("missing key 'shape'");
    return h;
  }

 private:
  [[noreturn]] void Error(const std::string& problem) const {
    Fail(what_, ": malformed npy header: ", problem, " at byte ", pos_);
  }
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\t' || text_[pos_] == '\r'))
      ++pos_;
  }
  void Expect(char c) {
    SkipSpace();
    if (Peek() != c) Error(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string String() {
    SkipSpace();
    const char quote = Peek();
    if (quote != '\'' && quote != '"') Error("expected a string");
    const size_t start = ++pos_;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\') Error("escapes in strings are not supported");
      ++pos_;
    }
    if (pos_ >= text_.size()) Error("unterminated string");
    return std::string(text_.substr(start, pos_++ - start));
  }
  bool Bool() {
    if (text_.substr(pos_, 4) == "True") return pos_ += 4, true;
    if (text_.substr(pos_, 5) == "False") return pos_ += 5, false;
    Error("expected True or False");
  }
  std::vector<int64_t> Tuple() {
    if (Peek() != '(') Error("expected a tuple for 'shape'");
    ++pos_;
    std::vector<int64_t> dims;
    while (true) {
      SkipSpace();
      if (Peek() == ')') break;
      if (Peek() < '0' || Peek() > '9') Error("expected a non-negative integer in 'shape'");
      int64_t dim = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        if (__builtin_mul_overflow(dim, 10, &dim) ||
            __builtin_add_overflow(dim, Peek() - '0', &dim))
          Error("dimension too large in 'shape'");
        ++pos_;
      }
      if (Peek() == 'L') ++pos_;  // Python 2 long literal, written by old numpy
      dims.push_back(dim);
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
      } else if (Peek() != ')') {
        Error("expected ',' or ')' in 'shape'");
      }
    }
    ++pos_;
    return dims;
  }

  std::string_view text_;
  const std::string& what_;
  size_t pos_ = 0;
};

std::string DescrOf(DType dtype, const std::string& what) {
  for (const DescrName& d : kDescrs)
    if (d.dtype == dtype) return std::string(DTypeSize(dtype) == 1 ? "|" : "<").append(d.code);
  Fail(what, ": ", DTypeName(dtype), " has no numpy dtype");
}

std::string SerializeHeader(DType dtype, const std::vector<int64_t>& dims, const std::string& what);

std::string Serialize(const Array& array, const std::string& what) {
  LETHE_CHECK(
      array.bytes.size() == static_cast<size_t>(array.NumElements()) * DTypeSize(array.dtype),
      "array bytes do not match its shape");
  std::string out = SerializeHeader(array.dtype, array.shape, what);
  out.append(reinterpret_cast<const char*>(array.bytes.data()), array.bytes.size());
  return out;
}

std::string SerializeHeader(DType dtype, const std::vector<int64_t>& dims, const std::string& what) {
  const std::string descr = DescrOf(dtype, what);
  std::string shape = "(";
  for (size_t i = 0; i < dims.size(); ++i) shape += (i ? ", " : "") + std::to_string(dims[i]);
  if (dims.size() == 1) shape += ",";
  shape += ")";
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces and a final '\n' so that the data starts 64-byte aligned, as numpy
  // does; version 2.0 only when the header no longer fits a u16 length.
  const auto padded_total = [&](size_t preamble) {
    return (preamble + dict.size() + 1 + 63) / 64 * 64;
  };
  const bool v2 = padded_total(10) - 10 > 65535;
  const size_t preamble = v2 ? 12 : 10;
  const size_t total = padded_total(preamble);
  dict.append(total - preamble - dict.size() - 1, ' ');
  dict += '\n';
  std::string out(kMagic, 6);
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  const uint32_t len = static_cast<uint32_t>(dict.size());
  for (size_t i = 0; i < preamble - 8; ++i) out += static_cast<char>(len >> (8 * i));
  out += dict;
  return out;
}

}  // namespace

Preamble ParsePreamble(std::string_view first, uint64_t total, const std::string& what) {
  if (first.size() < kPreambleSize) Fail(what, ": too short (", total, " bytes) to be an npy file");
  if (first.substr(0, 6) != std::string_view(kMagic, 6))
    Fail(what, ": not an npy file (bad magic)");
  Preamble p;
  p.major = static_cast<uint8_t>(first[6]);
  const int minor = static_cast<uint8_t>(first[7]);
  if (p.major < 1 || p.major > 3 || minor != 0)
    Fail(what, ": unsupported npy version ", p.major, ".", minor);
  const auto byte = [&](int i) { return static_cast<uint64_t>(static_cast<uint8_t>(first[i])); };
  if (p.major == 1) {
    p.header_start = 10;
    p.header_size = byte(8) | byte(9) << 8;
  } else {
    p.header_start = 12;
    p.header_size = byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24;
  }
  if (p.header_size > total - p.header_start)
    Fail(what, ": header length ", p.header_size, " exceeds file size ", total);
  if (p.header_size > kMaxHeaderSize)
    Fail(what, ": header length ", p.header_size, " exceeds the limit of ", kMaxHeaderSize,
         " bytes");
  return p;
}

Header ParseHeader(std::string_view dict, const Preamble& preamble, const std::string& what) {
  // Versions 1 and 2 are latin-1, 3 is UTF-8; every valid header is plain ASCII anyway.
  (void)preamble;
  Header h = DictParser(dict, what).Parse();
  uint64_t numel = 1;
  for (int64_t dim : h.shape)
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel))
      Fail(what, ": shape overflows");
  if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, static_cast<uint64_t>(DTypeSize(h.dtype)), &h.data_bytes))
    Fail(what, ": shape overflows");
  return h;
}

Array FromData(Header header, HostVector<uint8_t> data) {
  LETHE_CHECK(data.size() == header.data_bytes);
  Array a;
  a.dtype = header.dtype;
  a.shape = std::move(header.shape);
  if (!header.fortran_order || a.shape.size() < 2) {
    a.bytes = std::move(data);  // a 0-d or 1-d array is the same in both orders
    return a;
  }
  // Walk the C-order multi-index, keeping the matching column-major offset in step.
  const size_t item = DTypeSize(a.dtype);
  const size_t rank = a.shape.size();
  const size_t numel = static_cast<size_t>(a.NumElements());
  std::vector<size_t> stride(rank), index(rank, 0);
  size_t s = 1;
  for (size_t k = 0; k < rank; ++k) stride[k] = s, s *= static_cast<size_t>(a.shape[k]);
  a.bytes.resize(data.size());
  size_t src = 0;
  for (size_t i = 0; i < numel; ++i) {
    std::memcpy(a.bytes.data() + i * item, data.data() + src * item, item);
    for (size_t k = rank; k-- > 0;) {  // increment the last index first (C order)
      src += stride[k];
      if (++index[k] < static_cast<size_t>(a.shape[k])) break;
      src -= stride[k] * index[k];
      index[k] = 0;
    }
  }
  return a;
}

}  // namespace npy

Array ParseNpy(const std::string& bytes, const std::string& what) {
  const std::string_view all(bytes);
  const npy::Preamble p = npy::ParsePreamble(all.substr(0, npy::kPreambleSize), all.size(), what);
  npy::Header h = npy::ParseHeader(all.substr(p.header_start, p.header_size), p, what);
  const uint64_t data_start = p.header_start + p.header_size;
  const uint64_t available = all.size() - data_start;
  if (available < h.data_bytes)
    Fail(what, ": truncated: data is ", available, " bytes but the header needs ", h.data_bytes);
  if (available > h.data_bytes)
    Fail(what, ": ", available - h.data_bytes, " trailing bytes after the array data");
  HostVector<uint8_t> data(all.begin() + data_start, all.end());
  return npy::FromData(std::move(h), std::move(data));
}

Array ReadNpy(const std::string& path) {
  InputFile file(path);
  const uint64_t size = file.size();
  const std::string first =
      file.ReadString(0, static_cast<size_t>(std::min<uint64_t>(size, npy::kPreambleSize)));
  const npy::Preamble p = npy::ParsePreamble(first, size, path);
  const std::string dict = file.ReadString(p.header_start, static_cast<size_t>(p.header_size));
  npy::Header h = npy::ParseHeader(dict, p, path);
  const uint64_t data_start = p.header_start + p.header_size;
  const uint64_t available = size - data_start;
  if (available < h.data_bytes)
    Fail(path, ": truncated: data is ", available, " bytes but the header needs ", h.data_bytes);
  if (available > h.data_bytes)
    Fail(path, ": ", available - h.data_bytes, " trailing bytes after the array data");
  HostVector<uint8_t> data;
  ResizeChecked(data, h.data_bytes, path);
  if (!data.empty()) file.ReadAt(data_start, data.data(), data.size());
  return npy::FromData(std::move(h), std::move(data));
}

std::string SerializeNpy(const Array& array) { return npy::Serialize(array, "npy"); }

std::string SerializeNpyHeader(DType dtype, const std::vector<int64_t>& shape) {
  return npy::SerializeHeader(dtype, shape, "npy");
}

void WriteNpy(const std::string& path, const Array& array) {
  WriteFileAtomically(path, npy::Serialize(array, path));
}

}  // namespace lethe::io
