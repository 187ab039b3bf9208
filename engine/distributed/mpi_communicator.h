// Internal to engine/distributed: the MPI communicator's entry points, defined in
// mpi_communicator.cc, which is compiled only with LETHE_MPI.
#pragma once

#include <memory>

#include "engine/distributed/communicator.h"

namespace lethe::distributed {

#ifdef LETHE_HAVE_MPI
// MPI_Init, and MPI_COMM_WORLD as a Communicator.
std::unique_ptr<Communicator> StartMpi(int* argc, char*** argv);
void StopMpi();  // MPI_Finalize
#endif

}  // namespace lethe::distributed
