// A host-side n-dimensional array as it appears in a file: element type, shape and
// the raw little-endian bytes. Parsers produce it; converters check and widen it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/host_memory.h"

namespace lethe::io {

enum class DType { kBool, kU8, kI8, kI16, kI32, kI64, kU16, kU32, kU64, kF16, kBF16, kF32, kF64 };

// Bytes per element.
int DTypeSize(DType dtype);
// Safetensors spelling ("F32", "BF16", ...).
std::string DTypeName(DType dtype);
bool IsFloating(DType dtype);
bool IsInteger(DType dtype);  // signed or unsigned integers and bool

struct Array {
  DType dtype = DType::kF64;
  std::vector<int64_t> shape;  // empty shape = scalar (one element)
  HostVector<uint8_t> bytes;  // row-major (C order), little-endian (common/host_memory.h)

  int64_t NumElements() const;  // product of shape (1 for a scalar)

  // Every element converted to double. F16/BF16/F32/F64 exactly; integers exactly
  // up to 2^53. `what` names the array in error messages (e.g. "data.npz: X").
  std::vector<double> ToDouble(const std::string& what) const;
  // The same into out[0, NumElements()), e.g. a HostVector (the data: no second copy).
  void ToDouble(const std::string& what, double* out) const;
  // Every element as int64; throws lethe::Error if the dtype is floating (unless every
  // value is integral) or a value does not fit.
  std::vector<int64_t> ToInt64(const std::string& what) const;

  static Array FromDouble(const std::vector<double>& values, std::vector<int64_t> shape,
                          DType dtype);  // dtype: kF16, kBF16, kF32 or kF64 (rounded to nearest)
  static Array FromInt64(const std::vector<int64_t>& values, std::vector<int64_t> shape);
};

}  // namespace lethe::io
