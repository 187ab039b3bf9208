// libFuzzer harness: a CSV read as a dataset (fields, quotes, labels, numbers).
#include "common/error.h"
#include "io/dataset.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lethe::fuzz::ScratchFile(data, size, ".csv");
  try {
    lethe::io::LoadDataset(path);
  } catch (const lethe::Error&) {
  }
  return 0;
}
