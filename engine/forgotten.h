// What a model has forgotten: the ids of the training examples it was made without
// (patched away by `lethe unlearn`, or left out by `lethe train --forget`), and the
// deletion requests that did it, in order.
//
// A model that forgot S is (approximately, for a patch) the optimum of the objective over
// the training data without S. Every later analysis must use that objective, not the full
// data's: a second deletion request solved over "all rows minus its own ids" would pull
// the model back towards S (measured: request 1's forget-set loss went from the retrained
// 0.997 back to 0.9315). So the record travels inside the model file
// (__metadata__["lethe_forgotten"], docs/formats.md), and every command that takes
// training data removes those ids from it and says so.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/dataset.h"

namespace lethe {

// One deletion request that this model (or one of its ancestors) served.
struct ForgetRequest {
  std::string method;         // "newton", "gradient-ascent", "retrain", …
  std::string parent_sha256;  // SHA-256 of the model file it was applied to ("" for none)
  std::string ids_sha256;     // SHA-256 of the request's ids, one decimal per line, "\n"-ended
  int64_t k = 0;              // ids the request removed
  std::string utc;            // when, ISO 8601 ("2026-11-30T01:02:03Z")
};

struct ForgetHistory {
  std::vector<int64_t> ids;             // every forgotten id, sorted, unique
  std::vector<ForgetRequest> requests;  // oldest first

  bool empty() const { return ids.empty() && requests.empty(); }
  bool Contains(int64_t id) const;
  // Records a request that removed `removed` (ids not yet in `ids`).
  void Add(const std::vector<int64_t>& removed, ForgetRequest request);

  // The metadata value: {"ids": [...], "requests": [{...}, ...]}.
  std::string ToJson() const;
  // Strict: unknown keys, wrong types, unsorted or repeated ids are errors naming `where`.
  static ForgetHistory Parse(const std::string& json, const std::string& where);
};

// SHA-256 of ids in the canonical form ForgetRequest::ids_sha256 uses.
std::string IdsSha256(const std::vector<int64_t>& ids);
// The current time as ISO 8601 UTC, seconds; SOURCE_DATE_EPOCH (seconds since 1970), when
// set, instead: the same run then writes the same bytes.
std::string UtcNow();

// The rows of `data` whose id is not in `forgotten` (data order).
std::vector<int64_t> RowsNotForgotten(const io::Dataset& data, const ForgetHistory& forgotten);
// A copy of `data` with only `rows` (in that order); path kept.
io::Dataset SelectRows(const io::Dataset& data, const std::vector<int64_t>& rows);

}  // namespace lethe
