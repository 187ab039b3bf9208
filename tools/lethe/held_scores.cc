#include "tools/lethe/held_scores.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>

#include "common/error.h"
#include "tools/lethe/distributed_cli.h"

namespace lethe::cli {

void HeldScores::Add(int64_t column, const double* values, int64_t stride) {
  LETHE_CHECK(column >= 0 && column < n_);
  if (!columns_.empty() && column < columns_.back()) sorted_ = false;
  columns_.push_back(column);
  for (int64_t j = 0; j < m_; ++j) values_.push_back(values[j * stride]);
}

void HeldScores::Sort() {
  if (sorted_) return;
  std::vector<int64_t> order(columns_.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return columns_[a] < columns_[b]; });
  std::vector<int64_t> columns(columns_.size());
  std::vector<double> values(values_.size());
  for (size_t e = 0; e < order.size(); ++e) {
    columns[e] = columns_[order[e]];
    std::copy_n(values_.begin() + order[e] * m_, m_, values.begin() + static_cast<int64_t>(e) * m_);
  }
  columns_.swap(columns);
  values_.swap(values);
  sorted_ = true;
}

int64_t HeldScores::LowerBound(int64_t c) const {
  return std::lower_bound(columns_.begin(), columns_.end(), c) - columns_.begin();
}

void HeldScores::WriteTo(ScoresNpy* npy) {
  Sort();
  // A block's entries, (column, its m scores) as raw bytes: at most 2^20 doubles per rank's
  // chunk (8 MiB, well under the communicator's piece size, so a chunk is never cut inside
  // an entry) and in rank 0's block.
  const int64_t entry = (1 + m_) * 8;
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 20) / (1 + m_));
  std::vector<double> buffer;
  std::vector<char> seen;
  std::optional<std::string> error;
  for (int64_t begin = 0; begin < n_; begin += block) {
    const int64_t count = std::min(block, n_ - begin);
    const int64_t lo = LowerBound(begin), hi = LowerBound(begin + count);
    if (npy) buffer.assign(static_cast<size_t>(m_ * count), 0.0), seen.assign(count, 0);
    bool sent = false;
    Comm().StreamToRoot(
        [&](std::string* chunk) {
          if (sent) return false;
          sent = true;
          chunk->resize(static_cast<size_t>((hi - lo) * entry));
          char* p = chunk->data();
          for (int64_t e = lo; e < hi; ++e, p += entry) {
            std::memcpy(p, &columns_[e], 8);
            std::memcpy(p + 8, values_.data() + e * m_, static_cast<size_t>(m_) * 8);
          }
          return true;
        },
        [&](const std::string& chunk) {
          LETHE_CHECK(npy && chunk.size() % entry == 0);
          for (size_t at = 0; at < chunk.size(); at += entry) {
            int64_t c = 0;
            std::memcpy(&c, chunk.data() + at, 8);
            LETHE_CHECK(c >= begin && c < begin + count && !seen[c - begin],
                        "a score column sent twice or out of its block");
            seen[c - begin] = 1;
            for (int64_t j = 0; j < m_; ++j)
              std::memcpy(&buffer[j * count + (c - begin)], chunk.data() + at + 8 + j * 8, 8);
          }
        });
    if (!npy || error) continue;
    LETHE_CHECK(std::all_of(seen.begin(), seen.end(), [](char s) { return s != 0; }),
                "a score column no rank computed");
    try {
      npy->WriteBlock(begin, count, buffer.data());
    } catch (const Error& e) {
      error = e.what();  // keep taking the other ranks' blocks; then every rank stops
    }
  }
  Agree(error);
}

std::vector<std::pair<int64_t, double>> HeldScores::Best(int64_t j, int64_t k, bool largest,
                                                         bool magnitude) const {
  const auto key = [&](double v) { return magnitude ? std::abs(v) : v; };
  // The top k of every rank's top k is the top k of all (one total order: key, then column).
  TopK mine(k, largest);
  for (size_t e = 0; e < columns_.size(); ++e) {
    const double v = values_[e * m_ + j];
    mine.Push(columns_[e], key(v), v);
  }
  TopK all(k, largest);
  bool sent = false;
  Comm().StreamToRoot(
      [&](std::string* chunk) {
        if (sent) return false;
        sent = true;
        const auto best = mine.Sorted();
        chunk->resize(best.size() * 16);
        for (size_t t = 0; t < best.size(); ++t) {
          std::memcpy(chunk->data() + 16 * t, &best[t].first, 8);
          std::memcpy(chunk->data() + 16 * t + 8, &best[t].second, 8);
        }
        return true;
      },
      [&](const std::string& chunk) {
        for (size_t at = 0; at + 16 <= chunk.size(); at += 16) {
          int64_t c = 0;
          double v = 0;
          std::memcpy(&c, chunk.data() + at, 8);
          std::memcpy(&v, chunk.data() + at + 8, 8);
          all.Push(c, key(v), v);
        }
      });
  if (Comm().rank() != 0) return {};
  return all.Sorted();
}

}  // namespace lethe::cli
