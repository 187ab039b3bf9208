#include "engine/forgotten.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/sha256.h"

namespace lethe {

bool ForgetHistory::Contains(int64_t id) const {
  return std::binary_search(ids.begin(), ids.end(), id);
}

void ForgetHistory::Add(const std::vector<int64_t>& removed, ForgetRequest request) {
  ids.insert(ids.end(), removed.begin(), removed.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  requests.push_back(std::move(request));
}

std::string ForgetHistory::ToJson() const {
  nlohmann::json j;
  j["ids"] = ids;
  j["requests"] = nlohmann::json::array();
  for (const ForgetRequest& r : requests)
    j["requests"].push_back({{"method", r.method},
                             {"parent_sha256", r.parent_sha256},
                             {"ids_sha256", r.ids_sha256},
                             {"k", r.k},
                             {"utc", r.utc}});
  return j.dump();
}

ForgetHistory ForgetHistory::Parse(const std::string& text, const std::string& where) {
  // The value comes from a file: never quote it back (it may be huge or hostile), only
  // say which field is wrong. Depth is bounded: the callback refuses anything nested
  // deeper than this format's 3 levels before it is built.
  constexpr int kMaxDepth = 3;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > kMaxDepth) throw Error("nested too deeply");
      return true;
    });
  } catch (const nlohmann::json::exception&) {
    Fail(where, ": __metadata__[\"lethe_forgotten\"] is not valid JSON");
  } catch (const Error&) {
    Fail(where, ": __metadata__[\"lethe_forgotten\"] is nested deeper than its format allows");
  }
  auto bad = [&](const char* what) -> void {
    Fail(where, ": __metadata__[\"lethe_forgotten\"]: ", what);
  };
  if (!j.is_object()) bad("must be an object");
  ForgetHistory h;
  for (const auto& [key, value] : j.items()) {
    if (key == "ids") {
      if (!value.is_array()) bad("\"ids\" must be an array of integers");
      h.ids.reserve(value.size());
      for (const auto& v : value) {
        if (!v.is_number_integer()) bad("\"ids\" must be an array of integers");
        h.ids.push_back(v.get<int64_t>());
      }
      for (size_t i = 1; i < h.ids.size(); ++i)
        if (h.ids[i] <= h.ids[i - 1]) bad("\"ids\" must be sorted and unique");
    } else if (key == "requests") {
      if (!value.is_array()) bad("\"requests\" must be an array");
      for (const auto& r : value) {
        if (!r.is_object()) bad("each request must be an object");
        ForgetRequest q;
        for (const auto& [k, v] : r.items()) {
          if (k == "k") {
            if (!v.is_number_integer() || v.get<int64_t>() < 0) bad("a request's \"k\" must be an integer >= 0");
            q.k = v.get<int64_t>();
            continue;
          }
          std::string* field = k == "method"          ? &q.method
                               : k == "parent_sha256" ? &q.parent_sha256
                               : k == "ids_sha256"    ? &q.ids_sha256
                               : k == "utc"           ? &q.utc
                                                      : nullptr;
          if (!field) bad("a request has an unknown key");
          if (!v.is_string()) bad("a request's fields must be strings (k an integer)");
          *field = v.get<std::string>();
        }
        h.requests.push_back(std::move(q));
      }
    } else {
      bad("unknown key (known: ids, requests)");
    }
  }
  return h;
}

std::string IdsSha256(const std::vector<int64_t>& ids) {
  std::string canonical;
  for (int64_t id : ids) canonical += std::to_string(id) + "\n";
  return io::Sha256Hex(canonical);
}

std::string UtcNow() {
  // SOURCE_DATE_EPOCH (reproducible-builds.org): a fixed time, so that a run can write the
  // same bytes twice; ignored unless it is a plain non-negative decimal.
  std::time_t now = std::time(nullptr);
  if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH"); epoch && *epoch && std::strlen(epoch) <= 12 &&
                                                            std::strspn(epoch, "0123456789") == std::strlen(epoch))
    now = static_cast<std::time_t>(std::stoll(epoch));
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::vector<int64_t> RowsNotForgotten(const io::Dataset& data, const ForgetHistory& forgotten) {
  std::vector<int64_t> rows;
  rows.reserve(data.n);
  for (int64_t i = 0; i < data.n; ++i)
    if (!forgotten.Contains(data.ids[i])) rows.push_back(i);
  return rows;
}

io::Dataset SelectRows(const io::Dataset& data, const std::vector<int64_t>& rows) {
  io::Dataset out;
  out.path = data.path;
  out.n = static_cast<int64_t>(rows.size());
  out.d = data.d;
  out.target_width = data.target_width;
  out.integer_targets = data.integer_targets;
  if (data.streamed) {  // rows of a streamed X: which file rows, not their values
    out.streamed = data.streamed;
    out.example_shape = data.example_shape;
    out.integer_features = data.integer_features;
    out.x_rows.resize(out.n);
    for (int64_t r = 0; r < out.n; ++r)
      out.x_rows[r] = data.x_rows.empty() ? rows[r] : data.x_rows[rows[r]];
  } else {
    out.X.resize(out.n * out.d);
  }
  out.y.resize(out.n * out.target_width);
  out.ids.resize(out.n);
  for (int64_t r = 0; r < out.n; ++r) {
    const int64_t i = rows[r];
    if (!data.streamed)
      std::memcpy(out.X.data() + r * out.d, data.X.data() + i * data.d, sizeof(double) * data.d);
    std::copy_n(data.y.begin() + i * data.target_width, data.target_width,
                out.y.begin() + r * out.target_width);
    out.ids[r] = data.ids[i];
  }
  return out;
}

}  // namespace lethe
