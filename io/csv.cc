// CSV as in RFC 4180 (https://www.rfc-editor.org/rfc/rfc4180), read strictly: a quote
// may only open a field or, doubled, appear inside a quoted one.
#include "io/csv.h"

#include <cmath>
#include <cstdio>
#include <set>

#include "common/error.h"
#include "io/atomic_file.h"

namespace lethe::io {
namespace {

struct Record {
  int64_t line = 0;
  std::vector<std::string> fields;
  bool blank = false;  // an empty line (one unquoted empty field)
};

class CsvParser {
 public:
  CsvParser(const std::string& text, const std::string& path) : text_(text), path_(path) {
    if (text_.compare(0, 3, "\xEF\xBB\xBF") == 0) pos_ = 3;  // UTF-8 byte order mark
  }

  bool Next(Record* record) {
    if (pos_ >= text_.size()) return false;
    record->line = line_;
    record->fields.clear();
    bool quoted_any = false;
    while (true) {
      std::string field;
      if (Peek() == '"') {
        quoted_any = true;
        const int64_t open_line = line_;
        ++pos_;
        while (true) {
          if (pos_ >= text_.size()) Fail(path_, ":", open_line, ": unterminated quoted field");
          const char c = text_[pos_++];
          if (c == '"') {
            if (Peek() != '"') break;
            ++pos_;
          } else if (c == '\n') {
            ++line_;
          }
          field += c;
        }
        if (!AtFieldEnd()) Fail(path_, ":", line_, ": unexpected character after a closing quote");
      } else {
        while (!AtFieldEnd()) {
          if (text_[pos_] == '"')
            Fail(path_, ":", line_, ": '\"' inside an unquoted field (quote the whole field)");
          field += text_[pos_++];
        }
      }
      record->fields.push_back(std::move(field));
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      SkipLineEnd();
      break;
    }
    record->blank = !quoted_any && record->fields.size() == 1 && record->fields[0].empty();
    return true;
  }

 private:
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool AtLineEnd() const {
    return pos_ >= text_.size() || text_[pos_] == '\n' ||
           (text_[pos_] == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n');
  }
  bool AtFieldEnd() const { return AtLineEnd() || text_[pos_] == ','; }
  void SkipLineEnd() {
    if (pos_ >= text_.size()) return;
    pos_ += text_[pos_] == '\r' ? 2 : 1;
    ++line_;
  }

  const std::string& text_;
  const std::string& path_;
  size_t pos_ = 0;
  int64_t line_ = 1;
};

}  // namespace

CsvTable ReadCsv(const std::string& path) {
  const std::string text = ReadFile(path);
  CsvParser parser(text, path);
  std::vector<Record> records;
  Record record;
  while (parser.Next(&record)) records.push_back(record);
  while (!records.empty() && records.back().blank) records.pop_back();
  if (records.empty()) Fail(path, ": empty file (no header row)");

  CsvTable table;
  table.header = std::move(records[0].fields);
  std::set<std::string> names;
  for (const std::string& name : table.header)
    if (!names.insert(name).second)
      Fail(path, ":", records[0].line, ": duplicate column '", name, "'");
  for (size_t i = 1; i < records.size(); ++i) {
    Record& r = records[i];
    if (r.blank && table.header.size() > 1) Fail(path, ":", r.line, ": blank line");
    if (r.fields.size() != table.header.size())
      Fail(path, ":", r.line, ": row has ", r.fields.size(), " fields but the header has ",
           table.header.size());
    table.rows.push_back(std::move(r.fields));
    table.row_lines.push_back(r.line);
  }
  return table;
}

std::string FormatDouble(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", value);  // 17 digits always round-trip a double
  return buf;
}

}  // namespace lethe::io
