// libFuzzer harness: the zip reader alone, every member streamed to its end and checked.
#include <vector>

#include "common/error.h"
#include "io/input_file.h"
#include "io/zip.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lethe::fuzz::ScratchFile(data, size, ".zip");
  try {
    lethe::io::InputFile file(path);
    const std::vector<lethe::io::zip::Entry> entries = lethe::io::zip::ReadDirectory(file);
    std::vector<unsigned char> buffer(1 << 16);
    for (const auto& entry : entries) {
      lethe::io::zip::MemberReader reader(file, entry);
      uint64_t left = entry.uncompressed_size;
      while (left > 0) {
        const size_t n = left < buffer.size() ? static_cast<size_t>(left) : buffer.size();
        reader.Read(buffer.data(), n);
        left -= n;
      }
      reader.Finish();
    }
  } catch (const lethe::Error&) {
  }
  return 0;
}
