// Quoting untrusted text (names, values, fields from input files) into error messages.
//
// Why: an error is one stderr line that users and scripts trust. Text copied from a
// hostile file could otherwise end that line and print a second one that impersonates
// lethe ("lethe eval: loss 0.0 accuracy 1.0"), send terminal escapes (ESC[2J), embed a
// NUL, or make a 50 MB line. So every byte that is not printable is written as an
// escape (\n, \t, \x1b, ...; C1 controls and invalid UTF-8 included), and the text is
// cut to a bounded length with the original size noted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lethe {

// Longest piece of input quoted in one message, in bytes of the original text.
constexpr size_t kMaxQuotedBytes = 200;
// Longest error line main() prints; anything longer is cut (a second line of defence).
constexpr size_t kMaxErrorLineBytes = 4096;

namespace detail {

// Length of the valid UTF-8 sequence at s[i] encoding a printable code point (not a C0
// or C1 control, not a surrogate, not overlong), or 0.
inline size_t PrintableUtf8Length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c >= 0x20 && c < 0x7f) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2, cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3, cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (byte(i + k) & 0x3f);
  }
  const bool overlong = (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
  if (overlong || cp < 0xa0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return 0;
  return n;
}

}  // namespace detail

// `text` with every non-printable byte escaped, cut after `max_bytes` input bytes
// ("... (N bytes)" appended). The result never contains a control character, and text
// without one comes back unchanged (so escaping twice is harmless).
inline std::string Escape(std::string_view text, size_t max_bytes = kMaxQuotedBytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  size_t i = 0;
  while (i < text.size() && i < max_bytes) {
    const size_t n = detail::PrintableUtf8Length(text, i);
    if (n > 0) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    const unsigned char c = static_cast<unsigned char>(text[i++]);
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\x";
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
  }
  if (i < text.size()) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

// Escape(text) in single quotes: 'name'. For names and values quoted from input.
inline std::string Quote(std::string_view text, size_t max_bytes = kMaxQuotedBytes) {
  return "'" + Escape(text, max_bytes) + "'";
}

}  // namespace lethe
