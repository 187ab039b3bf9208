#include "tools/lethe/distributed_cli.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <unordered_map>
#include <unordered_set>

#include "engine/forgotten.h"
#include "io/dataset_block.h"
#include "tools/lethe/forgotten_data.h"

namespace lethe::cli {
namespace {

// How long a failed rank waits for the others to reach the exit agreement before it
// aborts them (they may be blocked in a collective it will never join). Ranks that fail
// together (a deterministic error after the same reductions) arrive within milliseconds.
constexpr double kAgreementSeconds = 10;

int real_stderr = STDERR_FILENO;

// Ids unique over all ranks' rows, without any rank holding all of them: rank r broadcasts
// its ids in turn, and each later rank looks for them among its own. The message is the
// one a whole load gives when the first repeat is within a block; across blocks it names
// the id and both file rows.
void CheckIdsUniqueAcrossRanks(const io::Dataset& data, int64_t first_row) {
  distributed::Communicator& comm = Comm();
  std::unordered_map<int64_t, int64_t> mine;  // id → file row
  for (int64_t i = 0; i < data.n; ++i) mine.emplace(data.ids[i], first_row + i);
  std::optional<std::string> error;
  int64_t first_dup_row = -1;
  for (int r = 0; r < comm.size() - 1; ++r) {
    std::string bytes;
    if (comm.rank() == r) {
      // (id, file row) pairs as raw int64s
      bytes.resize(static_cast<size_t>(data.n) * 16);
      for (int64_t i = 0; i < data.n; ++i) {
        const int64_t pair[2] = {data.ids[i], first_row + i};
        std::copy_n(reinterpret_cast<const char*>(pair), 16, bytes.data() + i * 16);
      }
    }
    comm.Broadcast(&bytes, r);
    if (comm.rank() <= r) continue;
    for (size_t k = 0; k + 16 <= bytes.size(); k += 16) {
      int64_t pair[2];
      std::copy_n(bytes.data() + k, 16, reinterpret_cast<char*>(pair));
      const auto it = mine.find(pair[0]);
      if (it == mine.end() || (first_dup_row >= 0 && it->second >= first_dup_row)) continue;
      first_dup_row = it->second;
      error = data.path + ": duplicate id " + std::to_string(pair[0]) + " (rows " +
              std::to_string(pair[1]) + " and " + std::to_string(it->second) + ")";
    }
  }
  Agree(error);
}

}  // namespace

void Agree(const std::optional<std::string>& error) {
  if (!Distributed()) {
    if (error) throw Error(*error);
    return;
  }
  // No timeout here: every rank reaches this point (it follows no collective that a
  // failed rank could have skipped).
  const distributed::Communicator::Outcome o =
      Comm().Agree(error ? 1 : 0, error.value_or(""), 1e300);
  if (o.code != 0) throw AgreedError(o.message);
}

io::Dataset LoadRows(const std::string& path, const io::DatasetOptions& options) {
  if (!Distributed()) return io::LoadDataset(path, options);
  io::DatasetBlock block = Collectively(
      [&] { return io::LoadDatasetBlock(path, options, Comm().rank(), Comm().size()); });
  CheckIdsUniqueAcrossRanks(block.data, block.first_row);
  return std::move(block.data);
}

int64_t SumOverRanks(int64_t value) {
  if (!Distributed()) return value;
  double v = static_cast<double>(value);  // exact below 2⁵³
  Comm().AllreduceSum(&v, 1);
  return static_cast<int64_t>(v);
}

io::Dataset ExcludeForgottenRows(const ForgetHistory& forgotten, io::Dataset data,
                                 const std::string& command, const std::string& model_path) {
  if (!Distributed()) return ExcludeForgotten(forgotten, std::move(data), command, model_path);
  if (forgotten.ids.empty()) return data;
  const std::vector<int64_t> rows = RowsNotForgotten(data, forgotten);
  const int64_t left_out = SumOverRanks(data.n - static_cast<int64_t>(rows.size()));
  const int64_t remain = SumOverRanks(static_cast<int64_t>(rows.size()));
  const size_t requests = forgotten.requests.size();
  std::cerr << "lethe " << command << ": note: " << model_path << " has forgotten "
            << forgotten.ids.size() << " id(s) in " << requests << " deletion request"
            << (requests == 1 ? "" : "s") << "; ";
  if (left_out == 0) {
    std::cerr << "none of them is in " << data.path << "\n";
    return data;
  }
  std::cerr << left_out << " of them are in " << data.path << " and are left out of it ("
            << remain << " examples remain; lethe inspect lists them)\n";
  if (remain < Comm().size())
    Collectively([&] {
      Fail(data.path, ": ", remain, " rows left, fewer than the ", Comm().size(),
           " processes (mpirun -np)");
    });
  io::Dataset kept = SelectRows(data, rows);
  // A rank may have kept none of its rows; Objective needs at least one per rank.
  Collectively([&] {
    if (kept.n == 0)
      Fail(data.path, ": every row of process ", Comm().rank(),
           "'s block is forgotten; run with fewer processes (mpirun -np)");
  });
  return kept;
}

std::vector<int64_t> LocalRowsOf(const io::Dataset& data, const std::vector<int64_t>& ids,
                                 const std::string& what) {
  if (!Distributed()) return data.RowsOf(ids, what);
  std::unordered_map<int64_t, int64_t> row_of;
  for (int64_t i = 0; i < data.n; ++i) row_of.emplace(data.ids[i], i);
  std::vector<double> found(ids.size(), 0.0);
  std::vector<int64_t> rows;
  for (size_t k = 0; k < ids.size(); ++k)
    if (const auto it = row_of.find(ids[k]); it != row_of.end()) {
      found[k] = 1;
      rows.push_back(it->second);
    }
  if (!found.empty()) Comm().AllreduceSum(found.data(), static_cast<int64_t>(found.size()));
  for (size_t k = 0; k < ids.size(); ++k)
    if (found[k] == 0)  // the same on every rank: no agreement needed
      Fail(what, ": unknown id ", ids[k], " (not in ", data.path, ")");
  return rows;
}

void CheckSameFileOnEveryRank(const std::string& path, const std::string& sha256) {
  if (!Distributed()) return;
  std::string root = sha256;
  Comm().Broadcast(&root, 0);
  Collectively([&] {
    if (sha256 != root)
      Fail(path, ": process ", Comm().rank(), " reads other bytes under this path than "
           "process 0 (every process must see the same file)");
  });
}

void QuietOtherRanks() {
  if (Comm().rank() == 0) return;
  std::fflush(stdout);
  std::fflush(stderr);
  real_stderr = dup(STDERR_FILENO);
  const int null = open("/dev/null", O_WRONLY);
  if (null >= 0) {
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    close(null);
  }
}

void ErrorLine(const std::string& line) {
  const std::string text = line + "\n";
  [[maybe_unused]] const ssize_t written = write(real_stderr, text.data(), text.size());
}

int Conclude(int code, const std::string& line) {
  if (!Distributed()) {
    if (code != 0 && !line.empty()) ErrorLine(line);
    return code;
  }
  std::fflush(stdout);
  const distributed::Communicator::Outcome o = Comm().Agree(code, line, kAgreementSeconds);
  if (o.code == -1) {
    // The others are stuck in a collective this rank left: say why, then end them all.
    ErrorLine(line);
    Comm().Abort(code);
  }
  if (o.code != 0 && Comm().rank() == 0 && !o.message.empty()) ErrorLine(o.message);
  return o.code;
}

}  // namespace lethe::cli
