// lethe compare: how close model A (e.g. a patch) is to model B (e.g. the retrained one).
// Under mpirun (docs/distributed.md) each rank holds its block of the training rows; the
// audit's sums are reduced and the forget set's losses gathered to rank 0, which holds the
// test set and prints (tools/lethe/audit_distributed.h). An ensemble is audited the same way,
// each rank predicting its rows with every constituent, and rank 0 summing the rows' losses
// in the one-process order (tools/lethe/sisa_compare.h): its numbers are one process's.
#include <algorithm>
#include <iostream>

#include "engine/audit.h"
#include "tools/lethe/audit_distributed.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/comparison.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/forgotten_data.h"
#include "tools/lethe/session.h"
#include "tools/lethe/sisa_compare.h"
#include "tools/lethe/sisa_dir.h"

namespace lethe::cli {
namespace {

// A model's audit over every rank's rows (AuditRows); `test` is rank 0's.
ModelAudit AuditOverRanks(const Model& model, const io::Dataset& train,
                          const std::vector<int64_t>& forget_rows, const io::Dataset* test,
                          const CommonOptions& common) {
  if (common.F32()) {
    auto be = kernels::MakeBackend<float>(common.Backend());
    return AuditRows<float>(*be, model.arch, model.theta, train, forget_rows, test,
                            common.batch_size);
  }
  auto be = kernels::MakeBackend<double>(common.Backend());
  return AuditRows<double>(*be, model.arch, model.theta, train, forget_rows, test,
                           common.batch_size);
}

}  // namespace

int RunCompare(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  std::string a_path, b_path, original_path, train_path, test_path;
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&a_path), "model A (e.g. the patched model), or a SISA ensemble DIR")
    ("reference", po::value(&b_path), "model B (e.g. the retrained model), or a SISA ensemble DIR")
    ("original", po::value(&original_path), "the original model (or DIR): distances relative to it")
    ("train", po::value(&train_path), "training data")
    ("test", po::value(&test_path), "test data")
    ("forget", po::value<std::string>(), "forget set (file)")
    ("forget-ids", po::value<std::string>(), "forget set (comma-separated)");
  common.Add(desc);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe compare --model A --reference B --train T --test E [--forget FILE] [--original O] [--json]",
             "lethe compare --model examples/digits/model.safetensors --reference "
             "examples/digits/retrained.safetensors --train examples/digits/train.npz --test "
             "examples/digits/test.npz --forget examples/digits/forget.txt"))
    return 0;
  for (const char* name : {"model", "reference", "train", "test"}) Require(vm, name);
  const bool f32 = common.F32();
  std::vector<std::pair<std::string, std::string>> models = {{"reference", b_path}, {"model", a_path}};
  if (!original_path.empty()) models.push_back({"original", original_path});
  // A model file or an ensemble DIR each (tools/lethe/sisa_compare.h).
  std::vector<Compared> loaded;
  // Under mpirun: each rank its block of the rows.
  const bool by_rows = Distributed();
  for (const auto& [name, path] : models)
    loaded.push_back(Collectively([&] { return LoadCompared(path); }));
  for (const Compared& c : loaded)
    for (const Model& m : c.models)
      if (m.arch.num_params != loaded[0].arch().num_params ||
          m.arch.spec.ToJson() != loaded[0].arch().spec.ToJson())
        Fail(a_path, " and ", b_path, ": the models have different architectures");
  // Examples any of the models has forgotten are not part of the kept data: each model is
  // (approximately) the optimum without them. Without --forget, they are the forget set.
  std::vector<const ForgetHistory*> histories;
  for (const Compared& c : loaded) histories.push_back(&c.forgotten());
  const ForgetHistory forgotten = UnionOfForgotten(histories);
  std::vector<int64_t> forget_ids;
  std::string forget_what;
  if (auto ids = ForgetIds(vm)) {
    forget_ids = *ids;
    forget_what = vm.count("forget") ? vm["forget"].as<std::string>() : "--forget-ids";
  }
  // Under mpirun: this rank's block of the rows (tools/lethe/distributed_cli.h).
  io::Dataset train = by_rows ? LoadRows(train_path, common.Data()) : Collectively([&] {
    return io::LoadDataset(train_path, common.Data());
  });
  bool derived = false;  // the forget set is the forgotten ids found in this rank's rows
  if (!forgotten.ids.empty()) {
    ForgetHistory excluded;  // forgotten, less the forget set the metrics are asked for
    std::vector<int64_t> given = forget_ids;
    std::sort(given.begin(), given.end());
    std::vector<int64_t> rest;
    for (int64_t id : forgotten.ids)
      if (!std::binary_search(given.begin(), given.end(), id)) rest.push_back(id);
    if (forget_ids.empty()) {
      derived = true;
      for (int64_t i = 0; i < train.n; ++i)
        if (forgotten.Contains(train.ids[i])) forget_ids.push_back(train.ids[i]);
    }
    const int64_t found = by_rows ? SumOverRanks(static_cast<int64_t>(forget_ids.size()))
                                  : static_cast<int64_t>(forget_ids.size());
    if (forget_what.empty() && found > 0) {
      forget_what = "the models' forgotten ids";
      std::cerr << "lethe compare: note: no --forget given: the forget set is the "
                << found << " id(s) of " << train_path << " that the models have forgotten\n";
    }
    if (!rest.empty() && !given.empty()) {
      excluded.Add(rest, {});
      train = by_rows ? ExcludeForgottenRows(excluded, std::move(train), "compare",
                                             "a compared model")
                      : ExcludeForgotten(excluded, std::move(train), "compare", "a compared model");
    }
  }
  // The test set: on rank 0 alone under mpirun (the audit's test side is computed there).
  std::optional<io::Dataset> test;
  Collectively([&] {
    if (Comm().rank() == 0 || !by_rows) test = io::LoadDataset(test_path, common.Data());
  });
  Collectively([&] { CheckDataMatchesModel(loaded[0].arch(), train); });
  Collectively([&] {
    if (test) CheckDataMatchesModel(loaded[0].arch(), *test);
  });
  std::vector<int64_t> forget_rows;
  if (derived)  // ids of this rank's own rows
    forget_rows = train.RowsOf(forget_ids, forget_what);
  else if (!forget_ids.empty())  // an id in no rank's rows: the one-process error
    forget_rows = by_rows ? LocalRowsOf(train, forget_ids, forget_what)
                          : train.RowsOf(forget_ids, forget_what);

  (void)f32;
  // Parameter distances only where parameters correspond: between models, or between
  // ensembles of one partition (per constituent); otherwise not applicable, and said so.
  std::string not_applicable;
  for (size_t k = 1; k < loaded.size() && not_applicable.empty(); ++k)
    not_applicable = DistanceNotApplicable(loaded[0], loaded[k]);
  std::vector<ModelRow> rows;
  for (size_t k = 0; k < models.size(); ++k) {
    ModelRow r{models[k].first, not_applicable.empty() ? loaded[k].Theta() : std::vector<double>{},
               {}, -1};
    const io::Dataset* on_test = test ? &*test : nullptr;
    r.audit = loaded[k].manifest
                  ? AuditEnsemble(loaded[k], train, forget_rows,
                                  derived ? std::vector<int64_t>{} : forget_ids, on_test, common)
                  : AuditOverRanks(loaded[k].models.front(), train, forget_rows, on_test, common);
    rows.push_back(std::move(r));
  }
  // Ensembles of one partition: each constituent's distance, model vs reference.
  std::vector<double> per_constituent;
  if (not_applicable.empty() && loaded[0].manifest)
    for (size_t s = 0; s < loaded[0].models.size(); ++s)
      per_constituent.push_back(Distance(loaded[1].models[s].theta, loaded[0].models[s].theta));
  // Table order: original, model, reference.
  std::vector<ModelRow> ordered;
  if (rows.size() == 3) ordered.push_back(rows[2]);
  ordered.push_back(rows[1]);
  ordered.push_back(rows[0]);
  const int reference = static_cast<int>(ordered.size()) - 1, original = rows.size() == 3 ? 0 : -1;
  if (common.json) {
    nlohmann::json j = ComparisonJson(ordered, reference, original);
    if (not_applicable.empty()) {
      j["parameter_distance"] = Distance(rows[1].theta, rows[0].theta);
      if (original >= 0)
        j["relative_parameter_distance"] =
            Distance(rows[1].theta, rows[0].theta) / Distance(rows[2].theta, rows[0].theta);
      if (!per_constituent.empty()) j["constituent_parameter_distance"] = per_constituent;
    } else {
      j["parameter_distance"] = nullptr;
      j["parameter_distance_not_applicable"] = not_applicable;
    }
    for (size_t k = 0; k < models.size(); ++k)
      if (loaded[k].manifest)
        j["ensembles"][models[k].first] = {
            {"path", loaded[k].path}, {"shards", loaded[k].manifest->partition.shards},
            {"aggregate", sisa::Name(loaded[k].manifest->aggregate)},
            {"loss", loaded[k].manifest->aggregate == sisa::Aggregate::kMean
                         ? "-log of the mean predicted probability of the label"
                         : "1 - the fraction of constituents voting for the label"}};
    j["test_agreement"] = PredictionAgreement(rows[1].audit, rows[0].audit);
    std::cout << j.dump(2) << "\n";
  } else {
    PrintComparison(ordered, reference, original);
    if (!not_applicable.empty())
      std::cout << "parameter distance: not applicable (" << not_applicable << ")\n";
    if (!per_constituent.empty()) {
      std::cout << "parameter distance per constituent (model vs reference):";
      for (size_t s = 0; s < per_constituent.size(); ++s)
        std::cout << (s ? ", " : " ") << s << ": " << Sci(per_constituent[s]);
      std::cout << "\n";
    }
    for (size_t k = 0; k < models.size(); ++k)
      if (loaded[k].manifest)
        std::cout << models[k].first << " is a SISA ensemble (" << loaded[k].manifest->partition.shards
                  << " constituents, " << sisa::Name(loaded[k].manifest->aggregate)
                  << "): its loss is "
                  << (loaded[k].manifest->aggregate == sisa::Aggregate::kMean
                          ? "−log of the mean predicted probability of the label"
                          : "1 − the fraction of constituents voting for the label")
                  << ", per example (the membership attack's score too)\n";
    std::cout << "test prediction agreement (model vs reference): "
              << Fixed(100 * PredictionAgreement(rows[1].audit, rows[0].audit), 2) << "%\n";
  }
  return 0;
}

}  // namespace lethe::cli
