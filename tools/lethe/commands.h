#pragma once

#include <string>
#include <vector>

#include "tools/lethe/cli.h"

namespace lethe::cli {

int RunInspect(const std::vector<std::string>& args);
int RunTrain(const std::vector<std::string>& args);
int RunEval(const std::vector<std::string>& args);
int RunInfluence(const std::vector<std::string>& args);
int RunSelfInfluence(const std::vector<std::string>& args);
int RunUnlearn(const std::vector<std::string>& args);
int RunCompare(const std::vector<std::string>& args);
int RunPrivacy(const std::vector<std::string>& args);
int RunSisa(const std::vector<std::string>& args);  // cmd_sisa.cc
int RunLedger(const std::vector<std::string>& args);
int RunValidateInfluence(const std::vector<std::string>& args);  // cmd_validate_influence.cc

inline const std::vector<Command>& AllCommands() {
  static const std::vector<Command> commands = {
      {"inspect", "show a model's architecture, parameter count, dtype and spec", RunInspect},
      {"train", "train a model from a spec (the retraining baseline)", RunTrain},
      {"eval", "loss, objective, accuracy and gradient norm of a model on data", RunEval},
      {"influence", "score every training example's influence on test predictions", RunInfluence},
      {"self-influence", "each training example's influence on itself (mislabeled, memorised)",
       RunSelfInfluence},
      {"unlearn", "remove a forget set with a Newton patch; erasure record; --verify", RunUnlearn},
      {"compare", "distance, per-set metrics and membership audit of two models", RunCompare},
      {"privacy", "epsilon of DP-SGD's noise, sampling rate and steps (or sigma for a target)",
       RunPrivacy},
      {"sisa", "exact unlearning: sharded, sliced ensemble training (train) and deletion (unlearn)",
       RunSisa},
      {"ledger", "verify a deletion ledger's hash chain against the model files (ledger verify)",
       RunLedger},
      {"validate-influence", "influence scores against leave-one-out and subset retraining", RunValidateInfluence},
  };
  return commands;
}

}  // namespace lethe::cli
