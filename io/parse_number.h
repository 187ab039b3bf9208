// Internal to lethe_io: whole-field number parsing for CSV cells and id lists. The
// field, less surrounding spaces and tabs, must parse completely; "nan" and "inf" are
// accepted as doubles so callers can reject them with a message of their own.
#pragma once

#include <charconv>
#include <cstdint>
#include <string_view>

namespace lethe::io {

inline std::string_view TrimSpace(std::string_view s) {
  const char* kSpace = " \t\r\n\v\f";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

namespace detail {
// from_chars takes no leading '+'; accept one (not followed by another sign).
inline std::string_view StripPlus(std::string_view s) {
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  return s;
}
}  // namespace detail

inline bool ParseDoubleField(std::string_view field, double* out) {
  const std::string_view s = detail::StripPlus(TrimSpace(field));
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

inline bool ParseInt64Field(std::string_view field, int64_t* out) {
  const std::string_view s = detail::StripPlus(TrimSpace(field));
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace lethe::io
