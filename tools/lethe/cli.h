// Shared pieces of the lethe subcommands: common options, dtype dispatch, progress.
#pragma once

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

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

// Rate-limited progress lines on stderr ("\r"-free, one line per update, at most ~2/s).
class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet) {}
  void Update(const std::string& line, bool force = false);

 private:
  bool quiet_;
  std::chrono::steady_clock::time_point last_{};
};

// Format helpers for tables.
std::string Fixed(double value, int digits);
std::string Sci(double value, int digits = 3);

}  // namespace lethe::cli
