#include "engine/dense_preconditioner.h"

#include <chrono>
#include <cmath>
#include <cstdio>

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
  if (!factor_.factorized())
    Fail("--preconditioner dense: ", s.message.empty() ? std::string("factorisation failed") : s.message,
         " (the dense preconditioner needs a positive definite curvature; use --preconditioner "
         "kfac or none)");
  setup_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
