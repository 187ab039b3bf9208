// `lethe unlearn --requests FILE --ledger L`: a stream of deletion requests served by one
// run (docs/unlearning.md, "Serving a stream in one run"): one process, or `mpirun -np P`,
// each rank holding its block of the rows and rank 0 reading FILE and writing
// (docs/distributed.md, "unlearn --requests"; stream_serve_ranks.h).
//
// FILE holds one request per line, `IDS OUT`: the ids to forget (comma-separated) and the
// path of the patched model to write. Request 1 is applied to --model, request j to request
// j − 1's OUT. The data are loaded once, and what a request computes that the next can use
// stays in memory: the backends; with the dense preconditioner (engine/dense_preconditioner.h,
// chosen by --preconditioner auto for a model with one linear layer), the Cholesky factor of
// the curvature at the first request's θ, which makes every later solve 2–3 CG iterations;
// and the kept gradient at the θ each request accepted (engine/unlearn.h, KeptGradient),
// which saves the next request a pass over the kept rows. With --cache both are also kept
// next to each patched model (tools/lethe/dense_cache.h; the data hashed once), so that a
// later process continues the stream as this one would have, byte for byte.
//
// Each request is served exactly as one `lethe unlearn --ledger L` process would serve it
// (same kept data in the same order, same Newton step, its solve's summary checked, a
// failed solve refused) and committed before the next is read: its patched model written
// atomically, then its ledger line appended and fsync'ed. A crash or a bad line therefore
// loses nothing already served: the ledger's head is the last committed model. Lines are
// read one at a time (FILE may be - for standard input, so that requests can arrive as
// they come); a malformed line or a request that cannot be served stops the run with one
// error line naming FILE:LINE, exit 1, and nothing of that request written.
#pragma once

#include <string>
#include <vector>

namespace lethe::cli {

// Whether `args` ask lethe unlearn to serve a file of requests (--requests among them).
bool WantsServeRequests(const std::vector<std::string>& args);
int RunUnlearnServe(const std::vector<std::string>& args);

}  // namespace lethe::cli
