#include "kernels/backend.h"

#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#ifdef LETHE_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace lethe::kernels {

template <typename T>
T Norm(Backend<T>& backend, const Matrix<T>& x) {
  return std::sqrt(backend.Dot(x, x));
}

template <typename T>
std::unique_ptr<Backend<T>> MakeBackend(const BackendOptions& options) {
  if (options.threads < 0) Fail("--threads = ", options.threads, ": must be >= 0");
  switch (options.device) {
    case DeviceKind::kCpu:
      return MakeCpuBackend<T>(options.threads);
    case DeviceKind::kCuda:
#ifdef LETHE_HAVE_CUDA
      return MakeCudaBackend<T>(options.cuda_device);
#else
      Fail("--device cuda: this lethe was built without CUDA (configure with -DLETHE_CUDA=ON where nvcc exists)");
#endif
  }
  Fail("unknown device");
}

template float Norm<float>(Backend<float>&, const Matrix<float>&);
template double Norm<double>(Backend<double>&, const Matrix<double>&);
template std::unique_ptr<Backend<float>> MakeBackend<float>(const BackendOptions&);
template std::unique_ptr<Backend<double>> MakeBackend<double>(const BackendOptions&);

}  // namespace lethe::kernels
