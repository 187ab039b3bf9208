// What `lethe unlearn --requests FILE --cache` keeps on disk for the next process of the same
// stream (docs/unlearning.md, "The dense factor and the carried gradient on disk"): the
// dense preconditioner's Cholesky factor (engine/dense_preconditioner.h; 246 MB in f32 for
// p = 7,850, 8 s to build) and the kept gradient at the model's θ (engine/unlearn.h,
// KeptGradient), so that a later stream, or one process per request, starts where the last
// request left off instead of paying the factor's setup and a pass over the kept rows.
//
// Two kinds of file:
//   MODEL.lethe-dense: written next to every patched model the stream commits: a small
//     safetensors file keyed by that model's SHA-256 and the training data's SHA-256, holding
//     the kept gradient (f64 tensor) and naming the factor file(s) in use, each with its size
//     and SHA-256 (the factor is not copied per request);
//   OUT.lethe-dense-f32 (or -f64): the factor itself, p² raw little-endian values, written
//     once, by the request that built it (OUT its patched model).
//
// Trust (as stream_cache.h): a key file whose model or data hash differs from the request's
// is ignored, with a note; so is one that cannot be read or does not fit the model (p, l2,
// curvature, damping). A factor file is used only when its size and SHA-256 are those the
// key names and every value is finite with a positive diagonal; otherwise it is rebuilt,
// with a note. Whatever is wrong with the cache costs only its use, never the answer: a
// preconditioner changes how many iterations CG takes, not where it stops (the true
// residual), and the carried gradient is checked against the kept row count.
//
// Rebuild rule (the same in one process and across processes, so that a stream split over
// several processes gives the bytes of one): the factor is dropped after a request whose
// solve took more than --dense-refresh-iterations CG iterations (the key file then names no
// factor), and once it has served --cache-max-age requests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/dense_preconditioner.h"
#include "engine/unlearn.h"

namespace lethe::cli {

// A factor file the key names.
struct DenseFactorRef {
  std::string dtype;  // "f32" or "f64"
  std::string path;   // as the process opens it (the key file stores it relative to itself)
  std::string sha256;
  int64_t bytes = 0;
  int64_t age = 0;  // requests served with it, the one that built it included
};

// What fits the model being served (a key file for another p, l2, curvature or damping is
// ignored).
struct DenseCacheFit {
  int64_t num_params = 0;
  double l2 = 0, damping = 0;
  Curvature curvature = Curvature::kHessian;
};

std::string DenseCacheKeyPath(const std::string& model_path);                            // MODEL.lethe-dense
std::string DenseFactorPath(const std::string& model_path, const std::string& dtype);  // MODEL.lethe-dense-f32

// The key file next to `model_path` when it is valid for (model_sha256, data_sha256, fit):
// its gradient into *gradient (cleared when absent), the factor files it names into *factors
// (unchecked: LoadDenseFactor checks each). false, with *note saying why, otherwise (note
// empty: no key file).
bool LoadDenseCacheKey(const std::string& model_path, const std::string& model_sha256,
                       const std::string& data_sha256, const DenseCacheFit& fit,
                       KeptGradient* gradient, std::vector<DenseFactorRef>* factors,
                       std::string* note);

// The factor `ref` names, checked (size, SHA-256, finite, positive diagonal) and uploaded to
// `backend`; null with *note saying why when it cannot be used.
template <typename T>
std::unique_ptr<DensePreconditioner<T>> LoadDenseFactor(const DenseFactorRef& ref,
                                                        kernels::Backend<T>& backend,
                                                        const DenseCacheFit& fit, std::string* note);

// Writes `factor` (p² values) to `path` atomically; returns its reference (age 1).
template <typename T>
DenseFactorRef SaveDenseFactor(const std::string& path, const std::vector<T>& factor);

// Writes MODEL.lethe-dense for `model_path` (atomically).
void SaveDenseCacheKey(const std::string& model_path, const std::string& model_sha256,
                       const std::string& data_sha256, const DenseCacheFit& fit,
                       const KeptGradient* gradient, const std::vector<DenseFactorRef>& factors);

}  // namespace lethe::cli
