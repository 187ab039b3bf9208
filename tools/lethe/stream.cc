#include "tools/lethe/stream.h"

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "common/error.h"
#include "io/atomic_file.h"
#include "io/sha256.h"
#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {

void StreamOptions::Add(po::options_description& desc) {
  desc.add_options()
    ("ledger", po::value(&ledger),
     "append this request to the deletion ledger FILE (JSON lines, hash-chained; refused "
     "unless the model is the ledger's head; lethe ledger verify FILE)")
    ("cache", po::bool_switch(&cache),
     "reuse state across a stream of requests: read MODEL.lethe-cache when its hashes match "
     "the model and the data, write OUT.lethe-cache (docs/unlearning.md)")
    ("cache-max-age", po::value(&cache_max_age)->default_value(50),
     "--cache: recompute the cached state after this many requests");
}

void StreamOptions::Check(const std::vector<std::string>& inputs, const std::string& out) const {
  if (cache_max_age < 1) Fail("--cache-max-age ", cache_max_age, ": must be >= 1");
  if (ledger.empty()) return;
  io::CheckOutputIsNotAnInput(ledger, inputs);
  io::CheckOutputCanBeWritten(ledger);
  if (ledger == out) Fail("--ledger and --out name the same file");
}

void PrepareStream(const StreamOptions& o, const std::string& model_path,
                   const std::string& model_sha256, const std::string& train_path,
                   UnlearnOptions* options, StreamState* state) {
  // Before the work, so that a request against the wrong model fails at once; checked
  // again under the ledger's lock when the line is appended.
  if (!o.ledger.empty()) io::CheckLedgerHead(o.ledger, model_path, model_sha256);
  if (!o.cache) return;
  // Under mpirun rank 0 hashes the whole file (streamed through the hash, not held) and
  // sends the hash: no other rank reads rows outside its block.
  Collectively([&] {
    if (Comm().rank() == 0) state->data_sha256 = io::Sha256File(train_path);
  });
  if (Distributed()) Comm().Broadcast(&state->data_sha256, 0);
  std::string note;
  state->loaded = LoadStreamCache(model_path, model_sha256, state->data_sha256, o.cache_max_age, &note);
  if (!note.empty()) std::cerr << "lethe unlearn: note: " << note << "\n";
  if (state->loaded) options->inverse.kfac_reuse = &state->loaded->kfac;
  options->inverse.kfac_export = &state->used;
}

void FinishStream(const StreamOptions& o, const StreamState& state, const std::string& model_path,
                  const std::string& model_sha256, const std::string& out,
                  const std::vector<int64_t>& removed, const std::string& method,
                  const std::string& solver, const std::string& utc,
                  const std::optional<io::CertificateState>& certificate,
                  const std::vector<UnlearnStep>& steps) {
  const std::string child_sha256 = io::Sha256File(out);
  if (!o.ledger.empty()) {
    io::LedgerEntry e;
    e.utc = utc;
    e.method = method;
    e.solver = solver;
    e.ids = removed;
    std::sort(e.ids.begin(), e.ids.end());  // the line's format: sorted, unique
    e.ids.erase(std::unique(e.ids.begin(), e.ids.end()), e.ids.end());
    e.parent = {model_path, model_sha256};
    e.child = {out, child_sha256};
    e.certificate = certificate;
    try {
      io::AppendLedger(o.ledger, e);
    } catch (const Error&) {
      std::error_code ec;
      std::filesystem::remove(out, ec);  // a patched model outside the ledger: not written
      throw;
    }
  }
  if (!o.cache || state.used.layers.empty()) return;
  // The state the last solve used: the loaded one (one request older), or one computed at
  // this request's θ.
  bool reused = state.loaded.has_value();
  for (const UnlearnStep& s : steps) reused = reused && s.solve.preconditioner == "kfac (cached)";
  StreamCache c;
  c.kfac = state.used;
  c.origin_sha256 = reused ? state.loaded->origin_sha256 : model_sha256;
  c.age = reused ? state.loaded->age + 1 : 1;
  SaveStreamCache(out, child_sha256, state.data_sha256, c);
}

}  // namespace lethe::cli
