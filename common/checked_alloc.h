// Allocations whose size comes from an input (a file's shape, a spec's width, a label).
//
// Why one helper: a size read from a file can overflow when multiplied, can be absurd
// (10^12 parameters), or can simply not fit; each of those must be an error that names
// the file, the field and the number of bytes, never an abort, a wrapped size or a bare
// "out of memory". Every such allocation goes through ResizeChecked / ReserveChecked:
//   - count * element size is checked for overflow;
//   - the result is checked against MemoryLimitBytes(): the machine's physical memory,
//     or LETHE_MAX_MEMORY (bytes, or with a K/M/G/T suffix) when that is set;
//   - std::bad_alloc becomes lethe::Error "WHAT: out of memory allocating N bytes (...)".
#pragma once

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "common/error.h"

namespace lethe {

// The most bytes one input-sized allocation may take (see above). Read once.
inline uint64_t MemoryLimitBytes() {
  static const uint64_t limit = [] {
    if (const char* text = std::getenv("LETHE_MAX_MEMORY"); text && *text) {
      char* end = nullptr;
      errno = 0;
      const unsigned long long value = std::strtoull(text, &end, 10);
      // An optional binary suffix: K, M, G or T (either case).
      const char kSuffixes[] = "KMGT";
      uint64_t scale = 1;
      if (*end) {
        if (const char* s =
                std::strchr(kSuffixes, std::toupper(static_cast<unsigned char>(*end)))) {
          scale = uint64_t{1} << (10 * (s - kSuffixes + 1));
          ++end;
        }
      }
      uint64_t bytes;
      if (errno || end == text || *end || __builtin_mul_overflow(uint64_t{value}, scale, &bytes))
        Fail("LETHE_MAX_MEMORY=", text, ": expected a number of bytes (e.g. 8G)");
      return bytes;
    }
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return uint64_t{1} << 46;  // unknown: 64 TiB
    return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
  }();
  return limit;
}

// "1.5 GB"-style size for messages.
inline std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"bytes", "kB", "MB", "GB", "TB", "PB", "EB"};
  double value = static_cast<double>(bytes);
  int u = 0;
  while (value >= 1000 && u < 6) value /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", value, units[u]);
  return buf;
}

// count * element_size in bytes; throws "WHAT: COUNT elements of B bytes ..." when that
// overflows or exceeds MemoryLimitBytes(). `what` names the file and the field.
inline uint64_t CheckedBytes(uint64_t count, uint64_t element_size, const std::string& what) {
  uint64_t bytes;
  if (__builtin_mul_overflow(count, element_size, &bytes))
    Fail(what, ": ", count, " elements of ", element_size, " bytes overflow 64 bits");
  if (bytes > MemoryLimitBytes())
    Fail(what, ": needs ", HumanBytes(bytes), " (", count, " elements), more than the ",
         HumanBytes(MemoryLimitBytes()), " this machine allows (",
         std::getenv("LETHE_MAX_MEMORY") ? "LETHE_MAX_MEMORY" : "physical memory", ")");
  return bytes;
}

// vector.resize(count), with the checks above; allocation failure names `what`.
template <typename Vector>
void ResizeChecked(Vector& vector, uint64_t count, const std::string& what) {
  const uint64_t bytes = CheckedBytes(count, sizeof(typename Vector::value_type), what);
  try {
    vector.resize(static_cast<size_t>(count));
  } catch (const std::bad_alloc&) {
    Fail(what, ": out of memory allocating ", HumanBytes(bytes), " (", count, " elements)");
  }
}

// vector.reserve(count), with the same checks: capacity without touching the memory, so
// that pages are only made resident as validated data arrives.
template <typename Vector>
void ReserveChecked(Vector& vector, uint64_t count, const std::string& what) {
  const uint64_t bytes = CheckedBytes(count, sizeof(typename Vector::value_type), what);
  try {
    vector.reserve(static_cast<size_t>(count));
  } catch (const std::bad_alloc&) {
    Fail(what, ": out of memory allocating ", HumanBytes(bytes), " (", count, " elements)");
  }
}

}  // namespace lethe
