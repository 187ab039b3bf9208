// libFuzzer harness: a forget-set file and the same bytes as a --forget-ids list.
#include <string>

#include "common/error.h"
#include "io/dataset.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lethe::fuzz::ScratchFile(data, size, ".txt");
  try {
    lethe::io::ReadIdFile(path);
  } catch (const lethe::Error&) {
  }
  try {
    lethe::io::ParseIdList(std::string(reinterpret_cast<const char*>(data), size), "--forget-ids");
  } catch (const lethe::Error&) {
  }
  return 0;
}
