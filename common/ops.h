// The vocabulary shared by the spec parser, the compute backends and the engine:
// which elementwise activations and which per-example losses lethe knows.
#pragma once

#include <optional>
#include <string>

namespace lethe {

// Elementwise activations σ(z). GELU is the exact erf form z·Φ(z).
enum class Activation { kIdentity, kRelu, kTanh, kSigmoid, kGelu, kSoftplus };

// Per-example losses l(f, y) of the network output f:
//   kCrossEntropy: l = logsumexp(f) − f[y], y an integer class in [0, C)
//   kLogistic:     l = softplus(f) − y·f,   f scalar, y in {0, 1}
//   kMse:          l = ½‖f − y‖²
enum class LossKind { kCrossEntropy, kLogistic, kMse };

inline const char* Name(Activation a) {
  switch (a) {
    case Activation::kIdentity: return "identity";
    case Activation::kRelu: return "relu";
    case Activation::kTanh: return "tanh";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kGelu: return "gelu";
    case Activation::kSoftplus: return "softplus";
  }
  return "?";
}

inline const char* Name(LossKind l) {
  switch (l) {
    case LossKind::kCrossEntropy: return "cross_entropy";
    case LossKind::kLogistic: return "logistic";
    case LossKind::kMse: return "mse";
  }
  return "?";
}

inline std::optional<Activation> ParseActivation(const std::string& s) {
  for (Activation a : {Activation::kIdentity, Activation::kRelu, Activation::kTanh,
                       Activation::kSigmoid, Activation::kGelu, Activation::kSoftplus})
    if (s == Name(a)) return a;
  return std::nullopt;
}

inline std::optional<LossKind> ParseLoss(const std::string& s) {
  for (LossKind l : {LossKind::kCrossEntropy, LossKind::kLogistic, LossKind::kMse})
    if (s == Name(l)) return l;
  return std::nullopt;
}

}  // namespace lethe
