#include "io/ledger.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/atomic_file.h"
#include "io/sha256.h"
#include "io/untrusted_json.h"

namespace lethe::io {

using nlohmann::json;

namespace {

json Body(const LedgerEntry& e) {
  json j;
  j["lethe_ledger"] = 1;
  j["seq"] = e.seq;
  j["utc"] = e.utc;
  j["request"] = {{"method", e.method},
                  {"solver", e.solver},
                  {"ids", e.ids},
                  {"k", static_cast<int64_t>(e.ids.size())}};
  j["parent"] = {{"path", e.parent.path}, {"sha256", e.parent.sha256}};
  j["child"] = {{"path", e.child.path}, {"sha256", e.child.sha256}};
  if (e.certificate) {
    const CertificateState& c = *e.certificate;
    j["certificate"] = {{"beta", c.beta},
                        {"epsilon_spent", c.epsilon_spent},
                        {"epsilon_budget", c.epsilon_budget},
                        {"delta", c.delta},
                        {"sigma", c.sigma}};
  }
  j["prev"] = e.prev;
  return j;
}

std::string ChainHash(const std::string& prev, const std::string& body) {
  return Sha256Hex(prev + "\n" + body);
}

bool IsHex64(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// One line's fields, strictly (the line is untrusted: any missing, extra or mistyped key
// is a bad line). Throws lethe::Error with `where` ("PATH:LINE").
LedgerEntry ParseLine(const std::string& text, const std::string& where) {
  const json j = ParseUntrustedJson(text, where, "");
  auto bad = [&](const std::string& what) -> void { Fail(where, ": ", what); };
  if (!j.is_object()) bad("not a JSON object");
  auto str = [&](const json& o, const char* key) -> std::string {
    if (!o.contains(key) || !o[key].is_string()) bad(std::string("\"") + key + "\" must be a string");
    return o[key].get<std::string>();
  };
  auto obj = [&](const json& o, const char* key, std::initializer_list<const char*> keys) -> const json& {
    if (!o.contains(key) || !o[key].is_object()) bad(std::string("\"") + key + "\" must be an object");
    const json& v = o[key];
    if (v.size() != keys.size()) bad(std::string("\"") + key + "\" has missing or unknown keys");
    for (const char* k : keys)
      if (!v.contains(k)) bad(std::string("\"") + key + "\" lacks \"" + k + "\"");
    return v;
  };
  const size_t expected = j.contains("certificate") ? 9 : 8;
  if (j.size() != expected) bad("missing or unknown keys");
  if (!j.contains("lethe_ledger") || j["lethe_ledger"] != 1) bad("\"lethe_ledger\" must be 1");
  LedgerEntry e;
  if (!j.contains("seq") || !j["seq"].is_number_integer()) bad("\"seq\" must be an integer");
  e.seq = j["seq"].get<int64_t>();
  e.utc = str(j, "utc");
  const json& r = obj(j, "request", {"method", "solver", "ids", "k"});
  e.method = str(r, "method");
  e.solver = str(r, "solver");
  if (!r["ids"].is_array()) bad("\"request.ids\" must be an array of integers");
  for (const json& v : r["ids"]) {
    if (!v.is_number_integer()) bad("\"request.ids\" must be an array of integers");
    e.ids.push_back(v.get<int64_t>());
  }
  for (size_t i = 1; i < e.ids.size(); ++i)
    if (e.ids[i] <= e.ids[i - 1]) bad("\"request.ids\" must be sorted and unique");
  if (!r["k"].is_number_integer() || r["k"].get<int64_t>() != static_cast<int64_t>(e.ids.size()))
    bad("\"request.k\" is not the number of ids");
  for (auto [ref, key] : {std::pair{&e.parent, "parent"}, std::pair{&e.child, "child"}}) {
    const json& f = obj(j, key, {"path", "sha256"});
    ref->path = str(f, "path");
    ref->sha256 = str(f, "sha256");
    if (!IsHex64(ref->sha256)) bad(std::string("\"") + key + ".sha256\" is not a SHA-256");
  }
  if (j.contains("certificate")) {
    const json& c = obj(j, "certificate", {"beta", "epsilon_spent", "epsilon_budget", "delta", "sigma"});
    for (const auto& [k, v] : c.items())
      if (!v.is_number()) bad("\"certificate." + k + "\" must be a number");
    e.certificate = CertificateState{c["beta"].get<double>(), c["epsilon_spent"].get<double>(),
                                     c["epsilon_budget"].get<double>(), c["delta"].get<double>(),
                                     c["sigma"].get<double>()};
  }
  e.prev = str(j, "prev");
  e.hash = str(j, "hash");
  if (!IsHex64(e.prev) || !IsHex64(e.hash)) bad("\"prev\" and \"hash\" must be SHA-256s");
  // The hash covers the canonical form; a line that is not in it (spaces, key order,
  // number spelling) was not written by lethe, and is refused rather than normalised.
  json canonical = Body(e);
  const std::string hash = ChainHash(e.prev, canonical.dump());
  canonical["hash"] = e.hash;
  if (canonical.dump() != text) bad("not in canonical form (edited?)");
  if (hash != e.hash) bad("its hash does not match its contents (edited?)");
  return e;
}

LedgerRead ParseLedger(const std::string& text, const std::string& path) {
  LedgerRead out;
  std::string prev = LedgerGenesis(), head;
  size_t start = 0;
  for (int64_t line = 1; start < text.size(); ++line) {
    const std::string where = path + ":" + std::to_string(line);
    const size_t end = text.find('\n', start);
    auto fail = [&](const std::string& problem) {
      out.bad_line = line;
      out.problem = problem;
      return out;
    };
    if (end == std::string::npos)
      return fail(where + ": a partial line without its newline (an interrupted write?); "
                  "remove it to continue the ledger");
    LedgerEntry e;
    try {
      e = ParseLine(text.substr(start, end - start), where);
    } catch (const Error& err) {
      return fail(err.what());
    }
    if (e.seq != line) return fail(where + ": \"seq\" is " + std::to_string(e.seq) + ", not its line number (a line removed or moved?)");
    if (e.prev != prev)
      return fail(where + ": \"prev\" is not the previous line's hash (a line removed, inserted or edited before it?)");
    if (!head.empty() && e.parent.sha256 != head)
      return fail(where + ": its parent model " + e.parent.sha256.substr(0, 16) +
                  "… is not the previous line's child " + head.substr(0, 16) + "…");
    prev = e.hash;
    head = e.child.sha256;
    out.entries.push_back(std::move(e));
    start = end + 1;
  }
  return out;
}

// The whole file through a descriptor (the one AppendLedger holds the lock on).
std::string ReadAll(int fd, const std::string& path) {
  std::string text;
  char buf[1 << 16];
  for (off_t at = 0;;) {
    const ssize_t got = ::pread(fd, buf, sizeof buf, at);
    if (got < 0) {
      if (errno == EINTR) continue;
      Fail(path, ": cannot read: ", std::strerror(errno));
    }
    if (got == 0) return text;
    text.append(buf, static_cast<size_t>(got));
    at += got;
  }
}

void SyncDirectoryOf(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) Fail(path, ": cannot open its directory to fsync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  // Some file systems refuse fsync on a directory (EINVAL): the file's own fsync stands.
  if (rc != 0 && errno != EINVAL) Fail(path, ": cannot fsync its directory: ", std::strerror(errno));
}

}  // namespace

const std::string& LedgerGenesis() {
  static const std::string zeros(64, '0');
  return zeros;
}

std::string LedgerLine(const LedgerEntry& e, std::string* hash) {
  json j = Body(e);
  const std::string h = ChainHash(e.prev, j.dump());
  if (hash) *hash = h;
  j["hash"] = h;
  return j.dump();
}

LedgerRead ReadLedger(const std::string& path, bool missing_ok) {
  std::error_code ec;
  if (missing_ok && !std::filesystem::exists(path, ec)) return {};
  return ParseLedger(ReadFile(path), path);
}

std::optional<LedgerEntry> LedgerHead(const std::string& path) {
  const LedgerRead r = ReadLedger(path, /*missing_ok=*/true);
  if (!r.ok()) Fail(r.problem, " (lethe ledger verify ", path, ")");
  if (r.entries.empty()) return std::nullopt;
  return r.entries.back();
}

namespace {
void CheckHead(const std::optional<LedgerEntry>& head, const std::string& path,
               const std::string& model_path, const std::string& model_sha256) {
  if (head && head->child.sha256 != model_sha256)
    Fail(path, ": ", model_path, " (sha256 ", model_sha256, ") is not the ledger's head (line ",
         head->seq, ": ", head->child.path, ", sha256 ", head->child.sha256,
         "); a request must patch the model the last request produced");
}
}  // namespace

void CheckLedgerHead(const std::string& path, const std::string& model_path,
                     const std::string& model_sha256) {
  CheckHead(LedgerHead(path), path, model_path, model_sha256);
}

LedgerEntry AppendLedger(const std::string& path, LedgerEntry e) {
  const int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) Fail(path, ": cannot open the ledger for appending: ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }  // also releases the lock
  } closer{fd};
  // Two requests at once: the second waits here, then finds that the first moved the head.
  while (::flock(fd, LOCK_EX) != 0)
    if (errno != EINTR) Fail(path, ": cannot lock the ledger: ", std::strerror(errno));
  const LedgerRead r = ParseLedger(ReadAll(fd, path), path);
  if (!r.ok()) Fail(r.problem, " (lethe ledger verify ", path, ")");
  const std::optional<LedgerEntry> head =
      r.entries.empty() ? std::nullopt : std::optional(r.entries.back());
  CheckHead(head, path, e.parent.path, e.parent.sha256);
  e.seq = head ? head->seq + 1 : 1;
  e.prev = head ? head->hash : LedgerGenesis();
  const std::string line = LedgerLine(e, &e.hash) + "\n";
  // One write() per line: O_APPEND puts it at the end atomically with respect to other
  // writers; a crash mid-write leaves a prefix without "\n", which reading refuses.
  for (size_t done = 0; done < line.size();) {
    const ssize_t wrote = ::write(fd, line.data() + done, line.size() - done);
    if (wrote < 0) {
      if (errno == EINTR) continue;
      Fail(path, ": cannot append to the ledger: ", std::strerror(errno));
    }
    done += static_cast<size_t>(wrote);
  }
  if (::fsync(fd) != 0) Fail(path, ": cannot fsync the ledger: ", std::strerror(errno));
  SyncDirectoryOf(path);  // the file's creation (its directory entry) must be durable too
  return e;
}

}  // namespace lethe::io
