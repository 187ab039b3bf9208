// libFuzzer harness: a safetensors file read as a tensor file and as a model (embedded
// spec, widths, the parameter vector).
#include "common/error.h"
#include "engine/model.h"
#include "io/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lethe::fuzz::ScratchFile(data, size, ".safetensors");
  try {
    lethe::io::ReadSafetensors(path);
    lethe::LoadModel(path);
  } catch (const lethe::Error&) {
  }
  return 0;
}
