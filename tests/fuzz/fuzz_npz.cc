// libFuzzer harness: an .npz read as a dataset (zip directory, members, npy headers,
// X / y / ids checks).
#include "common/error.h"
#include "io/dataset.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lethe::fuzz::ScratchFile(data, size, ".npz");
  try {
    lethe::io::LoadDataset(path);
  } catch (const lethe::Error&) {
  }
  return 0;
}
