#include "engine/dense_preconditioner.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace lethe {

void DensePreconditionerOptions::Validate() const {
  if (!(max_bytes > 0)) Fail("--dense-max-gb = ", max_bytes / 1e9, ": must be > 0");
}

double DensePreconditionerBytes(int64_t num_params, int64_t bytes_per_value) {
  return static_cast<double>(num_params) * static_cast<double>(num_params) *
         static_cast<double>(bytes_per_value);
}

namespace {
std::string Gb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
  return buf;
}
}  // namespace

template <typename T>
DensePreconditioner<T>::DensePreconditioner(Objective<T>& objective, const kernels::Matrix<T>& theta,
                                            Curvature curvature, double damping,
                                            const DensePreconditionerOptions& options)
    : backend_(&objective.backend()),
      num_params_(objective.num_params()),
      curvature_(curvature),
      damping_(damping),
      l2_(objective.l2()) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  const double bytes = DensePreconditionerBytes(num_params_, sizeof(T));
  if (bytes > options.max_bytes)
    Fail("the dense preconditioner holds the p × p Cholesky factor of the curvature (p² · ",
         sizeof(T), " bytes = ", Gb(bytes), " for p = ", num_params_,
         " parameters), above --dense-max-gb ", options.max_bytes / 1e9,
         "; use --preconditioner kfac or none, or raise --dense-max-gb");
  CurvatureOperator<T> op(objective, theta, curvature, damping);
  DirectOptions direct;
  direct.max_params = num_params_;  // the bound is max_bytes, checked above
  const SolveSummary s = factor_.Factorize(op, direct);
  std::string failure;
  if (!factor_.factorized())
    failure = s.message.empty() ? std::string("factorisation failed") : s.message;
  if (objective.distributed()) failure = AdoptRootFactor(*objective.communicator(), failure);
  if (!failure.empty())
    Fail("--preconditioner dense: ", failure,
         " (the dense preconditioner needs a positive definite curvature; use --preconditioner "
         "kfac or none)");
  setup_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Under mpirun every rank formed the same reduced C + λI (DenseCurvature's one allreduce,
// or p distributed products), but the factorisation is each rank's own computation, and
// nothing promises the same bits on every rank: the CPU backend's tiled Cholesky gave the
// same bits on 1 and on 2 threads (measured: a 2,410-parameter MLP's factor, its triangular
// solves split over the threads, ranks started with OMP_NUM_THREADS 2 and 1 stayed in
// step without this broadcast), but a rank on another node may run another build, BLAS or
// backend (cuSOLVER's result is per device and library version).
// Every rank applies M⁻¹ to the same residual inside CG, and the solves stay in lockstep
// only if each rank's M⁻¹r carries the same bits; so rank 0's outcome is broadcast (p²
// values of T, once per build, against the p² doubles the curvature's allreduce already
// moved) and every rank adopts it, the failure (not positive definite) included. Returns
// the agreed failure message ("" when rank 0 factorised).
template <typename T>
std::string DensePreconditioner<T>::AdoptRootFactor(distributed::Communicator& comm,
                                                    const std::string& failure) {
  const size_t bytes = static_cast<size_t>(num_params_ * num_params_) * sizeof(T);
  std::string payload;  // "1" + the factor's bytes, or "0" + rank 0's failure
  if (comm.rank() == 0) {
    if (failure.empty()) {
      payload.resize(1 + bytes);
      payload[0] = '1';
      const std::vector<T> host = Factor();
      std::memcpy(payload.data() + 1, host.data(), bytes);
    } else {
      payload = "0" + failure;
    }
  }
  comm.Broadcast(&payload, 0);
  if (payload.empty() || payload[0] != '1') return payload.empty() ? "factorisation failed" : payload.substr(1);
  if (comm.rank() != 0) {
    LETHE_CHECK(payload.size() == 1 + bytes);
    std::vector<T> host(static_cast<size_t>(num_params_ * num_params_));
    std::memcpy(host.data(), payload.data() + 1, bytes);
    kernels::Matrix<T> m = backend_->Allocate(num_params_, num_params_);
    backend_->Upload(host.data(), m);
    factor_.Adopt(*backend_, m);
  }
  return "";
}

template <typename T>
DensePreconditioner<T>::DensePreconditioner(kernels::Backend<T>& backend, const std::vector<T>& factor,
                                            int64_t num_params, Curvature curvature, double damping,
                                            double l2)
    : backend_(&backend), num_params_(num_params), curvature_(curvature), damping_(damping), l2_(l2) {
  LETHE_CHECK(static_cast<int64_t>(factor.size()) == num_params * num_params);
  kernels::Matrix<T> m = backend.Allocate(num_params, num_params);
  backend.Upload(factor.data(), m);
  factor_.Adopt(backend, m);
}

template <typename T>
DensePreconditioner<T>::~DensePreconditioner() = default;

template <typename T>
std::vector<T> DensePreconditioner<T>::Factor() const {
  std::vector<T> host(static_cast<size_t>(num_params_ * num_params_));
  backend_->Download(factor_.factor(), host.data());
  return host;
}

template <typename T>
void DensePreconditioner<T>::Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) {
  factor_.Solve(V, out);
}

template <typename T>
bool DensePreconditioner<T>::Fits(const Objective<T>& objective, Curvature curvature,
                                  double damping) const {
  return &objective.backend() == backend_ && objective.num_params() == num_params_ &&
         curvature == curvature_ && damping == damping_ && objective.l2() == l2_;
}

DensePreconditionerStore::DensePreconditionerStore() = default;
DensePreconditionerStore::~DensePreconditionerStore() = default;

void DensePreconditionerStore::Reset() {
  f32_.reset();
  f64_.reset();
}

template <typename T>
DensePreconditioner<T>* DensePreconditionerStore::Get(Objective<T>& objective,
                                                      const kernels::Matrix<T>& theta,
                                                      Curvature curvature, double damping,
                                                      const DensePreconditionerOptions& options,
                                                      bool* built) {
  std::unique_ptr<DensePreconditioner<T>>* slot;
  if constexpr (sizeof(T) == sizeof(float))
    slot = &f32_;
  else
    slot = &f64_;
  *built = false;
  if (*slot && (*slot)->Fits(objective, curvature, damping)) return slot->get();
  slot->reset();  // one factor of each type at a time: release the old one first
  *slot = std::make_unique<DensePreconditioner<T>>(objective, theta, curvature, damping, options);
  *built = true;
  ++builds_;
  return slot->get();
}

template <typename T>
DensePreconditioner<T>* DensePreconditionerStore::Current() const {
  if constexpr (sizeof(T) == sizeof(float))
    return f32_.get();
  else
    return f64_.get();
}

template <typename T>
void DensePreconditionerStore::Adopt(std::unique_ptr<DensePreconditioner<T>> preconditioner) {
  if constexpr (sizeof(T) == sizeof(float))
    f32_ = std::move(preconditioner);
  else
    f64_ = std::move(preconditioner);
}

template class DensePreconditioner<float>;
template class DensePreconditioner<double>;
template DensePreconditioner<float>* DensePreconditionerStore::Get<float>(
    Objective<float>&, const kernels::Matrix<float>&, Curvature, double,
    const DensePreconditionerOptions&, bool*);
template DensePreconditioner<double>* DensePreconditionerStore::Get<double>(
    Objective<double>&, const kernels::Matrix<double>&, Curvature, double,
    const DensePreconditionerOptions&, bool*);

}  // namespace lethe

namespace lethe {
template DensePreconditioner<float>* DensePreconditionerStore::Current<float>() const;
template DensePreconditioner<double>* DensePreconditionerStore::Current<double>() const;
template void DensePreconditionerStore::Adopt<float>(std::unique_ptr<DensePreconditioner<float>>);
template void DensePreconditionerStore::Adopt<double>(std::unique_ptr<DensePreconditioner<double>>);
}  // namespace lethe
