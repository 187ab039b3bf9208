// A flat JSON record kept under a key of a model file's __metadata__ (lethe_dp,
// lethe_certified): the shared strict reader. Files come from elsewhere, so the object is
// parsed one level deep (nesting is refused before it is built), nothing read is quoted
// back, every key must be bound to a field of the record, and a wrong type is one error
// naming the file, the metadata key and the field (docs/formats.md, docs/security.md).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lethe {

struct MetadataFields {
  std::vector<std::pair<const char*, std::string*>> text;
  std::vector<std::pair<const char*, double*>> real;
  std::vector<std::pair<const char*, int64_t*>> count;  // integers >= 0
  bool reals_nonnegative = false;                      // every real field >= 0 (and not NaN)
};

// Fills the bound fields from `text`, the value of __metadata__[name] in the file `where`.
void ParseMetadataRecord(const std::string& text, const std::string& where,
                         const std::string& name, const MetadataFields& fields);

// The error for a record that parsed but says something impossible:
// "WHERE: __metadata__["NAME"]: WHAT".
[[noreturn]] void MetadataRecordError(const std::string& where, const std::string& name,
                                      const std::string& what);

}  // namespace lethe
