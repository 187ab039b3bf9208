#include "engine/sisa/train_shard.h"

#include "common/error.h"
#include "engine/objective.h"
#include "engine/trainer.h"

namespace lethe::sisa {

uint64_t InitSeed(uint64_t seed, int shard) {
  return Mix64(Mix64(seed ^ 0x494e4954ULL) + static_cast<uint64_t>(shard));  // "INIT"
}

uint64_t SliceSeed(uint64_t seed, int shard, int slice) {
  return Mix64(Mix64(seed ^ 0x534c4943ULL) + (static_cast<uint64_t>(shard) << 20) +  // "SLIC"
               static_cast<uint64_t>(slice));
}

template <typename T>
void TrainShard(kernels::Backend<T>& backend, Model model, const io::Dataset& data,
                const std::unordered_map<int64_t, int64_t>& row_of_id, const Partition& partition,
                int shard, int from, const Manifest& manifest,
                const std::function<void(const SliceDone&)>& done) {
  const int64_t p = model.arch.num_params;
  for (int r = from; r < manifest.partition.slices; ++r) {
    std::vector<int64_t> rows;
    for (int64_t id : ShardOrder(partition, shard, r)) {
      auto it = row_of_id.find(id);
      LETHE_CHECK(it != row_of_id.end());
      rows.push_back(it->second);
    }
    TrainOptions options = manifest.train;
    options.seed = SliceSeed(manifest.partition.seed, shard, r);
    if (options.optimizer == Optimizer::kAdam) options.epochs = manifest.epochs_per_slice;
    TrainSummary summary;
    summary.optimizer = Name(options.optimizer);
    if (!rows.empty()) {
      Objective<T> objective(backend, model.arch, UploadData(backend, data, rows),
                             ObjectiveOptions{manifest.objective_batch});
      std::vector<T> host(model.theta.begin(), model.theta.end());
      auto theta = backend.Allocate(1, p);
      backend.Upload(host.data(), theta);
      summary = Train(objective, theta, options);
      backend.Download(theta, host.data());
      model.theta.assign(host.begin(), host.end());
    } else {
      summary.converged = true;
      summary.message = "no rows yet: the model is left as it was";
    }
    done({r, model, summary, static_cast<int64_t>(rows.size())});
  }
}

template void TrainShard<float>(kernels::Backend<float>&, Model, const io::Dataset&,
                                const std::unordered_map<int64_t, int64_t>&, const Partition&, int,
                                int, const Manifest&, const std::function<void(const SliceDone&)>&);
template void TrainShard<double>(kernels::Backend<double>&, Model, const io::Dataset&,
                                 const std::unordered_map<int64_t, int64_t>&, const Partition&, int,
                                 int, const Manifest&,
                                 const std::function<void(const SliceDone&)>&);

}  // namespace lethe::sisa
