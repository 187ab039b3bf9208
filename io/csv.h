// Minimal RFC 4180 CSV reader: a header row, comma separated, optional double quotes
// ("" escapes a quote), \n or \r\n line ends, blank trailing lines ignored. Every row
// must have as many fields as the header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lethe::io {

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> row_lines;  // 1-based line on which each row starts (for messages)
};

CsvTable ReadCsv(const std::string& path);  // throws lethe::Error "PATH:LINE: problem"

// Formats a double with 17 significant digits (round-trips exactly), "nan"/"inf" spelled as numpy reads them.
std::string FormatDouble(double value);

}  // namespace lethe::io
