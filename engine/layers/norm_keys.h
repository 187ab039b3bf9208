// What layernorm and batchnorm read alike: the names of their optional elementwise affine
// tensors ("weight" γ, "bias" β) and "eps" (> 0; PyTorch's default 1e-5), read the same way
// by each one's plan, initialiser and module; and where a named tensor sits in the layer's
// list.
#pragma once

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "engine/layers/plan.h"

namespace lethe::layers {

struct NormKeys {
  static constexpr double kDefaultEps = 1e-5;  // PyTorch's
  std::optional<std::string> weight, bias;
  double eps = kDefaultEps;
  explicit NormKeys(SpecKeys& keys) : weight(keys.String("weight")), bias(keys.String("bias")) {
    // Any finite number is read, so that 0 and negatives get the message that says why.
    const double max = std::numeric_limits<double>::max();
    if (std::optional<double> e = keys.Number("eps", -max, max)) {
      if (*e <= 0) keys.Fail("\"eps\" = ", *e, ": must be > 0");
      eps = *e;
    }
  }
};

// The index in `tensors` of the tensor called `name`, or -1 when the key was absent (the
// plan declared every named tensor, so a name not found is a bug).
inline int FindTensor(const std::vector<TensorInfo>& tensors,
                      const std::optional<std::string>& name) {
  if (!name) return -1;
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].name == *name) return static_cast<int>(i);
  LETHE_CHECK(false, "no tensor ", *name, " among the layer's");
  return -1;
}

}  // namespace lethe::layers
