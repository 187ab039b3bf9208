// The evidence that an unlearned model behaves like the retrained one: per-set loss and
// accuracy (forget set, kept set, test set), test prediction agreement, and a
// membership-inference audit.
//
// Membership inference (loss-threshold attack, Yeom et al. 2018): an attacker guesses
// "was trained on" when an example's loss is below a threshold. Its AUC over all
// thresholds, separating the forget set (the candidates for membership) from the test
// set (known non-members), is
//   AUC = P(loss_test > loss_forget) + ½ P(loss_test = loss_forget)   (Mann-Whitney U / (|S|·|E|))
// 0.5: the model cannot tell them apart (as for a model never trained on S); near 1: the
// forget set is still recognisably memorised.
#pragma once

#include <vector>

#include "engine/model.h"
#include "kernels/backend.h"

namespace lethe {

struct SetMetrics {
  int64_t n = 0;
  double loss = 0;      // mean example loss (no l2)
  double accuracy = 0;  // classification losses; NaN for mse
};

struct ModelAudit {
  SetMetrics forget, kept, test;
  std::vector<double> forget_losses, test_losses;
  std::vector<double> test_predictions;  // class index (or sign) per test example; mse: none
  double membership_auc = 0;             // forget vs test, loss-threshold attack
};

double MembershipAuc(const std::vector<double>& member_losses,
                     const std::vector<double>& nonmember_losses);

// Runs `theta` on the training data (split into forget rows and the rest) and the test data.
template <typename T>
ModelAudit AuditModel(kernels::Backend<T>& backend, const Architecture& arch,
                      const std::vector<double>& theta, const io::Dataset& train,
                      const std::vector<int64_t>& forget_rows, const io::Dataset& test,
                      int64_t chunk_size);

// Fraction of test examples on which both models predict the same class.
double PredictionAgreement(const ModelAudit& a, const ModelAudit& b);

// ‖a − b‖₂
double Distance(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace lethe
