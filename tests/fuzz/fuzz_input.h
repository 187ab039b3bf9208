// Shared by the fuzz harnesses: the parsers read paths, so each input is written to a
// scratch file (under $TMPDIR, one per process) with the extension the parser expects.
// Only lethe::Error is an acceptable outcome for bad input: anything else (another
// exception, a crash, a sanitizer report) is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace lethe::fuzz {

// Removes the scratch file when the process ends.
struct ScratchCleanup {
  std::string path;
  ~ScratchCleanup() {
    if (!path.empty()) std::remove(path.c_str());
  }
};

inline std::string ScratchFile(const uint8_t* data, size_t size, const char* extension) {
  static ScratchCleanup cleanup;
  const char* tmp = std::getenv("TMPDIR");
  const std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/lethe_fuzz_" +
                           std::to_string(::getpid()) + extension;
  cleanup.path = path;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) std::abort();
  return path;
}

}  // namespace lethe::fuzz
