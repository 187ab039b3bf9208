// The deletion ledger (`lethe unlearn --ledger FILE`): one JSON line per deletion request,
// append-only, each line chained to the one before it by a SHA-256, so that the history of
// a stream of requests can be checked against the model files it names
// (`lethe ledger verify`, docs/unlearning.md).
//
// A line is the canonical JSON (keys sorted, no spaces: nlohmann's dump()) of
//   {"certificate": {...} (only when the removal is certified), "child": {"path", "sha256"},
//    "hash": H, "lethe_ledger": 1, "parent": {"path", "sha256"}, "prev": P,
//    "request": {"ids": [...], "k", "method", "solver"}, "seq": 1, 2, …, "utc": "…Z"}
// followed by "\n", where P is the previous line's H (64 zeros on the first line) and
//   H = SHA-256(P + "\n" + the line's canonical JSON without "hash").
// Editing any byte of a line changes its canonical form or its H, and H is in the next
// line's P, so an edited, removed, reordered or inserted line breaks the chain at the first
// line touched (a removed LAST line is what the parent check of the next request, or a
// model file whose hash is no longer the ledger's head, reveals; the ledger alone cannot).
//
// Crash safety: a line is appended with one write() on an O_APPEND descriptor under an
// exclusive flock, then the file and its directory are fsync'ed. A crash can leave at
// most a prefix of the last line; a prefix has no "\n" (the line's only newline is its
// last byte), and reading refuses a last line without one, so no half line is ever read
// as valid, and appending after one is refused until it is removed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lethe::io {

// The state of a certified removal after a request (Guo et al. 2020, docs/unlearning.md):
// absent from a line for plain (uncertified) removals. Filled by `unlearn --certified`.
struct CertificateState {
  double beta = 0;            // Σ of the requests' gradient-residual bounds so far
  double epsilon_spent = 0;   // ε = c·β/σ after this request
  double epsilon_budget = 0;  // the budget (--epsilon-budget); 0: none
  double delta = 0;           // δ of (ε, δ)
  double sigma = 0;           // the scale of the objective's perturbation b ~ N(0, σ²I)
};

struct LedgerFileRef {
  std::string path;    // as given on the command line
  std::string sha256;  // of the file's bytes, as sha256sum prints it
};

struct LedgerEntry {
  int64_t seq = 0;  // 1, 2, … (line number)
  std::string utc;  // ISO 8601, SOURCE_DATE_EPOCH respected (engine/forgotten.h UtcNow)
  std::string method, solver;
  std::vector<int64_t> ids;  // the ids this request removed, sorted
  LedgerFileRef parent, child;
  std::optional<CertificateState> certificate;
  std::string prev, hash;  // the chain: previous line's hash, this line's
};

// The 64 zeros that stand for "no previous line".
const std::string& LedgerGenesis();
// The canonical line for `e` (its prev set) with its hash; e.hash is ignored.
std::string LedgerLine(const LedgerEntry& e, std::string* hash = nullptr);

// The result of reading a ledger: every line up to the first bad one, and what is wrong
// with that one (bad_line = 0 when every line is sound).
struct LedgerRead {
  std::vector<LedgerEntry> entries;  // the lines that passed, in order
  int64_t bad_line = 0;              // 1-based
  std::string problem;               // "PATH:LINE: what"
  bool ok() const { return bad_line == 0; }
};

// Reads and checks the chain: each line canonical, its hash right, prev = the previous
// hash, seq = its line number, parent.sha256 = the previous line's child.sha256. A missing
// file reads as an empty ledger when `missing_ok`, else throws lethe::Error.
LedgerRead ReadLedger(const std::string& path, bool missing_ok = false);

// The ledger's head (its last line's child hash), or nullopt for an empty or absent
// ledger. Throws lethe::Error naming the first bad line when the chain is broken.
std::optional<LedgerEntry> LedgerHead(const std::string& path);

// Refuses (lethe::Error, one line naming the ledger and both hashes) a request against a
// model that is not the head. A fresh ledger accepts any model.
void CheckLedgerHead(const std::string& path, const std::string& model_path,
                     const std::string& model_sha256);

// Appends `e` (seq, prev and hash filled here) under an exclusive lock, after checking
// again, under the lock, that the chain is sound and that e.parent is its head; fsyncs the
// file and its directory. Returns the entry as written.
LedgerEntry AppendLedger(const std::string& path, LedgerEntry e);

}  // namespace lethe::io
