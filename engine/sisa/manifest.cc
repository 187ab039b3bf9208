#include "engine/sisa/manifest.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "common/error.h"
#include "common/quote.h"
#include "io/untrusted_json.h"

namespace lethe::sisa {

using nlohmann::json;

const char* Name(Aggregate a) { return a == Aggregate::kVote ? "vote" : "mean"; }

Aggregate ParseAggregate(const std::string& name) {
  if (name == "vote") return Aggregate::kVote;
  if (name == "mean") return Aggregate::kMean;
  Fail("--aggregate ", Quote(name), ": unknown (known: vote, mean)");
}

int64_t Shard::size() const {
  int64_t n = 0;
  for (const Checkpoint& c : slices) n += static_cast<int64_t>(c.ids.size());
  return n;
}

int EpochsPerSlice(int epochs, int slices) {
  if (epochs <= 0) return 0;
  return std::max(1, static_cast<int>(std::lround(2.0 * epochs / (slices + 1))));
}

std::string CheckpointName(int shard, int slice, int generation) {
  return "s" + std::to_string(shard) + "-r" + std::to_string(slice) + "-g" +
         std::to_string(generation) + ".safetensors";
}

std::string Manifest::ToJson() const {
  json j;
  j["format"] = "lethe-sisa/1";
  j["generation"] = generation;
  j["created"] = created;
  j["partition"] = {{"scheme", kPartitionScheme},
                    {"shards", partition.shards},
                    {"slices", partition.slices},
                    {"seed", partition.seed}};
  j["aggregate"] = Name(aggregate);
  j["training"] = {{"optimizer", lethe::Name(train.optimizer)},
                   {"tolerance", train.gradient_tolerance},
                   {"max_iterations", train.max_iterations},
                   {"lbfgs_memory", train.lbfgs_memory},
                   {"polish", train.polish},
                   {"max_cg_iterations", train.max_cg_iterations},
                   {"learning_rate", train.learning_rate},
                   {"batch_size", train.batch_size},
                   {"epochs", train.epochs},
                   {"epochs_per_slice", epochs_per_slice},
                   {"dtype", dtype},
                   {"device", device},
                   {"objective_batch", objective_batch}};
  j["spec"] = spec_json;
  j["data"] = {{"path", data_path}, {"sha256", data_sha256}, {"n", data_n}};
  json shard_list = json::array();
  for (const Shard& s : shards) {
    json slices = json::array();
    for (const Checkpoint& c : s.slices)
      slices.push_back({{"ids", c.ids},
                        {"file", c.file},
                        {"sha256", c.sha256},
                        {"seconds", c.seconds},
                        {"trained_on", c.trained_on},
                        {"generation", c.generation}});
    shard_list.push_back({{"slices", slices}});
  }
  j["shards"] = shard_list;
  j["forgotten"] = json::parse(forgotten.ToJson());
  return j.dump(1) + "\n";
}

namespace {

// Strict access to an untrusted object: exactly these keys, each of the asked type.
struct Reader {
  const json& j;
  std::string where;
  Reader(const json& value, std::string w, std::initializer_list<const char*> keys)
      : j(value), where(std::move(w)) {
    if (!j.is_object()) Fail(where, ": expected an object, found ", io::JsonKind(j));
    for (auto it = j.begin(); it != j.end(); ++it)
      if (std::find_if(keys.begin(), keys.end(), [&](const char* k) { return it.key() == k; }) ==
          keys.end())
        Fail(where, ": unknown key ", Quote(it.key()));
    for (const char* k : keys)
      if (!j.contains(k)) Fail(where, ": missing key ", Quote(k));
  }
  const json& at(const char* k) const { return j.at(k); }
  std::string String(const char* k) const {
    if (!at(k).is_string()) Fail(where, ".", k, ": expected a string");
    return at(k).get<std::string>();
  }
  int64_t Int(const char* k, int64_t lo, int64_t hi) const {
    const json& v = at(k);
    if (!v.is_number_integer()) Fail(where, ".", k, ": expected an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
      Fail(where, ".", k, ": out of range");
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) Fail(where, ".", k, " = ", x, ": out of range [", lo, ", ", hi, "]");
    return x;
  }
  uint64_t Uint(const char* k) const {
    if (!at(k).is_number_unsigned()) Fail(where, ".", k, ": expected an unsigned integer");
    return at(k).get<uint64_t>();
  }
  double Number(const char* k) const {
    if (!at(k).is_number()) Fail(where, ".", k, ": expected a number");
    const double x = at(k).get<double>();
    if (!std::isfinite(x)) Fail(where, ".", k, ": not finite");
    return x;
  }
  bool Bool(const char* k) const {
    if (!at(k).is_boolean()) Fail(where, ".", k, ": expected true or false");
    return at(k).get<bool>();
  }
  const json& Array(const char* k) const {
    if (!at(k).is_array()) Fail(where, ".", k, ": expected an array");
    return at(k);
  }
};

bool IsSha256Hex(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

Manifest Manifest::Parse(const std::string& text, const std::string& where) {
  const json root = io::ParseUntrustedJson(text, where, "");
  Reader r(root, where,
           {"format", "generation", "created", "partition", "aggregate", "training", "spec",
            "data", "shards", "forgotten"});
  if (r.String("format") != "lethe-sisa/1")
    Fail(where, ": format ", Quote(r.String("format")), " is not lethe-sisa/1");
  Manifest m;
  m.generation = static_cast<int>(r.Int("generation", 0, 1 << 30));
  m.created = r.String("created");
  {
    Reader p(r.at("partition"), where + ": partition", {"scheme", "shards", "slices", "seed"});
    if (p.String("scheme") != kPartitionScheme)
      Fail(where, ": partition scheme ", Quote(p.String("scheme")), " is not ", kPartitionScheme);
    m.partition.shards = static_cast<int>(p.Int("shards", 1, 4096));
    m.partition.slices = static_cast<int>(p.Int("slices", 1, 4096));
    m.partition.seed = p.Uint("seed");
  }
  const std::string aggregate = r.String("aggregate");
  if (aggregate != "vote" && aggregate != "mean")
    Fail(where, ": aggregate ", Quote(aggregate), ": unknown (known: vote, mean)");
  m.aggregate = ParseAggregate(aggregate);
  {
    Reader t(r.at("training"), where + ": training",
             {"optimizer", "tolerance", "max_iterations", "lbfgs_memory", "polish",
              "max_cg_iterations", "learning_rate", "batch_size", "epochs", "epochs_per_slice",
              "dtype", "device", "objective_batch"});
    const std::string optimizer = t.String("optimizer");
    if (optimizer != "lbfgs" && optimizer != "newton-cg" && optimizer != "adam")
      Fail(where, ": training.optimizer ", Quote(optimizer), ": unknown (known: lbfgs, newton-cg, adam)");
    m.train.optimizer = ParseOptimizer(optimizer);
    m.train.gradient_tolerance = t.Number("tolerance");
    m.train.max_iterations = static_cast<int>(t.Int("max_iterations", 0, 1 << 30));
    m.train.lbfgs_memory = static_cast<int>(t.Int("lbfgs_memory", 1, 1 << 20));
    m.train.polish = t.Bool("polish");
    m.train.max_cg_iterations = static_cast<int>(t.Int("max_cg_iterations", 1, 1 << 30));
    m.train.learning_rate = t.Number("learning_rate");
    m.train.batch_size = t.Int("batch_size", 1, int64_t{1} << 40);
    m.train.epochs = static_cast<int>(t.Int("epochs", 0, 1 << 30));
    m.epochs_per_slice = static_cast<int>(t.Int("epochs_per_slice", 0, 1 << 30));
    m.dtype = t.String("dtype");
    if (m.dtype != "f64" && m.dtype != "f32") Fail(where, ": training.dtype must be f64 or f32");
    m.device = t.String("device");
    if (m.device != "cpu" && m.device != "cuda") Fail(where, ": training.device must be cpu or cuda");
    m.objective_batch = t.Int("objective_batch", 1, int64_t{1} << 40);
    m.train.seed = m.partition.seed;
    try {
      m.train.Validate();
    } catch (const Error& e) {
      Fail(where, ": training: ", e.what());
    }
  }
  m.spec_json = r.String("spec");
  {
    Reader d(r.at("data"), where + ": data", {"path", "sha256", "n"});
    m.data_path = d.String("path");
    m.data_sha256 = d.String("sha256");
    if (!IsSha256Hex(m.data_sha256)) Fail(where, ": data.sha256 is not a SHA-256 hex digest");
    m.data_n = d.Int("n", 1, int64_t{1} << 40);
  }
  const json& shards = r.Array("shards");
  if (static_cast<int64_t>(shards.size()) != m.partition.shards)
    Fail(where, ": ", shards.size(), " shards listed, partition says ", m.partition.shards);
  std::unordered_set<int64_t> seen;
  std::unordered_set<std::string> files;
  for (int s = 0; s < m.partition.shards; ++s) {
    const std::string sw = where + ": shard " + std::to_string(s);
    Reader sr(shards[s], sw, {"slices"});
    const json& slices = sr.Array("slices");
    if (static_cast<int64_t>(slices.size()) != m.partition.slices)
      Fail(sw, ": ", slices.size(), " slices listed, partition says ", m.partition.slices);
    Shard shard;
    for (int k = 0; k < m.partition.slices; ++k) {
      const std::string cw = sw + " slice " + std::to_string(k);
      Reader c(slices[k], cw, {"ids", "file", "sha256", "seconds", "trained_on", "generation"});
      Checkpoint cp;
      for (const json& id : c.Array("ids")) {
        if (!id.is_number_integer() || (id.is_number_unsigned() && id.get<uint64_t>() > INT64_MAX))
          Fail(cw, ": ids: expected 64-bit integers");
        const int64_t v = id.get<int64_t>();
        if (!cp.ids.empty() && v <= cp.ids.back()) Fail(cw, ": ids not ascending at ", v);
        if (!seen.insert(v).second) Fail(cw, ": id ", v, " is in two cells");
        if (!(Assign(v, m.partition) == Cell{s, k}))
          Fail(cw, ": id ", v, " does not belong to this cell under the partition");
        cp.ids.push_back(v);
      }
      cp.file = c.String("file");
      cp.sha256 = c.String("sha256");
      if (!IsSha256Hex(cp.sha256)) Fail(cw, ": sha256 is not a SHA-256 hex digest");
      cp.seconds = c.Number("seconds");
      cp.trained_on = c.Int("trained_on", 0, int64_t{1} << 40);
      cp.generation = static_cast<int>(c.Int("generation", 0, m.generation));
      if (cp.file != CheckpointName(s, k, cp.generation))
        Fail(cw, ": file ", Quote(cp.file), " is not ", CheckpointName(s, k, cp.generation));
      if (!files.insert(cp.file).second) Fail(cw, ": file named twice");
      shard.slices.push_back(std::move(cp));
    }
    m.shards.push_back(std::move(shard));
  }
  m.forgotten = ForgetHistory::Parse(r.at("forgotten").dump(), where + ": forgotten");
  for (int64_t id : m.forgotten.ids)
    if (seen.count(id)) Fail(where, ": id ", id, " is both forgotten and in a shard");
  if (static_cast<int64_t>(seen.size() + m.forgotten.ids.size()) != m.data_n)
    Fail(where, ": ", seen.size(), " ids in shards and ", m.forgotten.ids.size(),
         " forgotten, but the data has ", m.data_n);
  return m;
}

}  // namespace lethe::sisa
