// libFuzzer harness: a deletion ledger (`unlearn --ledger`, `ledger verify`, `inspect
// --ledger`). Reading must stop at the first bad line with a message, never crash; the
// head lookup throws lethe::Error on a broken chain.
#include <string>

#include "common/error.h"
#include "io/ledger.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lethe::fuzz::ScratchFile(data, size, ".jsonl");
  try {
    const lethe::io::LedgerRead read = lethe::io::ReadLedger(path);
    // Every entry that passed must re-serialise to a line with the hash it was read with.
    for (const auto& e : read.entries) {
      std::string hash;
      lethe::io::LedgerLine(e, &hash);
      if (hash != e.hash) __builtin_trap();
    }
  } catch (const lethe::Error&) {
  }
  try {
    lethe::io::LedgerHead(path);
  } catch (const lethe::Error&) {
  }
  return 0;
}
