#include "tools/lethe/forgotten_data.h"

#include <algorithm>
#include <iostream>

namespace lethe::cli {

std::optional<std::vector<int64_t>> RowsKeptNoted(const ForgetHistory& forgotten,
                                                  const io::Dataset& data,
                                                  const std::string& command,
                                                  const std::string& model_path) {
  if (forgotten.ids.empty()) return std::nullopt;
  std::vector<int64_t> rows = RowsNotForgotten(data, forgotten);
  const int64_t left_out = data.n - static_cast<int64_t>(rows.size());
  const size_t requests = forgotten.requests.size();
  std::cerr << "lethe " << command << ": note: " << model_path << " has forgotten "
            << forgotten.ids.size() << " id(s) in " << requests << " deletion request"
            << (requests == 1 ? "" : "s") << "; ";
  if (left_out == 0) {
    std::cerr << "none of them is in " << data.path << "\n";
    return std::nullopt;
  }
  std::cerr << left_out << " of them are in " << data.path << " and are left out of it ("
            << rows.size() << " examples remain; lethe inspect lists them)\n";
  return rows;
}

io::Dataset ExcludeForgotten(const ForgetHistory& forgotten, io::Dataset data,
                             const std::string& command, const std::string& model_path) {
  const auto rows = RowsKeptNoted(forgotten, data, command, model_path);
  return rows ? SelectRows(data, *rows) : data;
}

ForgetHistory UnionOfForgotten(const std::vector<const ForgetHistory*>& histories) {
  ForgetHistory all;
  for (const ForgetHistory* h : histories) {
    all.ids.insert(all.ids.end(), h->ids.begin(), h->ids.end());
    all.requests.insert(all.requests.end(), h->requests.begin(), h->requests.end());
  }
  std::sort(all.ids.begin(), all.ids.end());
  all.ids.erase(std::unique(all.ids.begin(), all.ids.end()), all.ids.end());
  return all;
}

}  // namespace lethe::cli
