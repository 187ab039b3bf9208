// _lethe: the engine as a Python extension (python/lethe/__init__.py is its public face).
// lethe::Error becomes lethe.Error (a ValueError) with the CLI's one-line message.
#include "common/quote.h"
#include "python/src/bridge.h"
#include "python/src/options.h"

namespace py = pybind11;
using namespace lethe::py_module;

PYBIND11_MODULE(_lethe, m) {
  m.doc() = "lethe's engine (use the lethe package)";
  static py::exception<lethe::Error> error(m, "Error", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const lethe::Error& e) {
      // The line the CLI prints after "lethe COMMAND: ", escaped and bounded the same way.
      error(lethe::Escape(e.what(), lethe::kMaxErrorLineBytes).c_str());
    }
  });
  m.attr("__version__") = LETHE_VERSION;
  BindModel(m);
  BindData(m);
  BindAnalysis(m);
  BindUnlearn(m);
  BindTrain(m);
  BindCompare(m);
  m.def("option_defaults", &OptionDefaults, py::arg("function"));
}
