// What `lethe unlearn --requests FILE` needs to run under mpirun (docs/distributed.md,
// "unlearn --requests"): the few things one process does with files, done by rank 0 alone
// and sent to every rank, so that every rank holds the same request, hashes and cached
// state and so takes the same decisions (the reductions already give every rank the same
// sums: engine/distributed/communicator.h).
//
// Rank 0 alone reads the requests (mpirun sends standard input to rank 0 only), hashes,
// and reads and checks the dense cache; every rank then holds its bits. Serially each
// function is the plain one-process call.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tools/lethe/dense_cache.h"

namespace lethe::cli {

// f() run on rank 0 alone, its result on every rank. A lethe::Error there stops every rank
// with its line (Collectively). Serially f().
std::string FromRoot(const std::function<std::string()>& f);

// f() run on rank 0 alone where its failure is not fatal (a cache file that cannot be
// written): true with *result = its value, or false with *result = its error message, the
// same on every rank, so that every rank's state follows the same outcome.
bool TryOnRoot(const std::function<std::string()>& f, std::string* result);

// Every rank holds rank 0's `values` bit for bit, or every rank stops with one line naming
// `what` and the first process that differs: the ranks' solves run in lockstep on reduced
// sums, and a rank whose local arithmetic rounded differently (another backend, thread
// count or build on one node), or that read another file under the same path (no shared
// filesystem), would otherwise drift silently from the model rank 0 writes.
// One broadcast of a SHA-256 and one agreement. Nothing serially.
void CheckSameOnEveryRank(const std::vector<double>& values, const std::string& what);

// LoadDenseCacheKey (dense_cache.h) as rank 0 reads it: the outcome, the carried gradient
// (p doubles, bit for bit), the factor references and the note, on every rank.
bool LoadDenseCacheKeyOnRoot(const std::string& model_path, const std::string& model_sha256,
                             const std::string& data_sha256, const DenseCacheFit& fit,
                             KeptGradient* gradient, std::vector<DenseFactorRef>* factors,
                             std::string* note);

// LoadDenseFactor as rank 0 reads and checks it; its p² values are broadcast and every rank
// uploads the same bits to its `backend` (null and the note on every rank when rank 0
// refused the file). Memory: the factor once more on the host while it travels.
template <typename T>
std::unique_ptr<DensePreconditioner<T>> LoadDenseFactorOnRoot(const DenseFactorRef& ref,
                                                              kernels::Backend<T>& backend,
                                                              const DenseCacheFit& fit,
                                                              std::string* note);

}  // namespace lethe::cli
