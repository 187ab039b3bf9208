#include "tools/lethe/sisa_distributed.h"

#include <cstring>
#include <optional>

#include "common/error.h"
#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {
namespace {

// StreamToRoot cuts a large chunk into pieces and hands them to rank 0 one by one: each
// result travels as a frame, its length (8 bytes) and then its bytes, reassembled here.
class Frames {
 public:
  explicit Frames(std::function<void(const std::string&)> take) : take_(std::move(take)) {}
  void Add(const std::string& piece) {
    buffer_ += piece;
    for (;;) {
      if (buffer_.size() < 8) return;
      uint64_t length = 0;
      std::memcpy(&length, buffer_.data(), 8);
      if (buffer_.size() < 8 + length) return;
      take_(buffer_.substr(8, length));
      buffer_.erase(0, 8 + length);
    }
  }

 private:
  std::function<void(const std::string&)> take_;
  std::string buffer_;
};

std::string Frame(const std::string& bytes) {
  const uint64_t length = bytes.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &length, 8);
  return out + bytes;
}

}  // namespace

void ForEachConstituent(int count, const std::function<std::string(int)>& work,
                        const std::function<void(int, const std::string&)>& take) {
  if (!Distributed()) {
    for (int j = 0; j < count; ++j) take(j, work(j));
    return;
  }
  distributed::Communicator& comm = Comm();
  const int P = comm.size(), rank = comm.rank();
  for (int base = 0; base < count; base += P) {
    const int mine = base + rank;
    std::string result;
    // Every rank runs its constituent of the round, then all agree: an error anywhere is
    // the lowest failing rank's, i.e. the lowest j's (the one-process error).
    Collectively([&] {
      if (mine < count) result = Frame(work(mine));
    });
    // Rank 0 receives rank 0's, then rank 1's, … result: j = base, base + 1, … in order.
    int next = base;
    std::optional<std::string> error;
    Frames frames([&](const std::string& bytes) {
      const int j = next++;
      if (error) return;
      try {
        take(j, bytes);
      } catch (const Error& e) {
        error = e.what();
      }
    });
    bool sent = false;
    comm.StreamToRoot(
        [&](std::string* chunk) {
          if (sent || mine >= count) return false;
          sent = true;
          chunk->swap(result);
          return true;
        },
        [&](const std::string& piece) { frames.Add(piece); });
    Agree(error);  // a failure of rank 0's take (writing a file) stops every rank
  }
}

std::string Pack(const nlohmann::json& header, const std::vector<double>& values) {
  const std::string text = header.dump();
  const uint64_t length = text.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &length, 8);
  out += text;
  const size_t at = out.size();
  out.resize(at + values.size() * sizeof(double));
  if (!values.empty()) std::memcpy(out.data() + at, values.data(), values.size() * sizeof(double));
  return out;
}

void Unpack(const std::string& bytes, nlohmann::json& header, std::vector<double>& values) {
  uint64_t length = 0;
  LETHE_CHECK(bytes.size() >= 8);
  std::memcpy(&length, bytes.data(), 8);
  LETHE_CHECK(bytes.size() >= 8 + length && (bytes.size() - 8 - length) % sizeof(double) == 0);
  header = nlohmann::json::parse(bytes.substr(8, length));
  values.resize((bytes.size() - 8 - length) / sizeof(double));
  if (!values.empty())
    std::memcpy(values.data(), bytes.data() + 8 + length, values.size() * sizeof(double));
}

void OnRoot(const std::function<void()>& f) {
  Collectively([&] {
    if (Comm().rank() == 0) f();
  });
}

}  // namespace lethe::cli
