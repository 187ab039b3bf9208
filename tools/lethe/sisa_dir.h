// A SISA ensemble directory as the commands read it (engine/sisa/manifest.h): the manifest,
// checked against the files it names, and the commands that accept an ensemble wherever
// they accept a model (lethe eval, lethe inspect).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "engine/sisa/manifest.h"
#include "tools/lethe/cli.h"

namespace lethe::cli {

// Whether `path` is a directory holding a manifest.json.
bool IsEnsembleDir(const std::string& path);

// DIR/manifest.json, parsed, with every checkpoint and patch it names present and of the
// SHA-256 it records; throws lethe::Error naming the file and the problem.
sisa::Manifest ReadEnsemble(const std::string& dir);

// `--model PATH` (or --model=PATH) in args names an ensemble directory.
bool ArgsNameEnsemble(const std::vector<std::string>& args);

// --- What the commands that change DIR share (sisa unlearn, unlearn --model DIR) ---

// Tests only (tests/python/test_sisa*.py): dies at the named stage as a kill would, without
// unwinding, when LETHE_TEST_CRASH_AT names it.
void CrashPointForTests(const char* stage);
std::unordered_map<int64_t, int64_t> RowOfId(const io::Dataset& data);
// Best effort: makes renames in `dir` durable.
void SyncDirectory(const std::string& dir);
// The files of DIR that the manifest does not name: checkpoints and patches of a run that
// crashed before its commit, or replaced by the last commit; temporary files.
std::vector<std::string> Unreferenced(const std::string& dir, const sisa::Manifest& m);
// Takes DIR/.lock (flock, held until the process exits): one change at a time per DIR.
void LockEnsemble(const std::string& dir);
// The training data for a change of DIR: `data_path` (default: the recorded path, which is
// then stored into data_path). Accepted when it is byte for byte the recorded file, or
// (lethe-sisa/2) when every cell's rows are the recorded ones and its other ids are all
// forgotten (rows deleted or not); anything else is refused naming the first mismatching
// cell (engine/sisa/cell_rows.h). `sha256` receives the file's SHA-256.
io::Dataset LoadEnsembleData(const sisa::Manifest& m, const std::string& dir,
                             std::string& data_path, const CommonOptions& common,
                             std::string* sha256);

// lethe eval --model DIR --data DATA: the ensemble's accuracy under its aggregation (and,
// for mean, the log loss of the mean probabilities), with each constituent's accuracy.
int EvalEnsemble(const std::string& dir, const std::string& data_path, const CommonOptions& common);

// lethe unlearn --model DIR --method newton (tools/lethe/sisa_patch.cc): Newton patches of
// the constituents whose shards hold the ids, recorded as such in the manifest.
int RunUnlearnEnsemble(const std::vector<std::string>& args);

// lethe influence --model DIR (tools/lethe/sisa_influence.cc): each constituent's influence
// on its shard's rows, weighted as the aggregation implies (docs/influence.md, "Ensembles").
struct SolverFlags;
int InfluenceEnsemble(const std::string& dir, const std::string& train_path,
                      const std::string& test_path, const std::vector<int64_t>& test_ids,
                      const SolverFlags& flags, const CommonOptions& common,
                      const std::string& out, int64_t top_k);

// lethe inspect DIR: shards, slices, sizes, training times and the deletion history.
int InspectEnsemble(const std::string& dir, bool json);

}  // namespace lethe::cli
