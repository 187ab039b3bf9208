// Forget sets and id lookups (declared in io/dataset.h).
#include <unordered_map>

#include "common/error.h"
#include "common/quote.h"
#include "io/atomic_file.h"
#include "io/dataset.h"
#include "io/parse_number.h"

namespace lethe::io {

std::vector<int64_t> Dataset::RowsOf(const std::vector<int64_t>& wanted,
                                     const std::string& what) const {
  std::unordered_map<int64_t, int64_t> row_of;
  row_of.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) row_of.emplace(ids[i], static_cast<int64_t>(i));
  std::vector<int64_t> rows;
  rows.reserve(wanted.size());
  for (int64_t id : wanted) {
    const auto it = row_of.find(id);
    if (it == row_of.end()) Fail(what, ": unknown id ", id, " (not in ", path, ")");
    rows.push_back(it->second);
  }
  return rows;
}

std::vector<int64_t> ReadIdFile(const std::string& path) {
  const std::string text = ReadFile(path);
  std::vector<int64_t> ids;
  std::unordered_map<int64_t, int64_t> line_of;
  int64_t line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    ++line;
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view content(text.data() + pos, eol - pos);
    pos = eol + 1;
    content = TrimSpace(content.substr(0, content.find('#')));
    if (content.empty()) continue;
    int64_t id;
    if (!ParseInt64Field(content, &id))
      Fail(path, ":", line, ": not an integer id: ", Quote(content));
    const auto [it, inserted] = line_of.emplace(id, line);
    if (!inserted)
      Fail(path, ":", line, ": duplicate id ", id, " (first on line ", it->second, ")");
    ids.push_back(id);
  }
  if (ids.empty()) Fail(path, ": empty forget set");
  return ids;
}

std::vector<int64_t> ParseIdList(const std::string& list, const std::string& what) {
  if (TrimSpace(list).empty()) Fail(what, ": empty forget set");
  std::vector<int64_t> ids;
  std::unordered_map<int64_t, size_t> seen;
  size_t pos = 0;
  while (true) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    const std::string_view item = TrimSpace(std::string_view(list).substr(pos, comma - pos));
    if (item.empty()) Fail(what, ": empty item in id list ", Quote(list));
    int64_t id;
    if (!ParseInt64Field(item, &id)) Fail(what, ": not an integer id: ", Quote(item));
    if (!seen.emplace(id, ids.size()).second) Fail(what, ": duplicate id ", id);
    ids.push_back(id);
    if (comma == list.size()) break;
    pos = comma + 1;
  }
  return ids;
}

}  // namespace lethe::io
