// SISA's pieces that need no training: the partition (stable under deletion, every id in
// exactly one cell, balanced in distribution), the manifest's round trip and strictness,
// the epoch schedule, and the aggregation rules against hand-computed examples.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "common/error.h"
#include "engine/sisa/aggregate.h"
#include "engine/sisa/manifest.h"
#include "engine/sisa/partition.h"

namespace lethe::sisa {
namespace {

std::map<int64_t, Cell> CellsOf(const Partition& p) {
  std::map<int64_t, Cell> cells;
  for (int s = 0; s < static_cast<int>(p.size()); ++s)
    for (int r = 0; r < static_cast<int>(p[s].size()); ++r)
      for (int64_t id : p[s][r]) {
        EXPECT_TRUE(cells.emplace(id, Cell{s, r}).second) << "id " << id << " in two cells";
      }
  return cells;
}

TEST(SisaPartition, EveryIdInExactlyOneCellAscending) {
  std::mt19937_64 rng(7);
  std::vector<int64_t> ids;
  std::set<int64_t> unique;
  while (ids.size() < 5000) {
    const int64_t id = static_cast<int64_t>(rng()) >> (rng() % 60);  // negative ids too
    if (unique.insert(id).second) ids.push_back(id);
  }
  const PartitionOptions o{7, 3, 99};
  const Partition p = PartitionIds(ids, o);
  ASSERT_EQ(p.size(), 7u);
  const auto cells = CellsOf(p);
  EXPECT_EQ(cells.size(), ids.size());
  for (int64_t id : ids) {
    ASSERT_TRUE(cells.count(id));
    EXPECT_EQ(cells.at(id), Assign(id, o));
  }
  for (const auto& shard : p) {
    ASSERT_EQ(shard.size(), 3u);
    for (const auto& slice : shard) EXPECT_TRUE(std::is_sorted(slice.begin(), slice.end()));
  }
  // The training order of a shard: slice 0's ids, then slice 1's, each ascending.
  std::vector<int64_t> order = ShardOrder(p, 2, 1);
  std::vector<int64_t> expect = p[2][0];
  expect.insert(expect.end(), p[2][1].begin(), p[2][1].end());
  EXPECT_EQ(order, expect);
}

// The property SISA's exactness rests on: removing any ids moves no other id, so the
// partition of the kept ids is the old partition with the removed ids taken out.
TEST(SisaPartition, StableUnderRandomDeletions) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 400);
    const PartitionOptions o{1 + static_cast<int>(rng() % 12), 1 + static_cast<int>(rng() % 5), rng()};
    std::vector<int64_t> ids(n);
    std::iota(ids.begin(), ids.end(), static_cast<int64_t>(rng() % 1000) - 500);
    std::shuffle(ids.begin(), ids.end(), rng);
    const Partition before = PartitionIds(ids, o);
    // Delete a random subset (sometimes one id, sometimes most of them), in random order.
    const int k = trial % 3 == 0 ? 1 : static_cast<int>(rng() % n);
    std::vector<int64_t> kept(ids.begin() + k, ids.end());
    const std::set<int64_t> removed(ids.begin(), ids.begin() + k);
    std::shuffle(kept.begin(), kept.end(), rng);  // the input order does not matter either
    const Partition after = PartitionIds(kept, o);
    for (int s = 0; s < o.shards; ++s)
      for (int r = 0; r < o.slices; ++r) {
        std::vector<int64_t> expect;
        for (int64_t id : before[s][r])
          if (!removed.count(id)) expect.push_back(id);
        ASSERT_EQ(after[s][r], expect) << "trial " << trial << " shard " << s << " slice " << r;
      }
  }
}

TEST(SisaPartition, BalancedInDistributionAndKeyedBySeed) {
  // n = 40,000 into 40 cells: each count is Binomial(n, 1/40), mean 1000, sd 30.9; a
  // cell off by more than 6 sd (185) would mean a biased hash (chance ~1e-8 per cell).
  std::vector<int64_t> ids(40000);
  std::iota(ids.begin(), ids.end(), 0);
  const Partition p = PartitionIds(ids, {10, 4, 0});
  double chi2 = 0;
  for (const auto& shard : p)
    for (const auto& slice : shard) {
      const double c = static_cast<double>(slice.size());
      EXPECT_NEAR(c, 1000, 185);
      chi2 += (c - 1000) * (c - 1000) / 1000;
    }
  // χ² with 39 degrees of freedom: P(χ² > 80) ≈ 1e-4.
  EXPECT_LT(chi2, 80);
  // Contiguous ids do not fall into contiguous shards (data sorted by class would then
  // give each shard one class): consecutive ids agree on their shard about 1/10 of the time.
  int same = 0;
  for (int64_t id = 0; id + 1 < 40000; ++id)
    same += Assign(id, {10, 4, 0}).shard == Assign(id + 1, {10, 4, 0}).shard;
  EXPECT_NEAR(same / 39999.0, 0.1, 0.01);
  // Another seed, another partition (about 1/40 of ids keep their cell by chance).
  int kept = 0;
  for (int64_t id : ids) kept += Assign(id, {10, 4, 0}) == Assign(id, {10, 4, 1});
  EXPECT_NEAR(kept / 40000.0, 1 / 40.0, 0.005);
  // The formula itself, pinned: a change would silently re-partition every manifest.
  EXPECT_EQ(Mix64(0), 0xe220a8397b1dcdafULL);  // SplitMix64's first output from state 0
}

TEST(SisaPartition, RefusesBadCounts) {
  EXPECT_THROW(PartitionIds({1, 2}, {0, 1, 0}), Error);
  EXPECT_THROW(PartitionIds({1, 2}, {1, 0, 0}), Error);
  EXPECT_THROW(PartitionIds({1, 2}, {4097, 1, 0}), Error);
}

TEST(SisaSchedule, EpochsPerSliceCostsAboutAnUnslicedShard) {
  EXPECT_EQ(EpochsPerSlice(100, 1), 100);
  EXPECT_EQ(EpochsPerSlice(100, 4), 40);  // 40 · (1+2+3+4)/4 = 100 passes over the shard
  EXPECT_EQ(EpochsPerSlice(10, 3), 5);
  EXPECT_EQ(EpochsPerSlice(1, 20), 1);  // at least one
  EXPECT_EQ(EpochsPerSlice(0, 4), 0);
}

TEST(SisaAggregate, VoteAgainstHandComputedExample) {
  // 3 constituents, 3 examples, 3 classes (outputs are logits).
  // example 0: labels 2, 2, 0 → 2.   example 1: 0, 1, 2 → tie of three → 0 (lowest).
  // example 2: 1, 2, 2 with constituent 0's logits tied between 1 and 2 → first max 1;
  //            votes 1:1, 2:2 → 2.
  const std::vector<std::vector<double>> out = {
      {0, 1, 5, /**/ 9, 1, 1, /**/ 0, 3, 3},
      {1, 0, 2, /**/ 0, 4, 1, /**/ 0, 1, 2},
      {7, 0, 2, /**/ 0, 1, 6, /**/ -1, 0, 4}};
  const EnsemblePrediction p = Predict(Aggregate::kVote, LossKind::kCrossEntropy, out, 3, 3);
  EXPECT_EQ(p.label, (std::vector<int64_t>{2, 0, 2}));
  EXPECT_TRUE(p.probability.empty());
  // Two constituents disagreeing: 1 vote each → the lower label.
  const EnsemblePrediction q =
      Predict(Aggregate::kVote, LossKind::kCrossEntropy, {{0, 0, 1}, {0, 1, 0}}, 1, 3);
  EXPECT_EQ(q.label, (std::vector<int64_t>{1}));
}

TEST(SisaAggregate, MeanAgainstHandComputedExample) {
  // Two constituents, two classes, logits chosen so that softmax is exact to write down:
  // constituent A: [0, ln 3] → p = [1/4, 3/4]; B: [ln 4, 0] → p = [4/5, 1/5].
  // Mean [(1/4+4/5)/2, (3/4+1/5)/2] = [0.525, 0.475] → label 0.
  const double l3 = std::log(3.0), l4 = std::log(4.0);
  const EnsemblePrediction p =
      Predict(Aggregate::kMean, LossKind::kCrossEntropy, {{0, l3}, {l4, 0}}, 1, 2);
  EXPECT_EQ(p.label, (std::vector<int64_t>{0}));
  ASSERT_EQ(p.probability.size(), 2u);
  EXPECT_NEAR(p.probability[0], 0.525, 1e-15);
  EXPECT_NEAR(p.probability[1], 0.475, 1e-15);
  // Mean and vote differ: A says 1 with 0.9, B and C say 0 with 0.55 each.
  // vote → 0 (2 of 3); mean p₁ = (0.9 + 0.45 + 0.45)/3 = 0.6 → 1.
  const double a = std::log(0.9 / 0.1), b = std::log(0.45 / 0.55);
  const std::vector<std::vector<double>> out = {{0, a}, {0, b}, {0, b}};
  EXPECT_EQ(Predict(Aggregate::kVote, LossKind::kCrossEntropy, out, 1, 2).label[0], 0);
  const EnsemblePrediction m = Predict(Aggregate::kMean, LossKind::kCrossEntropy, out, 1, 2);
  EXPECT_EQ(m.label[0], 1);
  EXPECT_NEAR(m.probability[1], 0.6, 1e-15);
  // An exact tie of means goes to the lowest label.
  EXPECT_EQ(Predict(Aggregate::kMean, LossKind::kCrossEntropy, {{0, 0}}, 1, 2).label[0], 0);
}

TEST(SisaAggregate, LogisticLabelsAndProbabilities) {
  // σ(ln 3) = 3/4, σ(−ln 3) = 1/4; constituents f = ln 3, −ln 3, −ln 3 → vote 0;
  // mean p = (3/4 + 1/4 + 1/4)/3 = 5/12 < ½ → 0. f = 0 exactly: p = ½, label 0 (f > 0 ⇔ 1).
  const double l3 = std::log(3.0);
  const std::vector<std::vector<double>> out = {{l3, 0}, {-l3, 0}, {-l3, 0}};
  EXPECT_EQ(Predict(Aggregate::kVote, LossKind::kLogistic, out, 2, 1).label,
            (std::vector<int64_t>{0, 0}));
  const EnsemblePrediction m = Predict(Aggregate::kMean, LossKind::kLogistic, out, 2, 1);
  EXPECT_EQ(m.label, (std::vector<int64_t>{0, 0}));
  EXPECT_NEAR(m.probability[1], 5.0 / 12, 1e-15);
  EXPECT_NEAR(m.probability[3], 0.5, 0);
  EXPECT_EQ(Predict(Aggregate::kVote, LossKind::kLogistic, {{l3}, {l3}, {-l3}}, 1, 1).label[0], 1);
  EXPECT_THROW(NumLabels(LossKind::kMse, 1), Error);
}

Manifest SmallManifest() {
  Manifest m;
  m.partition = {2, 2, 5};
  m.spec_json = R"({"format":"lethe/1","layers":[],"loss":"cross_entropy","l2":0})";
  m.data_path = "/data/train.npz";
  m.data_sha256 = std::string(64, 'a');
  m.created = "2026-11-30T00:00:00Z";
  std::vector<int64_t> ids = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const Partition p = PartitionIds(ids, m.partition);
  m.data_n = 10;
  m.shards.resize(2);
  for (int s = 0; s < 2; ++s)
    for (int r = 0; r < 2; ++r)
      m.shards[s].slices.push_back(
          {p[s][r], CheckpointName(s, r, 0), std::string(64, 'b'), 0.25, 3, 0,
           std::string(64, 'c')});
  return m;
}

TEST(SisaManifest, RoundTripsAndIsStrict) {
  const Manifest m = SmallManifest();
  const std::string text = m.ToJson();
  const Manifest back = Manifest::Parse(text, "manifest.json");
  EXPECT_EQ(back.ToJson(), text);
  EXPECT_EQ(back.shards[1].slices[1].ids, m.shards[1].slices[1].ids);
  EXPECT_EQ(back.partition.seed, 5u);
  // An id moved to another cell, a wrong file name, an unknown key, a missing id: refused.
  auto refuse = [&](const std::string& from, const std::string& to) {
    std::string bad = text;
    const size_t at = bad.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    bad.replace(at, from.size(), to);
    EXPECT_THROW(Manifest::Parse(bad, "manifest.json"), Error) << from << " → " << to;
  };
  refuse("\"s0-r0-g0.safetensors\"", "\"../x.safetensors\"");
  refuse("\"generation\": 0,\n \"partition\"", "\"generation\": 0, \"extra\": 1,\n \"partition\"");
  refuse("\"seed\": 5", "\"seed\": 6");                // every id now in the wrong cell
  refuse("\"n\": 10", "\"n\": 11");                    // an id unaccounted for
  refuse("\"aggregate\": \"vote\"", "\"aggregate\": \"max\"");
  refuse("\"rows_sha256\": \"cccc", "\"rows_sha256\": \"xccc");
}

// A Newton-patched shard round-trips; its ids must be forgotten ids of that shard, its file
// the patch name of its generation. A lethe-sisa/1 manifest (no rows_sha256, no patch) is read.
TEST(SisaManifest, PatchesAndTheOlderFormat) {
  Manifest m = SmallManifest();
  const int64_t id = m.shards[1].slices[0].ids.empty() ? m.shards[1].slices[1].ids.front()
                                                       : m.shards[1].slices[0].ids.front();
  for (Checkpoint& c : m.shards[1].slices) c.ids.erase(std::remove(c.ids.begin(), c.ids.end(), id), c.ids.end());
  m.generation = 1;
  m.forgotten.Add({id}, {"newton", std::string(64, 'd'), std::string(64, 'e'), 1, "2026-11-30T00:00:01Z"});
  m.shards[1].patch = Patch{PatchName(1, 1), std::string(64, 'f'), 1, {id},
                            {{1, 1, std::string(64, 'e'), "cg", 1, 1e-3, 1e-6, 0.1, 0.01, "ok"}}};
  const std::string text = m.ToJson();
  const Manifest back = Manifest::Parse(text, "manifest.json");
  EXPECT_EQ(back.ToJson(), text);
  ASSERT_TRUE(back.shards[1].patch.has_value());
  EXPECT_EQ(back.ConstituentFile(1), "s1-patch-g1.safetensors");
  EXPECT_EQ(back.ConstituentFile(0), back.shards[0].slices.back().file);
  EXPECT_TRUE(back.AnyPatched());
  auto refuse = [&](const std::string& from, const std::string& to) {
    std::string bad = text;
    const size_t at = bad.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    bad.replace(at, from.size(), to);
    EXPECT_THROW(Manifest::Parse(bad, "manifest.json"), Error) << from << " → " << to;
  };
  refuse("\"s1-patch-g1.safetensors\"", "\"s0-patch-g1.safetensors\"");
  refuse("\"requests\": [", "\"requests\": [], \"x\": [");
  // The older format: the same manifest without the new keys.
  nlohmann::json j = nlohmann::json::parse(SmallManifest().ToJson());
  j["format"] = "lethe-sisa/1";
  for (auto& shard : j["shards"]) {
    shard.erase("patch");
    for (auto& c : shard["slices"]) c.erase("rows_sha256");
  }
  const Manifest old = Manifest::Parse(j.dump(), "manifest.json");
  EXPECT_EQ(old.version, 1);
  EXPECT_TRUE(old.shards[0].slices[0].rows_sha256.empty());
  j["format"] = "lethe-sisa/2";  // /2 requires them
  EXPECT_THROW(Manifest::Parse(j.dump(), "manifest.json"), Error);
}

}  // namespace
}  // namespace lethe::sisa
