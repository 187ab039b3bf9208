// lethe: the command line. Each subcommand lives in its own cmd_*.cc; this file only
// dispatches and turns errors into one stderr line and an exit code:
//   0 success, 1 lethe::Error (bad input, failed solve), 2 bad command-line usage.
#include <boost/program_options.hpp>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "common/error.h"
#include "tools/lethe/commands.h"

namespace {

void PrintUsage() {
  std::cout << "lethe " LETHE_VERSION " — measure and remove what a model learned from its "
               "training examples\n\nusage: lethe COMMAND [options]   (lethe COMMAND --help for "
               "details)\n\ncommands:\n";
  for (const auto& c : lethe::cli::AllCommands())
    std::cout << "  " << c.name << std::string(16 - std::strlen(c.name), ' ') << c.summary << "\n";
}

}  // namespace

int main(int argc, char** argv) {
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
      std::cerr << "lethe " << name << ": " << e.what() << "\n";
      return 1;
    } catch (const boost::program_options::error& e) {
      std::cerr << "lethe " << name << ": " << e.what() << " (see lethe " << name << " --help)\n";
      return 2;
    } catch (const std::bad_alloc&) {
      std::cerr << "lethe " << name << ": out of memory\n";
      return 1;
    }
  }
  std::cerr << "lethe: unknown command '" << name << "' (see lethe --help)\n";
  return 2;
}
