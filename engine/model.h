// A model as lethe holds it on the host: its spec, shape, parameters and the dtype of
// the file it came from (which is the dtype it is written back in).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/architecture.h"
#include "engine/forgotten.h"
#include "engine/certified/certified_record.h"
#include "engine/privacy/dp_record.h"
#include "io/array.h"
#include "io/dataset.h"
#include "io/safetensors.h"

namespace lethe {

struct Model {
  Architecture arch;
  std::vector<double> theta;  // flat trainable parameters, order as in engine/architecture.h
                              // (fixed tensors: arch.constants)
  io::DType dtype = io::DType::kF64;
  // The training examples this model was made without (engine/forgotten.h); stored in
  // __metadata__["lethe_forgotten"] when not empty.
  ForgetHistory forgotten;
  // The differential-privacy guarantee it was trained under (lethe train --dp); stored in
  // __metadata__["lethe_dp"]. Commands that derive a model from this one through the
  // training data outside the DP mechanism must reset it (engine/privacy/dp_record.h).
  std::optional<privacy::DpRecord> dp;
  // Its certified-removal state (lethe train --certified, lethe unlearn --certified); stored
  // in __metadata__["lethe_certified"]. Anything that changes θ other than a certified
  // removal must reset it (engine/certified/certified_record.h).
  std::optional<certified::CertifiedRecord> certified;
};

// Reads a safetensors model. The spec comes from `spec_path` when given (the sidecar
// wins), else from the file's "__metadata__"["lethe"]. Every tensor the spec names must
// exist with the right shape, the widths must chain, and every tensor in the file must
// be used; all tensors share one floating dtype.
Model LoadModel(const std::string& path, const std::optional<std::string>& spec_path = {});

// The same from a safetensors file already in memory (the Python module's models built from
// a torch module, python/): every check of LoadModel, `path` naming it in messages.
Model ModelFromSafetensors(const io::SafetensorsFile& file, const std::string& path,
                           const std::optional<std::string>& spec_path = {});

// Writes the model (tensors in θ order, in model.dtype, spec embedded) atomically.
void SaveModel(const std::string& path, const Model& model);

// The output width training needs from the data: cross_entropy: the number of classes
// (max label + 1), logistic: 1, mse: the target width. For cross_entropy every label must
// be an integer in [0, 2^31) and at most 1024 classes below the largest may go unused
// (a stray label would otherwise decide the model's size); errors name the row and id.
int64_t OutputWidthForData(LossKind loss, const io::Dataset& data);

// A freshly initialised model, each layer as PyTorch's default for its module (nn.Linear:
// every weight and bias uniform in ±1/√in), from a 64-bit Mersenne Twister seeded with
// `seed` (deterministic across platforms: engine/layers/plan.h, Initializer).
Model InitializeModel(const io::ModelSpec& spec, const io::Dataset& data, uint64_t seed,
                      io::DType dtype);

// Throws lethe::Error naming data.path when the data cannot be used with the model:
// feature width ≠ input width, labels out of range or not integers for a classifier,
// target width ≠ output width for mse.
void CheckDataMatchesModel(const Architecture& arch, const io::Dataset& data);

}  // namespace lethe
