// lethe: the command line. Each subcommand lives in its own cmd_*.cc; this file only
// dispatches and turns errors into one stderr line and an exit code:
//   0 success, 1 lethe::Error (bad input, failed solve), 2 bad command-line usage.
// Any other exception (a library's std::length_error, say) is still the caller's input
// reaching a limit, so it gets the same one line and exit 1 rather than std::terminate.
// Every line goes through Escape: whatever a message quotes, it stays one bounded line.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/quote.h"
#include "engine/distributed/communicator.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/distributed_cli.h"

namespace {

void PrintUsage() {
  std::cout << "lethe " LETHE_VERSION " — measure and remove what a model learned from its "
               "training examples\n\nusage: lethe COMMAND [options]   (lethe COMMAND --help for "
               "details)\n\ncommands:\n";
  for (const auto& c : lethe::cli::AllCommands())
    std::cout << "  " << c.name << std::string(20 - std::min<size_t>(18, std::strlen(c.name)), ' ')
              << c.summary << "\n";
}

// "lethe NAME: MESSAGE" with MESSAGE escaped and bounded: exactly one line. Under mpirun
// it is kept for the ranks' agreement (tools/lethe/distributed_cli.h: Conclude), which
// prints it once.
std::string error_line;
void PrintError(const std::string& name, const std::string& message) {
  error_line = "lethe " + name + ": " + lethe::Escape(message, lethe::kMaxErrorLineBytes);
}

int Run(int argc, char** argv);

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun: MPI_Init, and only rank 0 prints (docs/distributed.md). Otherwise nothing.
  try {
    lethe::distributed::Initialize(&argc, &argv);
  } catch (const lethe::Error& e) {
    std::cerr << "lethe: " << lethe::Escape(e.what(), lethe::kMaxErrorLineBytes) << "\n";
    return 1;
  }
  lethe::cli::QuietOtherRanks();
  const int code = lethe::cli::Conclude(Run(argc, argv), error_line);
  lethe::distributed::Finalize();
  return code;
}

namespace {

int Run(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    PrintUsage();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << "lethe " LETHE_VERSION "\n";
    return 0;
  }
  const std::string name = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : lethe::cli::AllCommands()) {
    if (name != c.name) continue;
    try {
      return c.run(args);
    } catch (const lethe::Error& e) {
      PrintError(name, e.what());
      return 1;
    } catch (const boost::program_options::error& e) {
      PrintError(name, std::string(e.what()) + " (see lethe " + name + " --help)");
      return 2;
    } catch (const std::bad_alloc&) {
      // Allocations sized from input files are checked where they happen and name what
      // they were for (common/checked_alloc.h); this is everything else.
      PrintError(name, "out of memory (the model's or the solver's working buffers do not fit)");
      return 1;
    } catch (const std::exception& e) {
      PrintError(name, std::string("error: ") + e.what());
      return 1;
    } catch (...) {
      PrintError(name, "unknown error");
      return 1;
    }
  }
  std::cerr << "lethe: unknown command " << lethe::Quote(name) << " (see lethe --help)\n";
  return 2;
}

}  // namespace
