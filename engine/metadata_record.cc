#include "engine/metadata_record.h"

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace lethe {

void MetadataRecordError(const std::string& where, const std::string& name,
                         const std::string& what) {
  Fail(where, ": __metadata__[\"", name, "\"]", what.empty() ? "" : ": ", what);
}

void ParseMetadataRecord(const std::string& text, const std::string& where,
                         const std::string& name, const MetadataFields& fields) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > 1) throw Error("nested");
      return true;
    });
  } catch (const nlohmann::json::exception&) {
    Fail(where, ": __metadata__[\"", name, "\"] is not valid JSON");
  } catch (const Error&) {
    Fail(where, ": __metadata__[\"", name, "\"] must be a flat object");
  }
  auto bad = [&](const std::string& what) { MetadataRecordError(where, name, what); };
  if (!j.is_object()) bad("must be an object");
  auto find = [](const auto& table, const std::string& key) {
    for (const auto& [k, field] : table)
      if (key == k) return field;
    return static_cast<decltype(table.front().second)>(nullptr);
  };
  for (const auto& [key, v] : j.items()) {
    if (std::string* field = find(fields.text, key)) {
      if (!v.is_string()) bad("\"" + key + "\" must be a string");
      *field = v.get<std::string>();
    } else if (double* field = find(fields.real, key)) {
      const bool ok = v.is_number() && (!fields.reals_nonnegative || v.get<double>() >= 0);
      if (!ok) bad("\"" + key + "\" must be a number" + (fields.reals_nonnegative ? " >= 0" : ""));
      *field = v.get<double>();
    } else if (int64_t* field = find(fields.count, key)) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0)
        bad("\"" + key + "\" must be an integer >= 0");
      *field = v.get<int64_t>();
    } else {
      std::string known;
      auto add = [&](const auto& table) {
        for (const auto& [k, f] : table) known += (known.empty() ? "" : ", ") + std::string(k);
      };
      add(fields.text), add(fields.real), add(fields.count);
      bad("unknown key (known: " + known + ")");
    }
  }
}

}  // namespace lethe
