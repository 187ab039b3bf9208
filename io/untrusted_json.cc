#include "io/untrusted_json.h"

#include <cstdio>
#include <set>
#include <vector>

#include "common/error.h"
#include "common/quote.h"

namespace lethe::io {

using nlohmann::json;

json ParseUntrustedJson(std::string_view text, const std::string& what,
                        const std::string& subject) {
  // The callback runs as values are parsed, so a limit stops the parse where it is hit,
  // before the rest of a hostile text is built into a tree.
  const std::string has = subject.empty() ? "" : subject + "has ";
  std::vector<std::set<std::string>> keys;  // one set of keys per open object
  uint64_t values = 0;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth)
          Fail(what, ": ", subject, "nests deeper than ", kMaxJsonDepth, " levels");
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        [[fallthrough]];
      case json::parse_event_t::value:
        if (++values > kMaxJsonValues)
          Fail(what, ": ", has, "more than ", kMaxJsonValues, " JSON values");
        break;
      case json::parse_event_t::object_end:
        keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get_ref<const std::string&>()).second)
          Fail(what, ": ", has, "duplicate key \"", Escape(parsed.get_ref<const std::string&>()),
               "\"");
        break;
      case json::parse_event_t::array_end:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    // nlohmann quotes the last token it read; Escape bounds and cleans it.
    Fail(what, ": ", subject, subject.empty() ? "" : "is ",
         "not valid JSON: ", Escape(e.what(), 300));
  }
}

std::string JsonKind(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "the string " + Quote(value.get_ref<const std::string&>(), 40);
    case json::value_t::boolean:
      return value.get<bool>() ? "true" : "false";
    case json::value_t::number_integer:
      return std::to_string(value.get<int64_t>());
    case json::value_t::number_unsigned:
      return std::to_string(value.get<uint64_t>());
    case json::value_t::number_float: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", value.get<double>());
      return buf;
    }
    default:
      return "a binary value";
  }
}

}  // namespace lethe::io
