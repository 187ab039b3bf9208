// What the commands need to run under mpirun (docs/distributed.md): the rows of this
// rank, errors agreed by every rank, the objective distributed, output from rank 0.
// Serially (one process, or a build without MPI) every function here is what the
// command did before: LoadRows is io::LoadDataset, Collectively runs its function.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "common/error.h"
#include "engine/distributed/communicator.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "io/dataset.h"

namespace lethe::cli {

inline distributed::Communicator& Comm() { return distributed::World(); }
inline bool Distributed() { return Comm().size() > 1; }

// An error every rank raised together, with the same message (the lowest failing rank's):
// rank 0 prints it, every rank exits with its code, nothing aborts.
class AgreedError : public Error {
 public:
  using Error::Error;
};

// Every rank, at the same point: throws AgreedError on every rank when any rank's `error`
// is set (the lowest such rank's message), else returns.
void Agree(const std::optional<std::string>& error);

// Runs f on every rank; a lethe::Error on any rank becomes the same AgreedError on all.
template <typename F>
auto Collectively(F&& f) -> decltype(f()) {
  using R = decltype(f());
  if (!Distributed()) return f();
  std::optional<std::string> error;
  if constexpr (std::is_void_v<R>) {
    try {
      f();
    } catch (const Error& e) {
      error = e.what();
    }
    Agree(error);
  } else {
    std::optional<R> result;
    try {
      result.emplace(f());
    } catch (const Error& e) {
      error = e.what();
    }
    Agree(error);
    return std::move(*result);
  }
}

// The rows this process works on: the whole file serially; under mpirun its block
// (io/dataset_block.h), the ids checked unique over all blocks. Collective.
io::Dataset LoadRows(const std::string& path, const io::DatasetOptions& options);
// ExcludeForgotten (forgotten_data.h) over every rank's rows: the note counts all of them.
io::Dataset ExcludeForgottenRows(const ForgetHistory& forgotten, io::Dataset data,
                                 const std::string& command, const std::string& model_path);
// The rows of this process's data that hold `ids` (Dataset::RowsOf over every rank's rows:
// an id in no rank's rows is the same error as serially). Collective.
std::vector<int64_t> LocalRowsOf(const io::Dataset& data, const std::vector<int64_t>& ids,
                                 const std::string& what);
// Σ over ranks of a count (identity serially). Collective.
int64_t SumOverRanks(int64_t value);

// Distributes a training objective over the ranks (nothing serially). Collective.
template <typename T>
void Distribute(Objective<T>& objective) {
  if (Distributed()) objective.Distribute(Comm());
}

// Every rank read the same bytes under `path` as rank 0 (`sha256`: this rank's hash of its
// file), or every rank stops with one line: ranks starting from different models would fall
// out of step in their reductions (no shared filesystem, a file replaced during the launch).
// Nothing serially.
void CheckSameFileOnEveryRank(const std::string& path, const std::string& sha256);

// main: after Initialize, ranks other than 0 print nothing (stdout and stderr go to
// /dev/null; errors that end in an abort still reach the terminal, ErrorLine).
void QuietOtherRanks();
// main: one error line on the real stderr of this rank.
void ErrorLine(const std::string& line);
// main, on every rank at the end of a command: agrees on the exit code. `message` is this
// rank's error line ("" when it succeeded, code 0). Rank 0 prints the agreed line (an
// AgreedError's message is the same on all ranks); a rank whose failure the others do not
// join within the timeout prints its own line and aborts every rank. Returns the code.
int Conclude(int code, const std::string& line);

}  // namespace lethe::cli
