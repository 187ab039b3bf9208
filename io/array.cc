#include "io/array.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/error.h"

// Every file format lethe reads stores little-endian bytes, and Array keeps them as-is.
static_assert(std::endian::native == std::endian::little, "lethe io assumes a little-endian host");

namespace lethe::io {
namespace {

template <typename T>
T Load(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// IEEE binary16 -> binary32, bit by bit (exact: every half is a float).
float HalfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;  // +-0
    } else {
      // Subnormal half (mantissa * 2^-24): normalise so the leading 1 becomes implicit.
      uint32_t e = 127 - 15 + 1;
      while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        --e;
      }
      bits = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf, or NaN keeping its payload
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

// bfloat16 is the top half of a binary32.
float BFloat16ToFloat(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// Rounds a double to a binary floating format with `exp_bits` exponent bits and
// `man_bits` (< 52) explicit mantissa bits, round-to-nearest-even, straight from the
// double (going through float first would round twice). Returns the format's bits.
uint32_t RoundDouble(double value, int exp_bits, int man_bits) {
  const uint64_t b = std::bit_cast<uint64_t>(value);
  const uint32_t sign = static_cast<uint32_t>(b >> 63) << (exp_bits + man_bits);
  const int64_t exponent = static_cast<int64_t>((b >> 52) & 0x7ff);
  const uint64_t mantissa = b & ((uint64_t{1} << 52) - 1);
  const uint32_t inf = ((uint32_t{1} << exp_bits) - 1) << man_bits;
  if (exponent == 0x7ff) return sign | inf | (mantissa ? uint32_t{1} << (man_bits - 1) : 0);
  // value = sig * 2^(e - 52), with sig < 2^53.
  const uint64_t sig = exponent ? mantissa | (uint64_t{1} << 52) : mantissa;
  const int64_t e = exponent ? exponent - 1023 : -1022;
  if (sig == 0) return sign;
  const int64_t bias = (int64_t{1} << (exp_bits - 1)) - 1;
  // Normal results keep man_bits + 1 significant bits; subnormals are multiples of
  // 2^(1 - bias - man_bits), so they lose (1 - bias - e) more.
  int64_t shift = 52 - man_bits;
  uint64_t base = 0;  // exponent field minus one, for normals
  if (e >= 1 - bias) {
    base = static_cast<uint64_t>(e + bias - 1);
  } else {
    shift += 1 - bias - e;
  }
  if (shift >= 64) return sign;  // far below half the smallest subnormal
  uint64_t m = sig >> shift;
  const uint64_t rest = sig & ((uint64_t{1} << shift) - 1);
  const uint64_t half = uint64_t{1} << (shift - 1);
  if (rest > half || (rest == half && (m & 1))) ++m;
  // Adding m (which holds the implicit bit) to base << man_bits carries into the
  // exponent when rounding overflows the mantissa, and turns a subnormal rounded up
  // to 2^man_bits into the smallest normal.
  const uint64_t bits = (base << man_bits) + m;
  if (bits >= inf) return sign | inf;
  return sign | static_cast<uint32_t>(bits);
}

void CheckBytes(const Array& a) {
  LETHE_CHECK(a.bytes.size() == static_cast<size_t>(a.NumElements()) * DTypeSize(a.dtype),
              "array bytes do not match its shape");
}

}  // namespace

int DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kBool:
    case DType::kU8:
    case DType::kI8:
      return 1;
    case DType::kI16:
    case DType::kU16:
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI32:
    case DType::kU32:
    case DType::kF32:
      return 4;
    case DType::kI64:
    case DType::kU64:
    case DType::kF64:
      return 8;
  }
  LETHE_CHECK(false, "unknown dtype");
}

std::string DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kBool:
      return "BOOL";
    case DType::kU8:
      return "U8";
    case DType::kI8:
      return "I8";
    case DType::kI16:
      return "I16";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
    case DType::kU16:
      return "U16";
    case DType::kU32:
      return "U32";
    case DType::kU64:
      return "U64";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kF32:
      return "F32";
    case DType::kF64:
      return "F64";
  }
  LETHE_CHECK(false, "unknown dtype");
}

bool IsFloating(DType dtype) {
  return dtype == DType::kF16 || dtype == DType::kBF16 || dtype == DType::kF32 ||
         dtype == DType::kF64;
}

bool IsInteger(DType dtype) { return !IsFloating(dtype); }

int64_t Array::NumElements() const {
  int64_t n = 1;
  for (int64_t dim : shape) {
    LETHE_CHECK(dim >= 0, "negative dimension");
    LETHE_CHECK(!__builtin_mul_overflow(n, dim, &n), "shape product overflows");
  }
  return n;
}

std::vector<double> Array::ToDouble(const std::string& what) const {
  std::vector<double> out(static_cast<size_t>(NumElements()));
  ToDouble(what, out.data());
  return out;
}

void Array::ToDouble(const std::string& what, double* out) const {
  (void)what;  // every conversion to double succeeds
  CheckBytes(*this);
  const size_t n = static_cast<size_t>(NumElements());
  const uint8_t* p = bytes.data();
  // The data's usual dtypes without a dispatch per element (bytes are little-endian, as
  // Load assumes of the host).
  if (dtype == DType::kF64) {
    if (n) std::memcpy(out, p, n * sizeof(double));
    return;
  }
  if (dtype == DType::kF32) {
    for (size_t i = 0; i < n; ++i) out[i] = Load<float>(p + 4 * i);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::kBool:
        out[i] = p[i] ? 1.0 : 0.0;
        break;
      case DType::kU8:
        out[i] = p[i];
        break;
      case DType::kI8:
        out[i] = Load<int8_t>(p + i);
        break;
      case DType::kI16:
        out[i] = Load<int16_t>(p + 2 * i);
        break;
      case DType::kU16:
        out[i] = Load<uint16_t>(p + 2 * i);
        break;
      case DType::kI32:
        out[i] = Load<int32_t>(p + 4 * i);
        break;
      case DType::kU32:
        out[i] = Load<uint32_t>(p + 4 * i);
        break;
      case DType::kI64:
        out[i] = static_cast<double>(Load<int64_t>(p + 8 * i));
        break;
      case DType::kU64:
        out[i] = static_cast<double>(Load<uint64_t>(p + 8 * i));
        break;
      case DType::kF16:
        out[i] = HalfToFloat(Load<uint16_t>(p + 2 * i));
        break;
      case DType::kBF16:
        out[i] = BFloat16ToFloat(Load<uint16_t>(p + 2 * i));
        break;
      case DType::kF32:
        out[i] = Load<float>(p + 4 * i);
        break;
      case DType::kF64:
        out[i] = Load<double>(p + 8 * i);
        break;
    }
  }
}

std::vector<int64_t> Array::ToInt64(const std::string& what) const {
  CheckBytes(*this);
  const size_t n = static_cast<size_t>(NumElements());
  std::vector<int64_t> out(n);
  if (IsFloating(dtype)) {
    std::vector<double> values = ToDouble(what);
    for (size_t i = 0; i < n; ++i) {
      const double v = values[i];
      // [-2^63, 2^63) is exactly the range of int64 (both bounds are doubles).
      if (!(v == std::trunc(v) && v >= -0x1p63 && v < 0x1p63))
        Fail(what, ": value ", v, " at index ", i, " is not an int64 integer");
      out[i] = static_cast<int64_t>(v);
    }
    return out;
  }
  const uint8_t* p = bytes.data();
  for (size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::kBool:
        out[i] = p[i] ? 1 : 0;
        break;
      case DType::kU8:
        out[i] = p[i];
        break;
      case DType::kI8:
        out[i] = Load<int8_t>(p + i);
        break;
      case DType::kI16:
        out[i] = Load<int16_t>(p + 2 * i);
        break;
      case DType::kU16:
        out[i] = Load<uint16_t>(p + 2 * i);
        break;
      case DType::kI32:
        out[i] = Load<int32_t>(p + 4 * i);
        break;
      case DType::kU32:
        out[i] = Load<uint32_t>(p + 4 * i);
        break;
      case DType::kI64:
        out[i] = Load<int64_t>(p + 8 * i);
        break;
      case DType::kU64: {
        const uint64_t v = Load<uint64_t>(p + 8 * i);
        if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          Fail(what, ": value ", v, " at index ", i, " does not fit in int64");
        out[i] = static_cast<int64_t>(v);
        break;
      }
      default:
        LETHE_CHECK(false, "unreachable");
    }
  }
  return out;
}

Array Array::FromDouble(const std::vector<double>& values, std::vector<int64_t> shape,
                        DType dtype) {
  Array a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  LETHE_CHECK(IsFloating(dtype), "FromDouble needs a floating dtype");
  LETHE_CHECK(static_cast<int64_t>(values.size()) == a.NumElements(), "values do not match shape");
  a.bytes.resize(values.size() * DTypeSize(dtype));
  uint8_t* p = a.bytes.data();
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case DType::kF64:
        std::memcpy(p + 8 * i, &values[i], 8);
        break;
      case DType::kF32: {
        const float f = static_cast<float>(values[i]);  // round to nearest even
        std::memcpy(p + 4 * i, &f, 4);
        break;
      }
      case DType::kF16:
      case DType::kBF16: {
        const uint16_t h = static_cast<uint16_t>(
            dtype == DType::kF16 ? RoundDouble(values[i], 5, 10) : RoundDouble(values[i], 8, 7));
        std::memcpy(p + 2 * i, &h, 2);
        break;
      }
      default:
        LETHE_CHECK(false, "unreachable");
    }
  }
  return a;
}

Array Array::FromInt64(const std::vector<int64_t>& values, std::vector<int64_t> shape) {
  Array a;
  a.dtype = DType::kI64;
  a.shape = std::move(shape);
  LETHE_CHECK(static_cast<int64_t>(values.size()) == a.NumElements(), "values do not match shape");
  a.bytes.resize(values.size() * 8);
  if (!values.empty()) std::memcpy(a.bytes.data(), values.data(), a.bytes.size());
  return a;
}

}  // namespace lethe::io
