// Keyword arguments → the CLI's options, parsed by the CLI's own option descriptions
// (Boost.Program_options), so names, defaults, validation and error words are the CLI's:
// solver="cg", cg_tolerance=1e-6 is `--solver cg --cg-tolerance 1e-06`. Python values are
// written as the text a person would type (floats by repr, the shortest exact form), a
// True bool is a switch, False or None leaves the option out.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "engine/trainer.h"
#include "engine/unlearn.h"
#include "tools/lethe/session.h"

namespace lethe::py_module {

namespace py = pybind11;
namespace po = boost::program_options;

// The options each function takes, beyond its positional arguments.
struct CommandOptions {
  cli::CommonOptions common;
  cli::SolverFlags solver;
  // unlearn (the same names and defaults as cmd_unlearn.cc's)
  std::string method = "newton", solve_dtype = "auto";
  UnlearnOptions unlearn;
  // train (as cmd_train.cc's)
  std::string optimizer = "lbfgs";
  TrainOptions train;
  uint64_t seed = 0;
  bool no_polish = false;
  po::variables_map vm;
};

// "evaluate", "influence", "self_influence", "unlearn", "train", "compare": the
// description of that function's options.
po::options_description Describe(const std::string& function, CommandOptions& o);
// Parses kwargs for `function`; unknown or malformed options raise TypeError naming them.
CommandOptions ParseOptions(const std::string& function, const py::dict& kwargs);
// {name: default as text} of a function's options (docs and the defaults test).
py::dict OptionDefaults(const std::string& function);

}  // namespace lethe::py_module
