// Shared pieces of the lethe subcommands: common options, dtype dispatch, progress.
#pragma once

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/progress.h"
#include "io/dataset.h"
#include "kernels/backend.h"

namespace lethe::cli {

namespace po = boost::program_options;

// Options every computing subcommand takes.
struct CommonOptions {
  std::string dtype = "f64";
  std::string device = "cpu";
  int threads = 0;
  int64_t batch_size = 2048;
  bool quiet = false;
  bool json = false;
  std::string label_column = "label";
  std::string id_column;
  // --max-memory (tools/lethe/memory_budget.h; only the commands that honour it offer it).
  std::string max_memory;

  void Add(po::options_description& desc);
  kernels::BackendOptions Backend() const;  // validates --device, --threads
  io::DatasetOptions Data() const { return {label_column, id_column}; }
  bool F32() const;  // validates --dtype
};

// A subcommand: its name, one-line purpose and entry point (argv after the subcommand).
struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

// Parses args into `desc`; prints help (usage line, example, options) and returns false
// when --help was given. Throws po::error for bad options.
bool Parse(const std::vector<std::string>& args, const po::options_description& desc,
           const po::positional_options_description* positional, po::variables_map& vm,
           const char* usage, const char* example);

// Throws lethe::Error "--NAME is required" when missing.
void Require(const po::variables_map& vm, const char* name);

// Forget set from --forget FILE or --forget-ids LIST (exactly one may be given); empty
// optional when neither. Errors for an empty set.
std::optional<std::vector<int64_t>> ForgetIds(const po::variables_map& vm);

// Progress of long work on stderr, for people. Shown only when stderr is a terminal and
// --quiet was not given: a pipe or a log gets results (stdout) and warnings (stderr) only.
// What each stream carries (docs/design.md, "Output"):
//   stdout  results: tables, solver summaries, the erasure record (--json: one JSON object)
//   stderr  warnings and notes that qualify the results (always, --quiet too), errors;
//           progress and announcements (terminal only, not with --quiet)
class Progress : public ProgressSink {
 public:
  explicit Progress(bool quiet);
  bool enabled() const { return enabled_; }
  // A line saying what the command is doing now (always printed when enabled).
  void Announce(const std::string& line);
  // A status line, at most one a second.
  void Update(const std::string& line);
  // ProgressSink: "  PHASE 120 / 1000 (35.2/s, ETA 25 s)" at most once a second, and a
  // last line when a phase that showed one ends (done = total).
  void Report(const char* phase, int64_t done, int64_t total) override;

 private:
  bool Due();
  bool enabled_;
  std::chrono::steady_clock::time_point last_{};
  std::string phase_;
  std::chrono::steady_clock::time_point phase_start_{};
  int64_t phase_first_ = 0;
  bool phase_shown_ = false;
};

// One warning line on stderr, always: "lethe COMMAND: warning: TEXT".
void Warn(const std::string& command, const std::string& text);

// The warnings a command printed (Warn), kept for its --json output.
class Warnings {
 public:
  // print: false keeps them for the caller alone (the Python module raises them as
  // Python warnings instead of writing to stderr).
  explicit Warnings(std::string command, bool print = true)
      : command_(std::move(command)), print_(print) {}
  void Add(const std::string& text) {
    if (print_) Warn(command_, text);
    all_.push_back(text);
  }
  const std::vector<std::string>& all() const { return all_; }
  const std::string& command() const { return command_; }

 private:
  std::string command_;
  bool print_;
  std::vector<std::string> all_;
};

// Format helpers for tables.
std::string Fixed(double value, int digits);
std::string Sci(double value, int digits = 3);
// The shortest decimal that reads back as the same double (1e-05, 0.04, 7.329111171438655).
std::string Shortest(double value);

}  // namespace lethe::cli
