// libFuzzer harness: a spec parsed, and its architecture built for a small input with
// widths from the spec (the overflow checks of engine/architecture.cc).
#include <string>

#include "common/error.h"
#include "engine/architecture.h"
#include "io/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const lethe::io::ModelSpec spec = lethe::io::ModelSpec::Parse(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
    lethe::io::ModelSpec::Parse(spec.ToJson(), "fuzz.json: round trip");
    lethe::ArchitectureSource source;
    source.example_shape = lethe::Shape{8};
    source.data_output_width = [] { return int64_t{3}; };
    lethe::Architecture::Build(spec, source, "fuzz.json");
  } catch (const lethe::Error&) {
  }
  return 0;
}
