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

std::string PatchName(int shard, int generation) {
  return "s" + std::to_string(shard) + "-patch-g" + std::to_string(generation) + ".safetensors";
}

bool Manifest::AnyPatched() const {
  for (const Shard& s : shards)
    if (s.patch) return true;
  return false;
}

std::string Manifest::ToJson() const {
  json j;
  j["format"] = "lethe-sisa/2";
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
                        {"generation", c.generation},
                        {"rows_sha256", c.rows_sha256}});
    json patch = nullptr;
    if (s.patch) {
      json requests = json::array();
      for (const PatchRequest& q : s.patch->requests)
        requests.push_back({{"generation", q.generation}, {"k", q.k},
                            {"ids_sha256", q.ids_sha256}, {"solver", q.solver},
                            {"steps", q.steps},
                            {"kept_grad_norm_before", q.kept_grad_norm_before},
                            {"kept_grad_norm_after", q.kept_grad_norm_after},
                            {"delta_norm", q.delta_norm}, {"seconds", q.seconds},
                            {"summary", q.summary}});
      patch = {{"file", s.patch->file}, {"sha256", s.patch->sha256},
               {"generation", s.patch->generation}, {"ids", s.patch->ids},
               {"requests", requests}};
    }
    shard_list.push_back({{"slices", slices}, {"patch", patch}});
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
  const std::string format = r.String("format");
  if (format != "lethe-sisa/2" && format != "lethe-sisa/1")
    Fail(where, ": format ", Quote(format), " is not lethe-sisa/2 (or the older lethe-sisa/1)");
  Manifest m;
  m.version = format == "lethe-sisa/1" ? 1 : 2;
  const bool v2 = m.version == 2;
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
    Reader sr(shards[s], sw, v2 ? std::initializer_list<const char*>{"slices", "patch"}
                                : std::initializer_list<const char*>{"slices"});
    const json& slices = sr.Array("slices");
    if (static_cast<int64_t>(slices.size()) != m.partition.slices)
      Fail(sw, ": ", slices.size(), " slices listed, partition says ", m.partition.slices);
    Shard shard;
    for (int k = 0; k < m.partition.slices; ++k) {
      const std::string cw = sw + " slice " + std::to_string(k);
      Reader c(slices[k], cw,
               v2 ? std::initializer_list<const char*>{"ids", "file", "sha256", "seconds",
                                                       "trained_on", "generation", "rows_sha256"}
                  : std::initializer_list<const char*>{"ids", "file", "sha256", "seconds",
                                                       "trained_on", "generation"});
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
      if (v2) {
        cp.rows_sha256 = c.String("rows_sha256");
        if (!IsSha256Hex(cp.rows_sha256)) Fail(cw, ": rows_sha256 is not a SHA-256 hex digest");
      }
      shard.slices.push_back(std::move(cp));
    }
    if (v2 && !sr.at("patch").is_null()) {
      const std::string pw = sw + " patch";
      Reader pr(sr.at("patch"), pw, {"file", "sha256", "generation", "ids", "requests"});
      Patch patch;
      patch.generation = static_cast<int>(pr.Int("generation", 1, m.generation));
      patch.file = pr.String("file");
      if (patch.file != PatchName(s, patch.generation))
        Fail(pw, ": file ", Quote(patch.file), " is not ", PatchName(s, patch.generation));
      if (!files.insert(patch.file).second) Fail(pw, ": file named twice");
      patch.sha256 = pr.String("sha256");
      if (!IsSha256Hex(patch.sha256)) Fail(pw, ": sha256 is not a SHA-256 hex digest");
      for (const json& id : pr.Array("ids")) {
        if (!id.is_number_integer() || (id.is_number_unsigned() && id.get<uint64_t>() > INT64_MAX))
          Fail(pw, ": ids: expected 64-bit integers");
        const int64_t v = id.get<int64_t>();
        if (!patch.ids.empty() && v <= patch.ids.back()) Fail(pw, ": ids not ascending at ", v);
        if (Assign(v, m.partition).shard != s)
          Fail(pw, ": id ", v, " does not belong to this shard under the partition");
        patch.ids.push_back(v);
      }
      if (patch.ids.empty()) Fail(pw, ": ids: a patch removes at least one id");
      for (const json& q : pr.Array("requests")) {
        Reader qr(q, pw + " request",
                  {"generation", "k", "ids_sha256", "solver", "steps", "kept_grad_norm_before",
                   "kept_grad_norm_after", "delta_norm", "seconds", "summary"});
        PatchRequest req;
        req.generation = static_cast<int>(qr.Int("generation", 1, m.generation));
        req.k = qr.Int("k", 1, int64_t{1} << 40);
        req.ids_sha256 = qr.String("ids_sha256");
        req.solver = qr.String("solver");
        req.steps = static_cast<int>(qr.Int("steps", 0, 1 << 30));
        req.kept_grad_norm_before = qr.Number("kept_grad_norm_before");
        req.kept_grad_norm_after = qr.Number("kept_grad_norm_after");
        req.delta_norm = qr.Number("delta_norm");
        req.seconds = qr.Number("seconds");
        req.summary = qr.String("summary");
        patch.requests.push_back(std::move(req));
      }
      if (patch.requests.empty()) Fail(pw, ": requests: a patch has at least one");
      shard.patch = std::move(patch);
    }
    m.shards.push_back(std::move(shard));
  }
  m.forgotten = ForgetHistory::Parse(r.at("forgotten").dump(), where + ": forgotten");
  for (int64_t id : m.forgotten.ids)
    if (seen.count(id)) Fail(where, ": id ", id, " is both forgotten and in a shard");
  for (int s = 0; s < m.partition.shards; ++s)
    if (m.shards[s].patch)
      for (int64_t id : m.shards[s].patch->ids)
        if (!m.forgotten.Contains(id))
          Fail(where, ": shard ", s, " patch: id ", id, " is not among the forgotten ids");
  if (static_cast<int64_t>(seen.size() + m.forgotten.ids.size()) != m.data_n)
    Fail(where, ": ", seen.size(), " ids in shards and ", m.forgotten.ids.size(),
         " forgotten, but the data has ", m.data_n);
  return m;
}

}  // namespace lethe::sisa
