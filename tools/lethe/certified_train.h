// lethe train --certified: training on the perturbed objective of certified removal
// (engine/certified/removal_bound.h; docs/privacy.md, "Certified removal"). The secret b
// goes to its own file, the model records that it was trained so (σ, b's hash, γ, λ).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/trainer.h"
#include "tools/lethe/cli.h"

namespace lethe::cli {

struct CertifiedTrainFlags {
  bool enabled = false;
  double sigma = 0;
  std::string b_out;  // default: next to the model (PerturbationPathFor)

  void Add(po::options_description& desc);
  // Refuses --sigma / --b-out without --certified, and options with no meaning with it.
  void Check(const po::variables_map& vm);
};

// MODEL.safetensors → MODEL.b.npy (any other name: NAME.b.npy).
std::string PerturbationPathFor(const std::string& model_path);

// Writes b as a float64 .npy (owner-only permissions: it is a secret).
void WritePerturbation(const std::string& path, const std::vector<double>& b);
// Reads b for `model` (trained --certified): a float64 vector of its p values whose
// SHA-256 is the model's b_sha256; else one line naming the file and the problem.
std::vector<double> ReadPerturbationHere(const std::string& path, const Model& model,
                                         const std::string& model_path);

// The same under mpirun (docs/distributed.md; serially the functions above): rank 0 reads
// or draws b and broadcasts it (an error there is every rank's one line), rank 0 alone
// writes it. Collective.
std::vector<double> ReadPerturbation(const std::string& path, const Model& model,
                                     const std::string& model_path);
std::vector<double> DrawPerturbationOnRoot(uint64_t seed, int64_t p, double sigma);
void WritePerturbationOnRoot(const std::string& path, const std::vector<double>& b);

// Refuses (one line) a model the certificate does not cover, or f32.
void CheckCertifiable(const Model& model, const CommonOptions& common, const std::string& what);

// Trains `model` from its θ on `rows` of `data` (all when empty) with b, in f64; fills
// model.theta and a fresh model.certified record (no removals yet). Under mpirun `data` is
// this rank's block, the objective is distributed (collective) and the record counts every
// rank's rows.
TrainSummary FitCertified(Model& model, const io::Dataset& data, const std::vector<int64_t>& rows,
                          const TrainOptions& options, const std::vector<double>& b, double sigma,
                          const CommonOptions& common);

// lethe train --certified: draws b from `seed`, trains, writes b then the model, prints the
// summary. Returns the exit code. Under mpirun every rank runs it with its block of rows;
// rank 0 writes.
int TrainCertified(Model model, const io::Dataset& data, const std::vector<int64_t>& rows,
                   const TrainOptions& options, const CertifiedTrainFlags& flags, uint64_t seed,
                   const CommonOptions& common, const std::string& out);

}  // namespace lethe::cli
