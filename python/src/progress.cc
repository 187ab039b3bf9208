#include "python/src/progress.h"

namespace lethe::py_module {

void PythonProgress::Report(const char* phase, int64_t done, int64_t total) {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw Interrupted();
  if (!phase || callback_.is_none()) return;
  const auto now = std::chrono::steady_clock::now();
  const bool boundary = done == 0 || (total > 0 && done == total) || phase_ != phase;
  if (!boundary && std::chrono::duration<double>(now - last_).count() < interval_) return;
  last_ = now;
  phase_ = phase;
  PyObject* result = PyObject_CallFunction(callback_.ptr(), "sLL", phase,
                                           static_cast<long long>(done), static_cast<long long>(total));
  if (!result) throw Interrupted();  // the callback raised: its exception is pending
  Py_DECREF(result);
}

}  // namespace lethe::py_module
