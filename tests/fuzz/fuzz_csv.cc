// libFuzzer harness: a CSV read as a dataset (fields, quotes, labels, numbers), and read
// again by rows picked by id (io/dataset_rows.h).
#include "common/error.h"
#include "io/dataset.h"
#include "tests/fuzz/dataset_rows_check.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lethe::fuzz::ScratchFile(data, size, ".csv");
  // LoadDataset, then the rows picked by id against it (tests/fuzz/dataset_rows_check.h).
  lethe::fuzz::CheckRowsAgainstWhole(path);
  return 0;
}
