#include "engine/sisa/partition.h"

#include <algorithm>

#include "common/error.h"

namespace lethe::sisa {

void PartitionOptions::Validate() const {
  // 4096 each keeps S·R ≤ 2²⁴ cells, far below where the 128-bit product loses uniformity.
  if (shards < 1 || shards > 4096) Fail("--shards = ", shards, ": must be in [1, 4096]");
  if (slices < 1 || slices > 4096) Fail("--slices = ", slices, ": must be in [1, 4096]");
}

uint64_t Mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Cell Assign(int64_t id, const PartitionOptions& o) {
  const uint64_t h = Mix64(Mix64(o.seed) ^ static_cast<uint64_t>(id));
  const uint64_t cells = static_cast<uint64_t>(o.shards) * static_cast<uint64_t>(o.slices);
  const uint64_t cell = static_cast<uint64_t>((static_cast<unsigned __int128>(h) * cells) >> 64);
  return {static_cast<int>(cell / o.slices), static_cast<int>(cell % o.slices)};
}

Partition PartitionIds(const std::vector<int64_t>& ids, const PartitionOptions& o) {
  o.Validate();
  Partition p(o.shards, std::vector<std::vector<int64_t>>(o.slices));
  for (int64_t id : ids) {
    const Cell c = Assign(id, o);
    p[c.shard][c.slice].push_back(id);
  }
  for (auto& shard : p)
    for (auto& slice : shard) std::sort(slice.begin(), slice.end());
  return p;
}

std::vector<int64_t> ShardOrder(const Partition& p, int shard, int through_slice) {
  std::vector<int64_t> order;
  for (int r = 0; r <= through_slice; ++r)
    order.insert(order.end(), p[shard][r].begin(), p[shard][r].end());
  return order;
}

}  // namespace lethe::sisa
