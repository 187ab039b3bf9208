#include "tools/lethe/cli.h"

#include <charconv>
#include <cstdio>
#include <iostream>
#include <unistd.h>

#include "common/error.h"
#include "engine/distributed/communicator.h"
#include "io/dataset.h"

namespace lethe::cli {

void CommonOptions::Add(po::options_description& desc) {
  desc.add_options()
    ("dtype", po::value(&dtype)->default_value("f64"), "compute precision: f64 or f32")
    ("device", po::value(&device)->default_value("cpu"), "cpu or cuda")
    ("threads", po::value(&threads)->default_value(0), "CPU threads (0: OMP_NUM_THREADS, else all cores)")
    ("chunk-size", po::value(&batch_size)->default_value(2048),
     "examples per forward/backward pass (bounds memory)")
    ("label-column", po::value(&label_column)->default_value("label"), "CSV label column")
    ("id-column", po::value(&id_column), "CSV id column (default: row index)")
    ("quiet", po::bool_switch(&quiet), "no progress on stderr")
    ("json", po::bool_switch(&json), "machine-readable JSON on stdout");
}

kernels::BackendOptions CommonOptions::Backend() const {
  kernels::BackendOptions o;
  if (device == "cpu")
    o.device = kernels::DeviceKind::kCpu;
  else if (device == "cuda")
    o.device = kernels::DeviceKind::kCuda;
  else
    Fail("--device ", device, ": unknown (known: cpu, cuda)");
  if (threads < 0) Fail("--threads ", threads, ": must be >= 0");
  if (batch_size < 1) Fail("--chunk-size ", batch_size, ": must be >= 1");
  o.threads = threads;
  // Under mpirun, one GPU per rank: the rank's index on its node (docs/distributed.md).
  o.cuda_device = distributed::World().local_rank();
  return o;
}

bool CommonOptions::F32() const {
  if (dtype == "f64") return false;
  if (dtype == "f32") return true;
  Fail("--dtype ", dtype, ": unknown (known: f64, f32)");
}

bool Parse(const std::vector<std::string>& args, const po::options_description& desc,
           const po::positional_options_description* positional, po::variables_map& vm,
           const char* usage, const char* example) {
  po::command_line_parser parser(args);
  parser.options(desc);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: " << usage << "\n\nexample:\n  " << example << "\n\n" << desc << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

void Require(const po::variables_map& vm, const char* name) {
  if (!vm.count(name)) Fail("--", name, " is required (see --help)");
}

std::optional<std::vector<int64_t>> ForgetIds(const po::variables_map& vm) {
  const bool file = vm.count("forget"), list = vm.count("forget-ids");
  if (file && list) Fail("give --forget or --forget-ids, not both");
  if (file) return io::ReadIdFile(vm["forget"].as<std::string>());
  if (list) return io::ParseIdList(vm["forget-ids"].as<std::string>(), "--forget-ids");
  return std::nullopt;
}

Progress::Progress(bool quiet) : enabled_(!quiet && isatty(STDERR_FILENO)) {}

bool Progress::Due() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ < std::chrono::seconds(1)) return false;
  last_ = now;
  return true;
}

void Progress::Announce(const std::string& line) {
  if (!enabled_) return;
  last_ = std::chrono::steady_clock::now();
  std::fprintf(stderr, "%s\n", line.c_str());
}

void Progress::Update(const std::string& line) {
  if (enabled_ && Due()) std::fprintf(stderr, "%s\n", line.c_str());
}

void Progress::Report(const char* phase, int64_t done, int64_t total) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (phase_ != phase || done < phase_first_) {
    phase_ = phase;
    phase_start_ = now;
    phase_first_ = done;
    phase_shown_ = false;
  }
  const bool end = total > 0 && done >= total;
  if (!(end && phase_shown_) && !Due()) return;
  const double seconds = std::chrono::duration<double>(now - phase_start_).count();
  const double rate = seconds > 0 ? (done - phase_first_) / seconds : 0;
  std::string line = "  " + phase_ + " " + std::to_string(done);
  if (total > 0) line += " / " + std::to_string(total);
  if (rate > 0) {
    line += " (" + (rate >= 10 ? Fixed(rate, 0) : Fixed(rate, 2)) + "/s";
    if (total > 0 && !end) line += ", ETA " + Fixed((total - done) / rate, 0) + " s";
    line += ")";
  }
  if (end) line += ", " + Fixed(seconds, 1) + " s";
  std::fprintf(stderr, "%s\n", line.c_str());
  phase_shown_ = !end;
}

void Warn(const std::string& command, const std::string& text) {
  std::fprintf(stderr, "lethe %s: warning: %s\n", command.c_str(), text.c_str());
}

std::string Fixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

std::string Sci(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*e", digits, value);
  return buf;
}

std::string Shortest(double value) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, end);
}

}  // namespace lethe::cli
