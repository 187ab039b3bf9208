// `lethe unlearn` in a stream of deletion requests (docs/unlearning.md): the ledger
// (--ledger, io/ledger.h) and the cache of reusable state (--cache, stream_cache.h). Kept out
// of cmd_unlearn.cc, which calls PrepareStream before the work and FinishStream once the
// patched model is written.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/unlearn.h"
#include "io/ledger.h"
#include "tools/lethe/cli.h"
#include "tools/lethe/stream_cache.h"

namespace lethe::cli {

struct StreamOptions {
  std::string ledger;  // empty: none
  bool cache = false;
  int64_t cache_max_age = 50;
  void Add(po::options_description& desc);
  // Output-path checks, before any work.
  void Check(const std::vector<std::string>& inputs, const std::string& out) const;
};

struct StreamState {
  std::string data_sha256;            // of the training data file (--cache only)
  std::optional<StreamCache> loaded;  // the cache the input model came with, if valid
  KfacState used;                     // the preconditioner the solves used (exported)
};

// Refuses a model that is not the ledger's head; loads a valid cache and points
// options->inverse at it (and at state->used, to save what is used).
void PrepareStream(const StreamOptions& o, const std::string& model_path,
                   const std::string& model_sha256, const std::string& train_path,
                   UnlearnOptions* options, StreamState* state);

// After `out` is written: appends the ledger line (and removes `out` if that fails, so
// that no patched model exists outside the ledger) and saves the cache next to `out`.
void FinishStream(const StreamOptions& o, const StreamState& state, const std::string& model_path,
                  const std::string& model_sha256, const std::string& out,
                  const std::vector<int64_t>& removed, const std::string& method,
                  const std::string& solver, const std::string& utc,
                  const std::optional<io::CertificateState>& certificate,
                  const std::vector<UnlearnStep>& steps);

}  // namespace lethe::cli
