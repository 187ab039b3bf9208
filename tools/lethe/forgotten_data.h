// The training data a command must use for a model that has forgotten examples
// (engine/forgotten.h): the file's rows without the forgotten ids.
#pragma once

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

// The union of several models' forgotten ids (compare).
ForgetHistory UnionOfForgotten(const std::vector<const ForgetHistory*>& histories);

}  // namespace lethe::cli
