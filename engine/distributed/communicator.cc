#include "engine/distributed/communicator.h"

#include <cstdlib>

#include "common/error.h"
#include "engine/distributed/mpi_communicator.h"

namespace lethe::distributed {

void SerialCommunicator::AllreduceSum(double*, int64_t count) {
  // Nothing moves; counted all the same, so that a serial run reports the reductions
  // P ranks would make (docs/distributed.md).
  ++counters_.allreduces;
  counters_.allreduce_values += count;
}

void SerialCommunicator::StreamToRoot(const std::function<bool(std::string*)>& produce,
                                      const std::function<void(const std::string&)>& consume) {
  std::string chunk;
  while (produce(&chunk)) consume(chunk);
}

void SerialCommunicator::Abort(int code) { std::exit(code); }

namespace {

std::unique_ptr<Communicator>& WorldSlot() {
  static std::unique_ptr<Communicator> world = std::make_unique<SerialCommunicator>();
  return world;
}

// The environment variables the MPI launchers set in each process they start (Open MPI's
// mpirun, PMIx and PMI-1/2 launchers such as srun and Hydra).
bool LaunchedByMpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(name)) return true;
  return false;
}

}  // namespace

Communicator& World() { return *WorldSlot(); }

#ifdef LETHE_HAVE_MPI
bool MpiBuilt() { return true; }
namespace {
bool mpi_started = false;
}
void Initialize(int* argc, char*** argv) {
  if (!LaunchedByMpirun()) return;
  WorldSlot() = StartMpi(argc, argv);
  mpi_started = true;
}
void Finalize() {
  if (!mpi_started) return;
  WorldSlot() = std::make_unique<SerialCommunicator>();
  StopMpi();
  mpi_started = false;
}
#else
bool MpiBuilt() { return false; }
void Initialize(int*, char***) {
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (!size) size = std::getenv("PMI_SIZE");
  if (LaunchedByMpirun() && !(size && std::string(size) == "1"))
    Fail("started by mpirun, but this lethe was built without MPI (LETHE_MPI=OFF, or no MPI "
         "found at configure time): every process would run the whole job; rebuild with "
         "libopenmpi-dev installed (docs/distributed.md)");
}
void Finalize() {}
#endif

}  // namespace lethe::distributed
