// The MPI implementation of the Communicator (compiled only with LETHE_MPI).
#include "engine/distributed/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "common/error.h"

namespace lethe::distributed {
namespace {

// MPI counts are ints: large reductions go in pieces of this many values.
constexpr int64_t kMaxPiece = int64_t{1} << 26;
constexpr int kTagData = 1, kTagEnd = 2;

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    // The rank among the processes sharing this node's memory: which GPU it takes.
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_free(&node);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }

  // A reduce-scatter in fixed order, then an allgather. The vector is cut into P segments;
  // rank r receives every rank's piece of segment r (MPI_Alltoallv), sums them in rank
  // order 0, 1, …, P − 1, and the summed segments are gathered everywhere (MPI_Allgatherv).
  // Every value is the same sum, in the same order, on every rank, whatever algorithm MPI
  // picks and whenever each rank arrives (an MPI_SUM allreduce guarantees neither), and the
  // same bits as summing an allgather of the whole vectors in rank order, which this
  // replaces: that moved (P − 1)·count values into every rank and held P·count of them
  // (34 GB at P = 64, p = 10⁷, m = 10: docs/scaling.md). Here each rank sends and receives
  // count + (P − 2)·⌈count/P⌉ values and holds count more: a ring allreduce's bandwidth.
  void AllreduceSum(double* values, int64_t count) override {
    ++counters_.allreduces;
    counters_.allreduce_values += count;
    if (size_ == 1) return;
    const size_t P = static_cast<size_t>(size_);
    std::vector<int> length(P), offset(P), receive_length(P), receive_offset(P);
    for (int64_t begin = 0; begin < count; begin += kMaxPiece) {
      const int piece = static_cast<int>(std::min(kMaxPiece, count - begin));
      for (int r = 0, at = 0; r < size_; ++r) {
        length[r] = piece / size_ + (r < piece % size_ ? 1 : 0);
        offset[r] = at;
        at += length[r];
      }
      const int mine = length[rank_];
      for (int r = 0; r < size_; ++r) {
        receive_length[r] = mine;
        receive_offset[r] = r * mine;
      }
      parts_.resize(P * static_cast<size_t>(mine));
      double* v = values + begin;
      MPI_Alltoallv(v, length.data(), offset.data(), MPI_DOUBLE, parts_.data(),
                    receive_length.data(), receive_offset.data(), MPI_DOUBLE, MPI_COMM_WORLD);
      for (int i = 0; i < mine; ++i) {
        double sum = parts_[i];
        for (size_t r = 1; r < P; ++r) sum += parts_[r * mine + i];
        v[offset[rank_] + i] = sum;
      }
      MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, length.data(), offset.data(),
                     MPI_DOUBLE, MPI_COMM_WORLD);
      // Sent: the other ranks' segments, then this rank's sum to each of them; received
      // the same amounts the other way.
      const int64_t moved = 8 * (int64_t{piece} - mine + int64_t{mine} * (size_ - 1));
      counters_.bytes_sent += moved;
      counters_.bytes_received += moved;
    }
  }

  std::vector<int64_t> AllgatherInt64(int64_t value) override {
    std::vector<int64_t> all(size_);
    MPI_Allgather(&value, 1, MPI_INT64_T, all.data(), 1, MPI_INT64_T, MPI_COMM_WORLD);
    return all;
  }

  void Broadcast(std::string* data, int root) override {
    int64_t bytes = static_cast<int64_t>(data->size());
    MPI_Bcast(&bytes, 1, MPI_INT64_T, root, MPI_COMM_WORLD);
    data->resize(static_cast<size_t>(bytes));
    for (int64_t begin = 0; begin < bytes; begin += kMaxPiece)
      MPI_Bcast(data->data() + begin, static_cast<int>(std::min(kMaxPiece, bytes - begin)),
                MPI_CHAR, root, MPI_COMM_WORLD);
  }

  void StreamToRoot(const std::function<bool(std::string*)>& produce,
                    const std::function<void(const std::string&)>& consume) override {
    std::string chunk;
    if (rank_ != 0) {
      // Blocking sends: a rank waits until rank 0 takes its chunk, so rank 0 never holds
      // more than one (chunks are produced bounded by the caller).
      while (produce(&chunk)) {
        for (size_t begin = 0; begin < chunk.size(); begin += kMaxPiece) {
          const int piece = static_cast<int>(std::min<size_t>(kMaxPiece, chunk.size() - begin));
          MPI_Send(chunk.data() + begin, piece, MPI_CHAR, 0, kTagData, MPI_COMM_WORLD);
        }
      }
      MPI_Send(nullptr, 0, MPI_CHAR, 0, kTagEnd, MPI_COMM_WORLD);
      return;
    }
    while (produce(&chunk)) consume(chunk);
    for (int r = 1; r < size_; ++r) {
      for (;;) {
        MPI_Status status;
        MPI_Probe(r, MPI_ANY_TAG, MPI_COMM_WORLD, &status);
        int bytes = 0;
        MPI_Get_count(&status, MPI_CHAR, &bytes);
        chunk.resize(static_cast<size_t>(bytes));
        MPI_Recv(chunk.data(), bytes, MPI_CHAR, r, status.MPI_TAG, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        if (status.MPI_TAG == kTagEnd) break;
        consume(chunk);
      }
    }
  }

  Outcome Agree(int code, const std::string& message, double timeout_seconds) override {
    std::vector<int> codes(size_);
    MPI_Request request;
    MPI_Iallgather(&code, 1, MPI_INT, codes.data(), 1, MPI_INT, MPI_COMM_WORLD, &request);
    const auto start = std::chrono::steady_clock::now();
    for (int done = 0;;) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (done) break;
      // A failed rank cannot tell "the others are still computing" from "the others are
      // blocked in a collective this rank will never join": past the timeout it gives up
      // (the caller reports and aborts). A rank that is fine waits as long as it takes.
      if (code != 0 && std::chrono::steady_clock::now() - start >
                           std::chrono::duration<double>(timeout_seconds))
        return {-1, rank_, message};
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    Outcome outcome;
    for (int r = 0; r < size_; ++r)
      if (codes[r] != 0) {
        outcome.code = codes[r];
        outcome.rank = r;
        break;
      }
    if (outcome.code == 0) return outcome;
    outcome.message = message;
    Broadcast(&outcome.message, outcome.rank);
    return outcome;
  }

  [[noreturn]] void Abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; in case it does
  }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  std::vector<double> parts_;  // the reduce-scatter's received pieces
};

}  // namespace

std::unique_ptr<Communicator> StartMpi(int* argc, char*** argv) {
  int provided = 0;
  // Only the main thread calls MPI (OpenMP threads compute between the calls).
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  return std::make_unique<MpiCommunicator>();
}

void StopMpi() { MPI_Finalize(); }

}  // namespace lethe::distributed
