// Minimal RFC 4180 CSV reader: a header row, comma separated, optional double quotes
// ("" escapes a quote), \n or \r\n line ends, blank trailing lines ignored. Every row
// must have as many fields as the header.
//
// Rows are streamed: CsvReader hands out one row at a time and checks its field count
// while parsing it, so memory is the file's text plus one row, whatever the file holds
// (a 10 MB row of commas used to become 10 million strings, 839 MB).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lethe::io {

class CsvReader {
 public:
  // Reads the file and its header row. Throws lethe::Error "PATH:LINE: problem".
  explicit CsvReader(const std::string& path);
  ~CsvReader();
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  const std::vector<std::string>& header() const { return header_; }
  uint64_t file_size() const { return text_.size(); }
  // Upper bound on the rows left (line ends in the file), for reserving.
  uint64_t MaxRows() const { return max_rows_; }

  // The next data row into *fields (reused), its 1-based first line into *line; false
  // at the end. Throws on a malformed row or one whose field count differs from the header.
  bool Next(std::vector<std::string>* fields, int64_t* line);

 private:
  class Parser;
  std::string path_;
  std::string text_;
  std::unique_ptr<Parser> parser_;
  std::vector<std::string> header_;
  uint64_t max_rows_ = 0;
  int64_t pending_blank_ = 0;  // blank lines read but not yet known to be trailing
  int64_t pending_blank_line_ = 0;
  bool held_ = false;  // a one-column record read after blank lines, returned after them
  std::vector<std::string> held_fields_;
  int64_t held_line_ = 0;
};

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> row_lines;  // 1-based line on which each row starts (for messages)
};

CsvTable ReadCsv(const std::string& path);  // every row of a CsvReader

// Formats a double with 17 significant digits (round-trips exactly), "nan"/"inf" spelled as numpy reads them.
std::string FormatDouble(double value);

}  // namespace lethe::io
