// Validation follows the reference implementation (huggingface/safetensors,
// safetensors/src/tensor.rs: read_metadata / Metadata::validate).
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "common/checked_alloc.h"
#include "common/error.h"
#include "common/quote.h"
#include "io/atomic_file.h"
#include "io/input_file.h"
#include "io/untrusted_json.h"

namespace lethe::io {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // the reference's MAX_HEADER_SIZE

bool ParseDType(const std::string& name, DType* dtype) {
  static const std::pair<const char*, DType> kNames[] = {
      {"BOOL", DType::kBool}, {"U8", DType::kU8},   {"I8", DType::kI8},     {"I16", DType::kI16},
      {"I32", DType::kI32},   {"I64", DType::kI64}, {"U16", DType::kU16},   {"U32", DType::kU32},
      {"U64", DType::kU64},   {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"F32", DType::kF32},
      {"F64", DType::kF64}};
  for (const auto& [spelling, value] : kNames) {
    if (name == spelling) {
      *dtype = value;
      return true;
    }
  }
  return false;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

uint64_t UnsignedField(const json& value, const std::string& where) {
  if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<int64_t>() >= 0))
    Fail(where, " must be a non-negative integer, got ", JsonKind(value));
  return value.get<uint64_t>();
}

Entry ParseEntry(const std::string& name, const json& info, const std::string& path) {
  const std::string where = path + ": tensor " + Quote(name);
  if (!info.is_object()) Fail(where, ": entry must be an object");
  for (auto it = info.begin(); it != info.end(); ++it) {
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      Fail(where, ": unknown key \"", Escape(it.key()), "\"");
  }
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) Fail(where, ": missing \"", key, "\"");

  Entry e;
  e.name = name;
  const json& dtype = info["dtype"];
  if (!dtype.is_string() || !ParseDType(dtype.get<std::string>(), &e.dtype))
    Fail(where, ": unknown dtype ", JsonKind(dtype));

  const json& shape = info["shape"];
  if (!shape.is_array()) Fail(where, ": shape must be an array");
  uint64_t numel = 1;
  for (const json& dim : shape) {
    const uint64_t d = UnsignedField(dim, where + ": shape entry");
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(numel, d, &numel))
      Fail(where, ": shape of ", shape.size(), " dimensions overflows at dimension ", d);
    e.shape.push_back(static_cast<int64_t>(d));
  }
  uint64_t nbytes;
  if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, static_cast<uint64_t>(DTypeSize(e.dtype)), &nbytes))
    Fail(where, ": shape ", ShapeString(e.shape), " overflows");

  const json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    Fail(where, ": data_offsets must be [begin, end]");
  e.begin = UnsignedField(offsets[0], where + ": data_offsets begin");
  e.end = UnsignedField(offsets[1], where + ": data_offsets end");
  if (e.begin > e.end) Fail(where, ": data_offsets [", e.begin, ", ", e.end, "] are reversed");
  if (e.end - e.begin != nbytes)
    Fail(where, ": data_offsets [", e.begin, ", ", e.end, "] hold ", e.end - e.begin, " bytes but ",
         DTypeName(e.dtype), " ", ShapeString(e.shape), " needs ", nbytes);
  return e;
}

}  // namespace

const Array* SafetensorsFile::Find(const std::string& name) const {
  for (const auto& [tensor_name, array] : tensors)
    if (tensor_name == name) return &array;
  return nullptr;
}

SafetensorsFile ReadSafetensors(const std::string& path) {
  InputFile file(path);
  const uint64_t file_size = file.size();
  if (file_size < 8)
    Fail(path, ": file too short (", file_size, " bytes) to hold the 8-byte header length");
  uint8_t prefix[8];
  file.ReadAt(0, prefix, 8);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | prefix[i];
  if (header_size > file_size - 8)
    Fail(path, ": header length ", header_size, " exceeds file size ", file_size);
  if (header_size > kMaxHeaderSize)
    Fail(path, ": header length ", header_size, " exceeds the limit of ", kMaxHeaderSize, " bytes");
  const std::string header_text = file.ReadString(8, static_cast<size_t>(header_size));
  const json header = ParseUntrustedJson(header_text, path, "header ");
  if (!header.is_object()) Fail(path, ": header must be a JSON object");

  SafetensorsFile result;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) Fail(path, ": __metadata__ must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          Fail(path, ": __metadata__ value for \"", Escape(m.key()), "\" must be a string");
        result.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    entries.push_back(ParseEntry(it.key(), *it, path));
  }

  // Sorted by offset, the tensors must tile [0, data_size) exactly.
  const uint64_t data_size = file_size - 8 - header_size;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.end > data_size)
      Fail(path, ": tensor ", Quote(e.name), " data_offsets end ", e.end,
           " is past the end of the data buffer (", data_size, " bytes)");
    if (e.begin > expected)
      Fail(path, ": hole in the data buffer: bytes [", expected, ", ", e.begin,
           ") belong to no tensor (before tensor ", Quote(e.name), ")");
    if (e.begin < expected)
      Fail(path, ": tensor ", Quote(e.name), " overlaps tensor ", Quote(entries[i - 1].name));
    expected = e.end;
  }
  if (expected != data_size)
    Fail(path, ": ", data_size - expected, " trailing bytes after the last tensor");

  // Only now is the size of every allocation known to be backed by the file.
  const uint64_t data_start = 8 + header_size;
  for (Entry& e : entries) {
    Array array;
    array.dtype = e.dtype;
    array.shape = std::move(e.shape);
    ResizeChecked(array.bytes, e.end - e.begin, path + ": tensor " + Quote(e.name));
    if (!array.bytes.empty())
      file.ReadAt(data_start + e.begin, array.bytes.data(), array.bytes.size());
    result.tensors.emplace_back(std::move(e.name), std::move(array));
  }
  return result;
}

void WriteSafetensors(const std::string& path, const SafetensorsFile& file) {
  // ordered_json keeps insertion order: __metadata__ first, then tensors as given.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) {
    nlohmann::ordered_json metadata = nlohmann::ordered_json::object();
    for (const auto& [key, value] : file.metadata) metadata[key] = value;
    header["__metadata__"] = std::move(metadata);
  }
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& [name, array] : file.tensors) {
    if (name == "__metadata__" || !names.insert(name).second)
      Fail(path, ": cannot write tensor name ", Quote(name), " (reserved or duplicate)");
    const uint64_t nbytes = static_cast<uint64_t>(array.NumElements()) * DTypeSize(array.dtype);
    if (array.bytes.size() != nbytes)
      Fail(path, ": tensor ", Quote(name), " has ", array.bytes.size(), " bytes but ",
           DTypeName(array.dtype), " ", ShapeString(array.shape), " needs ", nbytes);
    header[name] = {{"dtype", DTypeName(array.dtype)},
                    {"shape", array.shape},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // e.g. a name that is not UTF-8
    Fail(path, ": cannot encode header: ", Escape(e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the reference pads to 8-byte alignment

  AtomicFile out(path);
  uint8_t prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));
  out.Write(prefix, 8);
  out.Write(text);
  for (const auto& [name, array] : file.tensors) out.Write(array.bytes.data(), array.bytes.size());
  out.Commit();
}

}  // namespace lethe::io
