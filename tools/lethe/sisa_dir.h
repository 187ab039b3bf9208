// A SISA ensemble directory as the commands read it (engine/sisa/manifest.h): the manifest,
// checked against the files it names, and the commands that accept an ensemble wherever
// they accept a model (lethe eval, lethe inspect).
#pragma once

#include <string>

#include "engine/sisa/manifest.h"
#include "tools/lethe/cli.h"

namespace lethe::cli {

// Whether `path` is a directory holding a manifest.json.
bool IsEnsembleDir(const std::string& path);

// DIR/manifest.json, parsed, with every checkpoint it names present and of the SHA-256 it
// records; throws lethe::Error naming the file and the problem.
sisa::Manifest ReadEnsemble(const std::string& dir);

// lethe eval --model DIR --data DATA: the ensemble's accuracy under its aggregation (and,
// for mean, the log loss of the mean probabilities), with each constituent's accuracy.
int EvalEnsemble(const std::string& dir, const std::string& data_path, const CommonOptions& common);

// lethe inspect DIR: shards, slices, sizes, training times and the deletion history.
int InspectEnsemble(const std::string& dir, bool json);

}  // namespace lethe::cli
