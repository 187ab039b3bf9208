// libFuzzer harness: one .npy in memory (preamble, dict header, dtype, shape, data).
#include <string>

#include "common/error.h"
#include "io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const lethe::io::Array a =
        lethe::io::ParseNpy(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npy");
    (void)a.ToDouble("fuzz.npy");
  } catch (const lethe::Error&) {
  }
  return 0;
}
