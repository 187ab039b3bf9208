// CSV as in RFC 4180 (https://www.rfc-editor.org/rfc/rfc4180), read strictly: a quote
// may only open a field or, doubled, appear inside a quoted one.
#include "io/csv.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_set>

#include "common/error.h"
#include "common/quote.h"
#include "io/atomic_file.h"

namespace lethe::io {

// Far wider than any table lethe can train on; bounds the header's memory (a header row
// of 10 million commas would otherwise be 10 million strings).
constexpr size_t kMaxCsvColumns = size_t{1} << 20;

class CsvReader::Parser {
 public:
  Parser(const std::string& text, const std::string& path) : text_(text), path_(path) {
    if (text_.compare(0, 3, "\xEF\xBB\xBF") == 0) pos_ = 3;  // UTF-8 byte order mark
  }

  // Parses one record into *fields (cleared first). Fields past `max_fields` are
  // counted, not stored; *count is the record's field count. *blank: an empty line
  // (one unquoted empty field). False at the end of the text.
  bool Next(std::vector<std::string>* fields, size_t max_fields, size_t* count, int64_t* line,
            bool* blank) {
    if (pos_ >= text_.size()) return false;
    *line = line_;
    fields->clear();
    *count = 0;
    bool quoted_any = false;
    std::string field;
    while (true) {
      field.clear();
      const bool keep = *count < max_fields;
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
          if (keep) field += c;
        }
        if (!AtFieldEnd()) Fail(path_, ":", line_, ": unexpected character after a closing quote");
      } else {
        const size_t start = pos_;
        while (!AtFieldEnd()) {
          if (text_[pos_] == '"')
            Fail(path_, ":", line_, ": '\"' inside an unquoted field (quote the whole field)");
          ++pos_;
        }
        if (keep) field.assign(text_, start, pos_ - start);
      }
      if (keep) fields->push_back(field);
      ++*count;
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      SkipLineEnd();
      break;
    }
    *blank = !quoted_any && *count == 1 && fields->size() == 1 && (*fields)[0].empty();
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

CsvReader::CsvReader(const std::string& path) : path_(path), text_(ReadFile(path)) {
  parser_ = std::make_unique<Parser>(text_, path_);
  max_rows_ = static_cast<uint64_t>(std::count(text_.begin(), text_.end(), '\n')) + 1;
  // The header: the first record. Its field count is not known in advance; its names
  // must be distinct.
  size_t count = 0;
  int64_t line = 0;
  bool blank = false;
  if (!parser_->Next(&header_, kMaxCsvColumns, &count, &line, &blank))
    Fail(path_, ": empty file (no header row)");
  if (count > kMaxCsvColumns)
    Fail(path_, ":", line, ": header has ", count, " columns, more than the limit of ",
         kMaxCsvColumns);
  if (blank) {
    const int64_t header_line = line;
    std::vector<std::string> rest;
    while (parser_->Next(&rest, 1, &count, &line, &blank))
      if (!blank) Fail(path_, ":", header_line, ": blank header row");
    Fail(path_, ": empty file (no header row)");
  }
  std::unordered_set<std::string> names;
  for (const std::string& name : header_)
    if (!names.insert(name).second) Fail(path_, ":", line, ": duplicate column ", Quote(name));
}

CsvReader::~CsvReader() = default;

bool CsvReader::Next(std::vector<std::string>* fields, int64_t* line) {
  const size_t width = header_.size();
  // Blank lines are only allowed at the end, or as the one empty field of a one-column
  // file: they are counted until a record shows whether they were trailing. In a
  // one-column file, a record after them is held back while they are handed out as rows
  // (blank lines are single, consecutive lines).
  if (held_) {
    if (pending_blank_ > 0) {
      fields->assign(1, std::string());
      *line = pending_blank_line_++;
      --pending_blank_;
      return true;
    }
    *fields = std::move(held_fields_);
    *line = held_line_;
    held_ = false;
    return true;
  }
  size_t count = 0;
  bool blank = false;
  while (parser_->Next(fields, width, &count, line, &blank)) {
    if (blank) {
      if (pending_blank_++ == 0) pending_blank_line_ = *line;
      continue;
    }
    if (pending_blank_ > 0 && width > 1) Fail(path_, ":", pending_blank_line_, ": blank line");
    if (count != width)
      Fail(path_, ":", *line, ": row has ", count, " fields but the header has ", width);
    if (pending_blank_ > 0) {
      held_fields_ = *fields;
      held_line_ = *line;
      held_ = true;
      return Next(fields, line);
    }
    return true;
  }
  return false;  // only blank lines were left: trailing, ignored
}

CsvTable ReadCsv(const std::string& path) {
  CsvReader reader(path);
  CsvTable table;
  table.header = reader.header();
  std::vector<std::string> fields;
  int64_t line = 0;
  while (reader.Next(&fields, &line)) {
    table.rows.push_back(fields);
    table.row_lines.push_back(line);
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
