// Internal to lethe_io: parsing JSON that comes from a file (a safetensors header, a spec).
//
// nlohmann's parser itself copes with any nesting, but everything after it (printing a
// value, destroying it, walking it) recurses, and each value costs ~100 bytes of heap.
// A 130 KB header of arrays nested 66,000 deep overflowed the stack; a 40 MB header of
// small arrays took 1.7 GB. So the parse callback enforces, while parsing:
//   - nesting at most kMaxJsonDepth containers deep (lethe's files need 3);
//   - at most kMaxJsonValues values in all (~100 per tensor would still allow 10,000
//     tensors; real checkpoints have a few thousand at most);
//   - no duplicate key in any object (nlohmann would keep the last one silently, and a
//     file whose meaning depends on which duplicate wins is refused).
// Messages never serialise the parsed values: they quote keys through Quote().
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace lethe::io {

constexpr int kMaxJsonDepth = 16;
constexpr uint64_t kMaxJsonValues = uint64_t{1} << 20;

// Throws lethe::Error "WHAT: SUBJECTis not valid JSON: ...", "WHAT: SUBJECThas duplicate
// key ...", "WHAT: SUBJECTnests deeper than 16 levels", "WHAT: SUBJECThas more than N
// values". `subject` is "header " or empty.
nlohmann::json ParseUntrustedJson(std::string_view text, const std::string& what,
                                  const std::string& subject);

// A short description of a JSON value's kind for messages ("an array", "a string"),
// used instead of printing the (untrusted, possibly huge or deep) value itself.
std::string JsonKind(const nlohmann::json& value);

}  // namespace lethe::io
