// The seam between lethe and MPI (docs/distributed.md). Everything above it sees only
// this interface: the objective sums its row sums through AllreduceSum, the commands ask
// rank() and size(), stream their rows' results to rank 0 and agree on errors. The serial
// implementation (one process: identity) is always built; the MPI one
// (mpi_communicator.cc) only with LETHE_MPI, and only used when the process was started
// by mpirun. So a binary without MPI, or a plain run of one with it, does what lethe
// always did.
//
// Reductions have a FIXED order: every rank receives every rank's partial sums and adds
// them in rank order 0, 1, …, P−1, so every rank holds the same bits and the result does
// not depend on timing or on the MPI library's choice of algorithm (docs/distributed.md
// gives the cost: each rank receives (P−1)·count doubles instead of a ring's ~2·count).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lethe::distributed {

// What a communicator has sent through its reductions, for the per-iteration report.
struct Counters {
  int64_t allreduces = 0;       // AllreduceSum calls
  int64_t allreduce_values = 0;  // doubles summed (p per gradient or product of one vector)
  // Bytes this rank put on the wire for them: count·8 per allreduce (its own partial sums;
  // it receives (P−1) times that).
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The rank's index on its node (picks its GPU); 0 serially.
  virtual int local_rank() const { return 0; }

  // values[0, count) := Σ over ranks in rank order, identical bits on every rank.
  virtual void AllreduceSum(double* values, int64_t count) = 0;
  // One int64 from each rank, in rank order, on every rank.
  virtual std::vector<int64_t> AllgatherInt64(int64_t value) = 0;
  // Rank `root`'s bytes to every rank (data resized on the others).
  virtual void Broadcast(std::string* data, int root) = 0;
  // Rank 0 calls consume(chunk) for every chunk every rank produces, rank 0's own first,
  // then rank 1's, …, each rank's chunks in order; produce(chunk) returns false when the
  // rank has no more (the chunk it filled is then ignored). Memory on rank 0: one chunk.
  virtual void StreamToRoot(const std::function<bool(std::string*)>& produce,
                            const std::function<void(const std::string&)>& consume) = 0;

  // Error agreement, called by every rank at the same point: `code` 0 = this rank is fine,
  // else its exit code and one-line message. Returns the lowest failing rank's (code,
  // message) on every rank, or code 0 when none failed. A rank that failed waits at most
  // `timeout_seconds` for the others (which may be blocked in a collective it will never
  // join); then it returns -1 and the caller aborts.
  struct Outcome {
    int code = 0;
    int rank = -1;  // the failing rank whose message it is
    std::string message;
  };
  virtual Outcome Agree(int code, const std::string& message, double timeout_seconds) = 0;
  // Ends every rank now with `code` (MPI_Abort); serially std::exit.
  [[noreturn]] virtual void Abort(int code) = 0;

  const Counters& counters() const { return counters_; }
  void ResetCounters() { counters_ = {}; }

 protected:
  Counters counters_;
};

// One process: rank 0 of 1, every collective the identity.
class SerialCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void AllreduceSum(double*, int64_t count) override;
  std::vector<int64_t> AllgatherInt64(int64_t value) override { return {value}; }
  void Broadcast(std::string*, int) override {}
  void StreamToRoot(const std::function<bool(std::string*)>& produce,
                    const std::function<void(const std::string&)>& consume) override;
  Outcome Agree(int code, const std::string& message, double) override {
    return {code, code ? 0 : -1, message};
  }
  [[noreturn]] void Abort(int code) override;
};

// The process's communicator: set up once by Initialize (main), serial until then.
Communicator& World();
// Whether lethe was built with MPI (LETHE_MPI).
bool MpiBuilt();
// Called first thing in main. Under mpirun (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK
// in the environment) with MPI built: MPI_Init and the MPI communicator. Under mpirun
// without MPI built: throws lethe::Error (every process would otherwise run the whole job
// and race to write the same outputs). Otherwise: serial, MPI untouched.
void Initialize(int* argc, char*** argv);
// MPI_Finalize when Initialize started MPI.
void Finalize();

// Rows [begin, end) of n that rank r of P holds: [⌊n·r/P⌋, ⌊n·(r+1)/P⌋).
inline int64_t BlockBegin(int64_t n, int rank, int size) {
  return static_cast<int64_t>((static_cast<__int128>(n) * rank) / size);
}

}  // namespace lethe::distributed
