// A SISA ensemble's prediction on each row of a data set this process holds, from every
// constituent, with no communication (`eval` and `compare` of an ensemble; under mpirun
// each rank on its block of rows: docs/distributed.md, "SISA ensembles").
//
// Per-row loss, as compare and eval define it (tools/lethe/sisa_compare.h):
//   mean: −log p̄_y, the log loss of the mean of the constituents' probabilities;
//   vote: 1 − v_y/S, the fraction of the S constituents that do not vote for y.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/sisa/aggregate.h"
#include "io/dataset.h"
#include "tools/lethe/cli.h"

namespace lethe::cli {

struct EnsembleRows {
  int64_t width = 0;                       // a constituent's output width
  std::vector<int64_t> label;              // the ensemble's label per row
  std::vector<double> loss;                // per row, as above
  std::vector<int64_t> constituent_right;  // per constituent: rows it labels right
  std::string device;                      // the backend that computed them (Describe())
};

// constituents: the models in shard order (same architecture); every row of `data`.
EnsembleRows PredictEnsembleRows(const std::vector<Model>& constituents, sisa::Aggregate aggregate,
                                 const io::Dataset& data, const CommonOptions& common);

}  // namespace lethe::cli
