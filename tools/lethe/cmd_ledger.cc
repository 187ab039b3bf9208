// lethe ledger verify FILE [--models DIR | PATH…]: checks a deletion ledger (io/ledger.h)
// line by line — each line's canonical form and hash, the chain of hashes, each parent
// model being the previous line's child — and every model file it can find against the
// hash the ledger recorded for it. Prints a table (or --json); exit 1 naming the first
// bad line when anything is broken.
#include <filesystem>
#include <iostream>
#include <map>

#include "common/error.h"
#include "io/ledger.h"
#include "io/sha256.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/ledger_history.h"

namespace lethe::cli {
namespace {

namespace fs = std::filesystem;

// Where each model file recorded in the ledger is looked for: with --models, among the
// given files (a directory stands for the regular files in it), by file name; without, at
// the path recorded (relative to the working directory, as `lethe unlearn` was given it).
class ModelFiles {
 public:
  explicit ModelFiles(const std::vector<std::string>& given) : given_(!given.empty()) {
    for (const std::string& g : given) {
      std::error_code ec;
      if (fs::is_directory(g, ec)) {
        for (const auto& entry : fs::directory_iterator(g))
          if (entry.is_regular_file()) by_name_[entry.path().filename().string()] = entry.path().string();
      } else {
        if (!fs::is_regular_file(g, ec)) Fail(g, ": --models: no such file or directory");
        by_name_[fs::path(g).filename().string()] = g;
      }
    }
  }
  // "ok", "absent" or "MISMATCH (sha256 …)"; *where gets the file's path.
  std::string Check(const io::LedgerFileRef& ref, std::string* where) {
    std::string path = ref.path;
    if (given_) {
      const auto it = by_name_.find(fs::path(ref.path).filename().string());
      if (it == by_name_.end()) return *where = "", "absent";
      path = it->second;
    }
    *where = path;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return "absent";
    auto [it, fresh] = hashes_.try_emplace(path);
    if (fresh) it->second = io::Sha256File(path);
    return it->second == ref.sha256 ? "ok" : "MISMATCH (sha256 " + it->second.substr(0, 16) + "…)";
  }

 private:
  bool given_;
  std::map<std::string, std::string> by_name_, hashes_;
};

std::string Short(const std::string& sha) { return sha.substr(0, 12) + "…"; }

nlohmann::json EntryJson(const io::LedgerEntry& e) {
  nlohmann::json j{{"seq", e.seq},          {"utc", e.utc},
                   {"method", e.method},    {"solver", e.solver},
                   {"k", e.ids.size()},     {"ids", e.ids},
                   {"parent", {{"path", e.parent.path}, {"sha256", e.parent.sha256}}},
                   {"child", {{"path", e.child.path}, {"sha256", e.child.sha256}}},
                   {"hash", e.hash}};
  if (e.certificate)
    j["certificate"] = {{"beta", e.certificate->beta},
                        {"epsilon_spent", e.certificate->epsilon_spent},
                        {"epsilon_budget", e.certificate->epsilon_budget},
                        {"delta", e.certificate->delta},
                        {"sigma", e.certificate->sigma}};
  return j;
}

void PrintRow(const io::LedgerEntry& e, const std::string& status) {
  char line[512];
  std::snprintf(line, sizeof line, "  %-4lld %-20s %-16s %-7s %5zu  %-13s %-13s %s",
                static_cast<long long>(e.seq), e.utc.c_str(), e.method.c_str(),
                e.solver.empty() ? "-" : e.solver.c_str(), e.ids.size(),
                Short(e.parent.sha256).c_str(), Short(e.child.sha256).c_str(), status.c_str());
  std::cout << line;
  if (e.certificate)
    std::cout << "  β " << Shortest(e.certificate->beta) << ", ε " << Shortest(e.certificate->epsilon_spent);
  std::cout << "\n";
}

const char* kHeader = "  seq  utc                  method           solver      k  parent        child         model files\n";

int Verify(const std::vector<std::string>& args) {
  po::options_description desc("options");
  std::string path;
  std::vector<std::string> models;
  bool json = false;
  desc.add_options()("help,h", "show this help")
    ("ledger", po::value(&path), "the ledger (also the first positional argument)")
    ("models", po::value(&models)->multitoken(),
     "model files, or directories of them, to check against the ledger's hashes (by file "
     "name); default: the paths the ledger recorded")
    ("json", po::bool_switch(&json), "JSON on stdout");
  po::positional_options_description pos;
  pos.add("ledger", 1);
  po::variables_map vm;
  if (!Parse(args, desc, &pos, vm, "lethe ledger verify FILE [--models DIR | PATH…] [--json]",
             "lethe ledger verify examples/digits/ledger.jsonl --models examples/digits"))
    return 0;
  Require(vm, "ledger");
  const io::LedgerRead r = io::ReadLedger(path);
  ModelFiles files(models);
  int64_t bad_line = r.bad_line;
  std::string problem = r.problem;
  nlohmann::json out{{"ledger", path}, {"entries", nlohmann::json::array()}};
  std::vector<std::pair<const io::LedgerEntry*, std::string>> rows;
  for (const io::LedgerEntry& e : r.entries) {
    // The parent of line 1 and every child (each later parent is the previous child).
    std::string status, where, parent_where;
    std::string parent_status = e.seq == 1 ? files.Check(e.parent, &parent_where) : "";
    const std::string child_status = files.Check(e.child, &where);
    status = "child " + child_status + (e.seq == 1 ? ", parent " + parent_status : "");
    nlohmann::json j = EntryJson(e);
    j["child"]["file"] = child_status;
    if (e.seq == 1) j["parent"]["file"] = parent_status;
    out["entries"].push_back(j);
    rows.emplace_back(&e, status);
    auto mismatch = [](const std::string& s) { return s.rfind("MISMATCH", 0) == 0; };
    if (mismatch(child_status) || mismatch(parent_status)) {
      const bool child = mismatch(child_status);
      bad_line = e.seq;
      problem = path + ":" + std::to_string(e.seq) + ": the " + (child ? "child" : "parent") +
                " model file " + (child ? where : parent_where) + " does not match the ledger's sha256 " +
                (child ? e.child.sha256 : e.parent.sha256) + " (swapped or modified)";
      break;
    }
  }
  out["ok"] = bad_line == 0;
  out["lines_verified"] = bad_line == 0 ? r.entries.size() : static_cast<size_t>(bad_line - 1);
  out["first_bad_line"] = bad_line == 0 ? nlohmann::json() : nlohmann::json(bad_line);
  out["problem"] = bad_line == 0 ? nlohmann::json() : nlohmann::json(problem);
  if (!r.entries.empty() && bad_line == 0)
    out["head"] = {{"path", r.entries.back().child.path}, {"sha256", r.entries.back().child.sha256}};
  if (json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "ledger " << path << ": " << r.entries.size() << " line(s) read\n" << kHeader;
    for (const auto& [e, status] : rows) PrintRow(*e, status);
    if (bad_line == 0)
      std::cout << "chain verified: " << r.entries.size() << " line(s)"
                << (r.entries.empty() ? "" : "; head " + r.entries.back().child.sha256 + " (" +
                                                 r.entries.back().child.path + ")")
                << "\n";
    else
      std::cout << "BROKEN at line " << bad_line << "\n";
  }
  if (bad_line != 0) Fail(problem);
  return 0;
}

}  // namespace

nlohmann::json LedgerHistory(const std::string& ledger_path, const std::string& model_sha256) {
  const io::LedgerRead r = io::ReadLedger(ledger_path);
  if (!r.ok()) Fail(r.problem, " (lethe ledger verify ", ledger_path, ")");
  // The chain is linear: the model's history is every line up to the one that made it.
  size_t last = r.entries.size();
  for (size_t i = r.entries.size(); i-- > 0;)
    if (r.entries[i].child.sha256 == model_sha256) {
      last = i;
      break;
    }
  nlohmann::json out = nlohmann::json::array();
  if (last == r.entries.size()) return out;
  for (size_t i = 0; i <= last; ++i) out.push_back(EntryJson(r.entries[i]));
  return out;
}

void PrintLedgerHistory(const std::string& ledger_path, const std::string& model_sha256) {
  const nlohmann::json h = LedgerHistory(ledger_path, model_sha256);
  if (h.empty()) {
    std::cout << "\n  ledger " << ledger_path << ": this model (sha256 " << Short(model_sha256)
              << ") is not the child of any of its lines\n";
    return;
  }
  std::cout << "\n  ledger " << ledger_path << ": this model is the child of line " << h.back()["seq"]
            << "; its deletion history:\n" << kHeader;
  for (const nlohmann::json& j : h) {
    const io::LedgerEntry e = [&] {
      io::LedgerEntry x;
      x.seq = j["seq"];
      x.utc = j["utc"];
      x.method = j["method"];
      x.solver = j["solver"];
      x.ids = j["ids"].get<std::vector<int64_t>>();
      x.parent.sha256 = j["parent"]["sha256"];
      x.child.sha256 = j["child"]["sha256"];
      return x;
    }();
    std::string ids;
    for (size_t i = 0; i < e.ids.size() && i < 5; ++i) ids += (i ? "," : "") + std::to_string(e.ids[i]);
    PrintRow(e, "ids " + ids + (e.ids.size() > 5 ? ",…" : ""));
  }
}

int RunLedger(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: lethe ledger verify FILE [--models DIR | PATH…] [--json]\n\n"
                 "  verify   check a deletion ledger's hash chain and the model files it names\n"
                 "           (lethe ledger verify --help)\n\n"
                 "example:\n  lethe ledger verify examples/digits/ledger.jsonl\n";
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "verify") return Verify(std::vector<std::string>(args.begin() + 1, args.end()));
  Fail("unknown subcommand ", args[0], " (known: verify)");
}

}  // namespace lethe::cli
