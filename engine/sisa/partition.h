// SISA's partition (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021): every training
// example goes to one of S shards and, inside its shard, to one of R slices.
//
// Stability under deletion forces the partition to be a function of the id alone. Suppose
// assign_D(y) is the cell of id y when the data are the set of ids D, and removing any id
// never moves another: assign_{D∖{x}}(y) = assign_D(y) for every x ≠ y. Removing the ids of
// D other than y one at a time gives assign_D(y) = assign_{{y}}(y): the cell of y cannot
// depend on which other ids exist. So no stable scheme can balance every data set exactly
// (rank-based schemes, "the k-th id in hash order goes to shard k mod S", are exactly
// balanced but move every later id when one is removed). lethe therefore places an id by a
// keyed hash of the id itself, and is balanced in distribution: each of the S·R cells is
// equally likely for every id, independently of the others, so a cell's count is
// Binomial(n, 1/(S·R)) (n = 10,000, S·R = 40: 250 ± 15.6). `lethe sisa train` records the
// counts it got and refuses a shard that gets no example.
//
// The hash, "splitmix64-v1" (the name the manifest records; any change of formula is a new
// name):
//   mix(z)  = SplitMix64's finaliser of z + 0x9e3779b97f4a7c15 (Steele, Lea & Flood 2014)
//   h(id)   = mix(mix(seed) XOR uint64(id))
//   cell    = floor(h · S·R / 2⁶⁴)     (the high word of a 128-bit product: unbiased to
//                                       within S·R / 2⁶⁴, with no modulo)
//   shard   = cell div R,   slice = cell mod R
// A shard trains on its examples in a fixed order that is also a function of the ids
// alone: by slice, then by id (ShardOrder), so retraining a shard without some ids feeds
// the optimiser exactly the rows `lethe sisa train` on the kept data would.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lethe::sisa {

inline constexpr const char* kPartitionScheme = "splitmix64-v1";

struct Cell {
  int shard = 0;
  int slice = 0;
  bool operator==(const Cell& o) const { return shard == o.shard && slice == o.slice; }
};

struct PartitionOptions {
  int shards = 1;
  int slices = 1;
  uint64_t seed = 0;
  void Validate() const;  // 1 ≤ shards, slices ≤ 4096; throws lethe::Error naming the option
};

uint64_t Mix64(uint64_t z);  // SplitMix64's output function of z + golden gamma
Cell Assign(int64_t id, const PartitionOptions& options);

// ids[shard][slice]: each cell's ids, ascending. Every id appears exactly once.
using Partition = std::vector<std::vector<std::vector<int64_t>>>;
Partition PartitionIds(const std::vector<int64_t>& ids, const PartitionOptions& options);

// The training order of shard s through slice r (inclusive): slice 0's ids, then slice 1's,
// ..., each ascending.
std::vector<int64_t> ShardOrder(const Partition& p, int shard, int through_slice);

}  // namespace lethe::sisa
