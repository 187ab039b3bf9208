#include "python/src/options.h"

#include <omp.h>

#include <cstdlib>

#include "common/error.h"

namespace lethe::py_module {
namespace {

// What `--threads 0` means in a fresh lethe process: OpenMP's default, OMP_NUM_THREADS's
// first value where set, else every available processor. Not omp_get_max_threads() here:
// the host process may have changed it (importing torch sets it to torch's own count), and
// the thread count decides the engine's reduction order, so its last digits.
int CliDefaultThreads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int value = std::atoi(env);
    if (value > 0) return value;
  }
  return omp_get_num_procs();
}

}  // namespace

po::options_description Describe(const std::string& function, CommandOptions& o) {
  po::options_description desc("options");
  const bool solves = function == "influence" || function == "self_influence" || function == "unlearn";
  if (solves) o.solver.Add(desc, /*allow_inexact_option=*/function != "unlearn");
  if (function == "unlearn") {
    // cmd_unlearn.cc's own options (tests/python/test_python_module.py checks the
    // defaults against `lethe unlearn --help`).
    desc.add_options()
      ("method", po::value(&o.method)->default_value("newton"), "newton or gradient-ascent")
      ("steps", po::value(&o.unlearn.steps)->default_value(1), "Newton (or gradient-ascent) steps")
      ("learning-rate", po::value(&o.unlearn.learning_rate)->default_value(0.01), "gradient-ascent step size")
      ("solve-dtype", po::value(&o.solve_dtype)->default_value("auto"), "newton: f32, f64 or auto")
      ("kept-weight", po::value(&o.unlearn.kept_weight)->default_value(0.0),
       "gradient-ascent: also descend on the kept data with this weight");
  }
  if (function == "train") {
    // cmd_train.cc's (checked against `lethe train --help` the same way).
    desc.add_options()
      ("optimizer", po::value(&o.optimizer)->default_value("lbfgs"), "lbfgs, newton-cg or adam")
      ("tolerance", po::value(&o.train.gradient_tolerance)->default_value(1e-9), "stop when ‖∇L‖ ≤ this")
      ("max-iterations", po::value(&o.train.max_iterations)->default_value(20000), "iteration limit")
      ("no-polish", po::bool_switch(&o.no_polish), "lbfgs: no Newton-CG finish")
      ("seed", po::value(&o.seed)->default_value(0), "initialisation and shuffling seed")
      ("epochs", po::value(&o.train.epochs)->default_value(100), "adam epochs")
      ("learning-rate", po::value(&o.train.learning_rate)->default_value(1e-3), "adam step size")
      ("batch-size", po::value(&o.train.batch_size)->default_value(128), "adam minibatch size");
  }
  o.common.Add(desc);
  return desc;
}

CommandOptions ParseOptions(const std::string& function, const py::dict& kwargs) {
  CommandOptions o;
  po::options_description desc = Describe(function, o);
  std::vector<std::string> args;
  for (const auto& [key, value] : kwargs) {
    std::string name = py::str(key);
    for (char& c : name)
      if (c == '_') c = '-';
    if (value.is_none() || (py::isinstance<py::bool_>(value) && !value.cast<bool>())) continue;
    args.push_back("--" + name);
    if (py::isinstance<py::bool_>(value)) continue;  // a switch
    if (py::isinstance<py::float_>(value))
      args.push_back(py::repr(value).cast<std::string>());
    else
      args.push_back(py::str(value).cast<std::string>());
  }
  try {
    po::store(po::command_line_parser(args).options(desc).run(), o.vm);
    po::notify(o.vm);
  } catch (const po::error& e) {
    // po names the option as the CLI spells it ("--cg-tolerance"): the keyword is
    // the same with '_' for '-'.
    throw py::type_error(function + "(): " + e.what());
  }
  if (o.common.threads == 0) o.common.threads = CliDefaultThreads();
  return o;
}

py::dict OptionDefaults(const std::string& function) {
  CommandOptions o;
  const po::options_description desc = Describe(function, o);
  py::dict out;
  for (const auto& option : desc.options()) {
    std::string name = option->long_name();
    for (char& c : name)
      if (c == '-') c = '_';
    // "arg (=1e-08)" → "1e-08": the text `lethe COMMAND --help` shows; None without one.
    const std::string text = option->format_parameter();
    const size_t open = text.find("(="), close = text.rfind(')');
    out[py::str(name)] = open != std::string::npos && close != std::string::npos && close > open
                             ? py::object(py::str(text.substr(open + 2, close - open - 2)))
                             : py::object(py::none());
  }
  return out;
}

}  // namespace lethe::py_module
