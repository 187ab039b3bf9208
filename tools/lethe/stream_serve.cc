#include "tools/lethe/stream_serve.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include "common/error.h"
#include "common/quote.h"
#include "engine/dense_curvature.h"
#include "engine/dense_preconditioner.h"
#include "engine/kept_data.h"
#include "engine/unlearn.h"
#include "io/atomic_file.h"
#include "io/ledger.h"
#include "io/sha256.h"
#include "tools/lethe/audit_distributed.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/dense_cache.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/erasure_record.h"
#include "tools/lethe/forgotten_data.h"
#include "tools/lethe/session.h"
#include "tools/lethe/stream.h"
#include "tools/lethe/stream_serve_ranks.h"

namespace lethe::cli {

bool WantsServeRequests(const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(), [](const std::string& a) {
    return a == "--requests" || a.rfind("--requests=", 0) == 0;
  });
}

namespace {

struct ServeInputs {
  std::string model_path, train_path, ledger, requests_path, spec_path;
  // A reused dense preconditioner whose solve took more iterations than this has drifted
  // from the current curvature: it is rebuilt at the next request.
  int refresh_iterations = 10;
  // ... and one that has served this many requests (tools/lethe/dense_cache.h).
  int64_t max_age = 1000;
  bool cache = false;  // --cache: read and write MODEL.lethe-dense (dense_cache.h)
};

struct Request {
  int64_t line = 0;
  std::vector<int64_t> ids;
  std::string out;
};

// CPU time of this process so far (user + system, all threads), in seconds: a request's
// cost on a machine shared with other work, where wall time moves with the load.
double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The next request of `in`: lines `IDS OUT`, blank lines and lines starting with '#'
// skipped. false at the end. Every line must end with a newline: a last line without one
// may be a request cut short (ids "17,2" of "17,23"), so it is refused, not guessed at.
bool NextRequest(std::istream& in, const std::string& file, int64_t* line_no, Request* r) {
  std::string line;
  while (std::getline(in, line)) {
    ++*line_no;
    const bool complete = !in.eof();  // getline stopped at a '\n', not at the end
    const std::string where = file + ":" + std::to_string(*line_no);
    std::vector<std::string> fields;
    size_t pos = 0;
    while (true) {
      pos = line.find_first_not_of(" \t\r", pos);
      if (pos == std::string::npos) break;
      const size_t end = std::min(line.find_first_of(" \t\r", pos), line.size());
      fields.push_back(line.substr(pos, end - pos));
      pos = end;
    }
    if (fields.empty() || fields[0][0] == '#') continue;
    if (!complete)
      Fail(where, ": the last line has no newline (a request cut short?): not served");
    if (fields.size() != 2)
      Fail(where, ": expected `IDS OUT` (ids comma-separated, then the patched model's path), "
           "got ", fields.size(), " field(s): ", Quote(line));
    r->ids = io::ParseIdList(fields[0], where);
    r->out = fields[1];
    r->line = *line_no;
    return true;
  }
  if (in.bad()) Fail(file, ": cannot read");
  return false;
}

nlohmann::json FileRef(const std::string& path, const std::string& sha256) {
  return {{"path", path}, {"sha256", sha256}};
}

// The kept rows of a request on `backend`: the rows not `gone` before it, uploaded into
// `data` at the first request, less this request's `forget_rows` (kept_rows: what remains).
template <typename U>
DeviceData<U> KeptRows(std::unique_ptr<KeptData<U>>& data, kernels::Backend<U>& backend,
                       const io::Dataset& train, const std::vector<char>& gone,
                       const std::vector<int64_t>& forget_rows,
                       const std::vector<int64_t>& kept_rows) {
  if (!data) {
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < train.n; ++i)
      if (!gone[i]) rows.push_back(i);
    data = std::make_unique<KeptData<U>>(backend, train, std::move(rows));
  }
  data->Erase(forget_rows);
  LETHE_CHECK(data->rows() == kept_rows);
  return data->View();
}

template <typename T>
int Serve(const ServeInputs& in, Model model, const io::Dataset& train,
          const CommonOptions& common, UnlearnOptions options, std::istream& requests) {
  const auto run_start = std::chrono::steady_clock::now();
  // The backends live as long as the run: the dense preconditioner's factor stays on them.
  std::unique_ptr<kernels::Backend<T>> backend = kernels::MakeBackend<T>(common.Backend());
  std::unique_ptr<kernels::Backend<float>> backend_f32;
  if (sizeof(T) > sizeof(float) &&
      (options.solve_precision == SolvePrecision::kF32 ||
       (options.solve_precision == SolvePrecision::kAuto &&
        options.inverse.solver == SolverKind::kCg)))
    backend_f32 = kernels::MakeBackend<float>(common.Backend());
  DensePreconditionerStore store;
  if (ResolvePreconditioner(options.inverse.preconditioner, model.arch) == PreconditionerKind::kDense)
    options.inverse.dense_store = &store;
  StreamOptions stream;
  stream.ledger = in.ledger;
  const std::string solver = Name(options.inverse.solver);
  const ObjectiveOptions oo{common.batch_size};
  Progress progress(common.quiet);

  std::string current_path = in.model_path;
  std::string current_sha256 = io::Sha256File(in.model_path);
  CheckSameFileOnEveryRank(in.model_path, current_sha256);

  // What the next request reuses (dense_cache.h): the kept gradient at the current θ (from
  // the previous request's line search, or the input model's cache), and the factor files
  // behind the store's preconditioners. The carried gradient is at the θ the model file
  // holds only when the file holds θ exactly (f64, or f32 with compute in f32).
  const bool exact_theta = model.dtype == io::DType::kF64 ||
                           (model.dtype == io::DType::kF32 && sizeof(T) == sizeof(float));
  KeptGradient carried;
  bool have_carried = false;
  std::vector<DenseFactorRef> factors;  // of the store's current preconditioners
  const DenseCacheFit fit{model.arch.num_params, model.arch.spec.l2, options.inverse.damping,
                          options.inverse.curvature};
  std::string data_sha256;
  auto note = [&](const std::string& text) {
    if (!text.empty()) std::cerr << "lethe unlearn: note: " << text << "\n";
  };
  if (in.cache) {
    // Under mpirun rank 0 hashes the whole file and reads the cache; every rank receives
    // the hash, the carried gradient and each factor's bits (stream_serve_ranks.h).
    data_sha256 = FromRoot([&] { return io::Sha256File(in.train_path); });
    std::string why;
    std::vector<DenseFactorRef> refs;
    if (LoadDenseCacheKeyOnRoot(in.model_path, current_sha256, data_sha256, fit, &carried, &refs,
                                &why)) {
      have_carried = exact_theta && !carried.gradient.empty();
      std::string reused;
      for (const DenseFactorRef& ref : refs) {
        if (ResolvePreconditioner(options.inverse.preconditioner, model.arch) != PreconditionerKind::kDense)
          continue;
        if (ref.age >= in.max_age) {
          note(ref.path + ": has served " + std::to_string(ref.age) + " requests (--dense-max-age " +
               std::to_string(in.max_age) + "): the dense preconditioner is rebuilt");
          continue;
        }
        if (ref.dtype == "f32") {
          kernels::Backend<float>* bf = nullptr;
          if constexpr (sizeof(T) == sizeof(float)) bf = backend.get(); else bf = backend_f32.get();
          if (!bf) continue;
          auto pre = LoadDenseFactorOnRoot<float>(ref, *bf, fit, &why);
          note(why);
          if (!pre) continue;
          store.Adopt<float>(std::move(pre));
        } else {
          if constexpr (sizeof(T) == sizeof(float)) continue; else {
            auto pre = LoadDenseFactorOnRoot<double>(ref, *backend, fit, &why);
            note(why);
            if (!pre) continue;
            store.Adopt<double>(std::move(pre));
          }
        }
        factors.push_back(ref);
        reused += (reused.empty() ? "" : ", ") + ref.dtype + " (" + std::to_string(ref.age) +
                  " request(s) old)";
      }
      note(DenseCacheKeyPath(in.model_path) + ": " +
           (reused.empty() ? std::string("no dense preconditioner reused")
                           : "dense preconditioner reused: " + reused) +
           (have_carried ? "; kept gradient carried" : ""));
    } else {
      note(why);
    }
  }
  // Rows of this rank's block this run has removed (all rows serially).
  std::vector<char> gone(static_cast<size_t>(train.n), 0);
  // The kept rows on the backends, uploaded at the first request and then compacted in place
  // by each request (engine/kept_data.h): the same bits as an upload of kept_rows.
  std::unique_ptr<KeptData<T>> kept_data;
  std::unique_ptr<KeptData<float>> kept_data_f32;
  std::vector<std::string> chain = {in.model_path};          // the models of this run
  std::vector<std::string> inputs = {in.train_path, in.ledger, in.requests_path};
  if (!in.spec_path.empty()) inputs.push_back(in.spec_path);
  int64_t served = 0, line_no = 0;
  Request r;
  // Rank 0 reads the next request (under mpirun standard input reaches rank 0 alone) and
  // sends it to every rank; a malformed line stops every rank with its line.
  auto next = [&]() {
    const std::string got = FromRoot([&] {
      if (!NextRequest(requests, in.requests_path, &line_no, &r)) return std::string();
      return nlohmann::json{{"line", r.line}, {"ids", r.ids}, {"out", r.out}}.dump();
    });
    if (got.empty()) return false;
    const nlohmann::json j = nlohmann::json::parse(got);
    r.line = j["line"].get<int64_t>();
    r.ids = j["ids"].get<std::vector<int64_t>>();
    r.out = j["out"].get<std::string>();
    return true;
  };
  const bool root = Comm().rank() == 0;
  while (next()) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = CpuSeconds();
    const std::string where = in.requests_path + ":" + std::to_string(r.line);
    nlohmann::json record;
    try {
      // What one `lethe unlearn --ledger` process checks before any work; and no model of
      // this run's chain (the ledger records their hashes) is overwritten either.
      // (Rank 0, which writes, checks.)
      std::vector<std::string> these_inputs = inputs;
      these_inputs.insert(these_inputs.end(), chain.begin(), chain.end());
      Collectively([&] {
        if (!root) return;
        io::CheckOutputIsNotAnInput(r.out, these_inputs);
        io::CheckOutputCanBeWritten(r.out);
        io::CheckLedgerHead(in.ledger, current_path, current_sha256);
      });
      Warnings warnings("unlearn");
      std::vector<int64_t> new_ids, already;
      for (int64_t id : r.ids) (model.forgotten.Contains(id) ? already : new_ids).push_back(id);
      if (!already.empty()) {
        std::string list;
        for (size_t i = 0; i < already.size() && i < 10; ++i)
          list += (i ? ", " : "") + std::to_string(already[i]);
        if (already.size() > 10) list += ", …";
        if (new_ids.empty())
          Fail("every id in this request (", list, ") was already forgotten by ", current_path,
               "; nothing to do");
        warnings.Add(where + ": " + std::to_string(already.size()) + " id(s) (" + list +
                     ") were already forgotten by " + current_path + ": skipped");
      }
      // This rank's rows of the request (all of them serially); an id in no rank's rows is
      // the one-process error, on every rank.
      const std::vector<int64_t> forget_rows = LocalRowsOf(train, new_ids, where);
      // The kept rows in data order, as ExcludeForgotten then the forget set leave them in
      // a process of their own: the same objective, summed in the same order (under mpirun
      // each rank's block of it, the blocks in rank order).
      std::vector<char> out_now = gone;
      for (int64_t row : forget_rows) out_now[row] = 1;
      std::vector<int64_t> kept_rows;
      for (int64_t i = 0; i < train.n; ++i)
        if (!out_now[i]) kept_rows.push_back(i);
      const int64_t k_total = SumOverRanks(static_cast<int64_t>(forget_rows.size()));
      const int64_t kept_total = SumOverRanks(static_cast<int64_t>(kept_rows.size()));
      if (kept_total == 0) Fail("forgets every example; nothing would be left");
      // A distributed objective needs a row on every rank (as one request's unlearn).
      Collectively([&] {
        if (kept_rows.empty())
          Fail("forgets every remaining row of process ", Comm().rank(),
               "'s block; run with fewer processes (mpirun -np)");
      });
      if (k_total > kept_total)
        warnings.Add("forgetting more than half of the data; a Newton patch is a local "
                     "approximation, consider retraining");

      Objective<T> kept(*backend, model.arch,
                        KeptRows(kept_data, *backend, train, gone, forget_rows, kept_rows), oo);
      Distribute(kept);
      // (UploadRows: a rank may hold none of the request's rows.)
      Objective<T> forget(*backend, model.arch, UploadRows(*backend, train, forget_rows), oo);
      Distribute(forget);
      std::unique_ptr<Objective<float>> kept_f32;
      if (backend_f32) {
        kept_f32 = std::make_unique<Objective<float>>(
            *backend_f32, model.arch,
            KeptRows(kept_data_f32, *backend_f32, train, gone, forget_rows, kept_rows), oo);
        Distribute(*kept_f32);
      }
      kernels::Matrix<T> theta = backend->Allocate(1, model.arch.num_params);
      {
        const std::vector<T> host(model.theta.begin(), model.theta.end());
        backend->Upload(host.data(), theta);
      }
      UnlearnOptions run = options;
      run.inverse.progress = &progress;
      KeptGradient next;
      run.carried = have_carried ? &carried : nullptr;
      run.export_gradient = &next;
      // The store's preconditioners before the request: one that differs after it was built by it.
      const void* before_f32 = store.Current<float>();
      const void* before_f64 = store.Current<double>();
      Comm().ResetCounters();
      const UnlearnSummary s = lethe::Unlearn(kept, forget, theta, run, kept_f32.get());
      const distributed::Counters counters = Comm().counters();  // the patch's reductions
      if (!(s.input_grad_norm <= kStationarityTolerance))
        warnings.Add(where + ": the model is not at a stationary point of its objective on " +
                     in.train_path + (model.forgotten.ids.empty() ? "" : " without the ids it had forgotten") +
                     " (‖∇L‖ = " + Sci(s.input_grad_norm) + " > " + Sci(kStationarityTolerance, 0) +
                     "): the patch also finishes its training");
      if (!s.ok) Fail("unlearning failed, nothing written: ", s.message);
      if (const std::string off =
              PatchOffOptimumWarning(s.kept_grad_norm_after, s.steps.size(), s.method);
          !off.empty())
        warnings.Add(where + ": " + off);

      // Commit: the patched model (atomically), then its ledger line (fsync'ed; on failure
      // the model is removed), exactly as a process of its own would.
      Model patched = model;
      {
        std::vector<T> host(static_cast<size_t>(model.arch.num_params));
        backend->Download(theta, host.data());
        patched.theta.assign(host.begin(), host.end());
      }
      patched.dp.reset();
      CheckSameOnEveryRank(patched.theta, "the patched θ");
      // The ids removed, sorted: the request's new ids, each found once in some rank's rows.
      std::vector<int64_t> removed = new_ids;
      std::sort(removed.begin(), removed.end());
      patched.forgotten.Add(removed, {s.method, current_sha256, IdsSha256(removed),
                                      static_cast<int64_t>(removed.size()), UtcNow()});
      // Rank 0 writes (every rank holds the same θ) and sends the model's hash; a failure
      // there stops every rank with its line.
      const std::string child_sha256 = FromRoot([&] {
        SaveModel(r.out, patched);
        FinishStream(stream, StreamState{}, current_path, current_sha256, r.out, removed, s.method,
                     solver, patched.forgotten.requests.back().utc, std::nullopt, s.steps);
        return io::Sha256File(r.out);
      });

      // The state the next request starts from. A factor this request built is written once
      // (OUT.lethe-dense-f32); one it reused is a request older. Then, unless it has drifted
      // (too many CG iterations) or served --dense-max-age requests, it stays in the store
      // and the key names it.
      bool drifted = false;
      for (const UnlearnStep& st : s.steps)
        drifted = drifted || (st.solve.preconditioner == "dense (reused)" &&
                              st.solve.iterations > in.refresh_iterations);
      std::vector<DenseFactorRef> now;
      auto track = [&](const char* dtype, const void* before, const void* after, auto* pre) {
        if (!after) return;
        if (after != before) {
          DenseFactorRef ref{dtype, DenseFactorPath(r.out, dtype), "", 0, 1};
          if (in.cache) {
            // Rank 0 writes the factor (every rank holds its bits: dense_preconditioner.cc)
            // and sends its SHA-256, or why it could not, so that every rank keeps the same
            // list of factors (their ages decide when the factor is rebuilt).
            std::string result;
            const bool saved = TryOnRoot([&] {
              ref = SaveDenseFactor(ref.path, pre->Factor());
              return ref.sha256;
            }, &result);
            if (!saved) {
              warnings.Add("the dense factor could not be cached (" + result + ")");
              return;
            }
            ref.sha256 = result;
            ref.bytes = static_cast<int64_t>(model.arch.num_params * model.arch.num_params) *
                        (std::string(dtype) == "f32" ? 4 : 8);
          }
          now.push_back(ref);
          return;
        }
        for (DenseFactorRef ref : factors)
          if (ref.dtype == dtype) {
            ++ref.age;
            now.push_back(ref);
          }
      };
      track("f32", before_f32, store.Current<float>(), store.Current<float>());
      track("f64", before_f64, store.Current<double>(), store.Current<double>());
      factors = now;
      int64_t age = 0;
      for (const DenseFactorRef& ref : factors) age = std::max(age, ref.age);
      const bool expired = age >= in.max_age;
      if (drifted || expired) factors.clear();
      if (in.cache) {
        std::string error;
        if (!TryOnRoot([&] {
              SaveDenseCacheKey(r.out, child_sha256, data_sha256, fit,
                                exact_theta ? &next : nullptr, factors);
              return std::string();
            }, &error))
          warnings.Add("the stream cache could not be written (" + error + ")");
      }

      ++served;
      const double seconds = Since(start);
      record["request"] = served;
      record["source"] = where;
      record["utc"] = patched.forgotten.requests.back().utc;
      record["input_model"] = FileRef(current_path, current_sha256);
      record["patched_model"] = FileRef(r.out, child_sha256);
      record["ledger"] = in.ledger;
      record["previously_forgotten"] = {{"ids", static_cast<int64_t>(model.forgotten.ids.size())},
                                        {"requests", static_cast<int64_t>(model.forgotten.requests.size())},
                                        {"in_this_request", already}};
      record["n"] = kept_total + k_total;
      record["k"] = k_total;
      record["forget_ids"] = removed;
      AddPatchFields(options, s, record);
      record["input_grad_norm"] = s.input_grad_norm;
      record["kept_gradient"] = s.gradient_carried ? "carried" : "computed";
      record["seconds"] = seconds;
      record["cpu_seconds"] = CpuSeconds() - cpu_start;
      record["dtype"] = common.dtype;
      if (Distributed())  // what the patch's reductions cost (docs/distributed.md)
        record["communication"] = {{"processes", Comm().size()},
                                   {"allreduces", counters.allreduces},
                                   {"allreduce_values", counters.allreduce_values},
                                   {"bytes_sent", counters.bytes_sent},
                                   {"bytes_received", counters.bytes_received}};
      record["warnings"] = warnings.all();

      // The next request starts from this one's model and data.
      for (int64_t row : forget_rows) gone[row] = 1;
      model = std::move(patched);
      current_path = r.out;
      current_sha256 = child_sha256;
      chain.push_back(r.out);
      carried = std::move(next);
      have_carried = exact_theta && !carried.gradient.empty();
      // A reused dense factor that needed many iterations has drifted: rebuild it next time.
      for (const UnlearnStep& st : s.steps)
        if (st.solve.preconditioner == "dense (reused)" &&
            st.solve.iterations > in.refresh_iterations) {
          store.Reset();
          warnings.Add(where + ": the reused dense preconditioner took " +
                       std::to_string(st.solve.iterations) + " CG iterations (> " +
                       std::to_string(in.refresh_iterations) +
                       ", --dense-refresh-iterations): rebuilt at the next request");
          record["warnings"] = warnings.all();
          break;
        }
      if (expired && !drifted) {
        store.Reset();
        warnings.Add(where + ": the dense preconditioner has served " + std::to_string(age) +
                     " requests (--dense-max-age): rebuilt at the next request");
        record["warnings"] = warnings.all();
      }
    } catch (const Error& e) {
      const std::string m = e.what();
      if (m.rfind(where, 0) == 0) throw;
      Fail(where, ": ", m);
    }
    if (common.json) {
      std::cout << record.dump() << std::endl;  // one line per request, flushed: a service reads it now
    } else {
      std::cout << "request " << served << " (" << where << "): forgot "
                << record["k"].get<int64_t>() << " id(s) → " << r.out << "; ";
      for (const auto& st : record["steps"]) {
        const auto& solve = st["solve"];
        std::cout << solve["iterations"].get<int64_t>() << " CG iteration(s)"
                  << (solve.contains("preconditioner")
                          ? " (" + solve["preconditioner"].get<std::string>() + ")"
                          : std::string())
                  << " in " << st["solve_dtype"].get<std::string>() << ", "
                  << st["action"].get<std::string>() << "; ";
      }
      std::cout << "‖∇L₋ₛ‖ " << Sci(record["kept_grad_norm_before"].get<double>()) << " → "
                << Sci(record["kept_grad_norm_after"].get<double>()) << ", "
                << Fixed(record["seconds"].get<double>(), 3) << " s" << std::endl;
    }
  }
  if (served == 0) Fail(in.requests_path, ": no requests");
  if (!common.json)
    std::cout << "served " << served << " request(s) in " << Fixed(Since(run_start), 2)
              << " s; dense preconditioner built " << store.builds()
              << " time(s); ledger " << in.ledger << ": head " << current_path << "\n";
  return 0;
}

}  // namespace

int RunUnlearnServe(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  SolverFlags flags;
  UnlearnOptions options;
  ServeInputs in;
  std::string solve_dtype = "auto", steps = "1";
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&in.model_path), "the model the first request applies to (.safetensors)")
    ("train", po::value(&in.train_path), "the data it was trained on")
    ("requests", po::value(&in.requests_path),
     "FILE (or - for standard input): one request per line, `IDS OUT` (ids comma-separated, "
     "the patched model's path); each served and committed before the next line is read")
    ("ledger", po::value(&in.ledger), "the deletion ledger each request appends its line to (required)")
    ("steps", po::value(&steps)->default_value("1"),
     ("Newton steps per request, or `auto`: steps until ‖∇L₋ₛ‖ <= 1e-5, at most " +
      std::to_string(kAutoSteps)).c_str())
    ("solve-dtype", po::value(&solve_dtype)->default_value("auto"),
     "precision of each step's solve: f32, f64 (--dtype's), or auto (f32 for a CG solve when "
     "--dtype is f64 and its tolerance is >= 1e-4)")
    ("dense-refresh-iterations", po::value(&in.refresh_iterations)->default_value(10),
     "dense: rebuild the preconditioner after a request whose solve took more CG iterations")
    ("dense-max-age", po::value(&in.max_age)->default_value(1000),
     "dense: rebuild the preconditioner once it has served this many requests")
    ("cache", po::bool_switch(&in.cache),
     "keep the dense preconditioner's factor and the kept gradient next to each patched model "
     "(OUT.lethe-dense), and start from the input model's when its hashes match the model and "
     "the data (docs/unlearning.md)")
    ("spec", po::value(&in.spec_path), "sidecar spec JSON");
  flags.Add(desc, /*allow_inexact_option=*/false);
  common.Add(desc);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe unlearn --model M --train T --requests FILE --ledger L [--json]",
             "lethe unlearn --model examples/digits/model.safetensors --train "
             "examples/digits/train.npz --requests examples/digits/requests.txt --ledger "
             "ledger.jsonl"))
    return 0;
  for (const char* name : {"model", "train", "requests", "ledger"}) Require(vm, name);
  if (in.max_age < 1) Fail("--dense-max-age ", in.max_age, ": must be >= 1");
  if (in.refresh_iterations < 1)
    Fail("--dense-refresh-iterations ", in.refresh_iterations, ": must be >= 1");
  options.method = UnlearnMethod::kNewton;
  ParseSteps(steps, options);
  options.solve_precision = ParseSolvePrecision(solve_dtype);
  const bool f32 = common.F32();
  if (f32 && options.solve_precision == SolvePrecision::kF64)
    Fail("--solve-dtype f64 needs --dtype f64 (the solve cannot be finer than the compute precision)");
  common.Backend();
  std::vector<std::string> inputs = {in.model_path, in.train_path};
  if (!in.spec_path.empty()) inputs.push_back(in.spec_path);
  if (in.requests_path != "-") inputs.push_back(in.requests_path);
  io::CheckOutputIsNotAnInput(in.ledger, inputs);
  io::CheckOutputCanBeWritten(in.ledger);

  const Model model = LoadModel(in.model_path, in.spec_path.empty() ? std::nullopt : std::optional(in.spec_path));
  if (model.certified)
    Fail(in.model_path, ": trained with --certified: serve its requests with lethe unlearn "
         "--certified, one process each (--requests serves plain Newton removals)");
  // Under mpirun: this rank's block of the rows (tools/lethe/distributed_cli.h).
  const io::Dataset train = ExcludeForgottenRows(
      model.forgotten, LoadRows(in.train_path, common.Data()), "unlearn", in.model_path);
  Collectively([&] { CheckDataMatchesModel(model.arch, train); });
  if (flags.solver == "auto") flags.solver = "cg";
  options.inverse = flags.Resolve(model.arch.num_params);
  options.adaptive_cg_tolerance = vm["cg-tolerance"].defaulted();
  // auto: the dense preconditioner where it pays and fits. It pays for a model with one
  // linear layer (its curvature is a few Gram products, and positive definite with l2 or
  // damping > 0) whose requests are served by one run, as here; it fits when its factor
  // (p² values of the compute precision) is within --dense-max-gb. Elsewhere auto is K-FAC
  // or none, as for a single request. Under mpirun too: the Gram products are each rank's
  // partial sums reduced in one allreduce (DenseCurvature), and every rank holds rank 0's
  // Cholesky factor of them (engine/dense_preconditioner.cc), p² values on every rank.
  if (flags.preconditioner == "auto" && options.inverse.solver == SolverKind::kCg &&
      HasDenseCurvature(model.arch) && model.arch.spec.l2 + options.inverse.damping > 0 &&
      DensePreconditionerBytes(model.arch.num_params, f32 ? 4 : 8) <= options.inverse.dense.max_bytes)
    options.inverse.preconditioner = PreconditionerKind::kDense;
  options.Validate();

  std::ifstream file;  // rank 0's alone under mpirun: it reads the requests
  if (in.requests_path != "-")
    Collectively([&] {
      if (Comm().rank() != 0) return;
      file.open(in.requests_path);
      if (!file) Fail(in.requests_path, ": cannot open");
    });
  std::istream& requests = in.requests_path == "-" ? std::cin : file;
  return f32 ? Serve<float>(in, model, train, common, options, requests)
             : Serve<double>(in, model, train, common, options, requests);
}

}  // namespace lethe::cli
