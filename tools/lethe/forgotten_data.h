// The training data a command must use for a model that has forgotten examples
// (engine/forgotten.h): the file's rows without the forgotten ids.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/model.h"
#include "io/dataset.h"

namespace lethe::cli {

// `data` without the rows whose ids `forgotten` lists. When any are present, says on stderr
// (always: it qualifies every number the command prints) how many were left out and why.
// `command` is the subcommand's name, `model_path` the model the record came from.
io::Dataset ExcludeForgotten(const ForgetHistory& forgotten, io::Dataset data,
                             const std::string& command, const std::string& model_path);

// The rows ExcludeForgotten keeps, saying on stderr what it says; nullopt when it keeps all.
// Reads only data's ids, n and path (a Dataset without X: SISA under mpirun, sisa_rows.h).
std::optional<std::vector<int64_t>> RowsKeptNoted(const ForgetHistory& forgotten,
                                                  const io::Dataset& data,
                                                  const std::string& command,
                                                  const std::string& model_path);

// The union of several models' forgotten ids (compare).
ForgetHistory UnionOfForgotten(const std::vector<const ForgetHistory*>& histories);

}  // namespace lethe::cli
