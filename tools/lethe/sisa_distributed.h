// SISA under mpirun (docs/distributed.md, "SISA ensembles"): the constituents are
// independent, so they — not the rows — are spread over the ranks. Constituent (or job) j
// runs on rank j mod P with the one-process code, in rounds of P: in round k, rank r runs
// j = kP + r; then rank 0 receives the round's results in j order. So rank 0 sees the
// results in exactly the order one process computes them, each computed by the same code on
// the same inputs (bit for bit the one-process result: nothing is summed across ranks), and
// the first failing j's error — the one one process would stop at — is the error of every
// rank. Ranks beyond the number of constituents stay idle (they only join the agreements).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lethe::cli {

// Runs work(j) for j in [0, count) as above; rank 0 calls take(j, result of work(j)) in j
// order (serially: work(0), take(0), work(1), …). A lethe::Error thrown by work or by take
// stops every rank with the same message (AgreedError under mpirun: the lowest j's). Memory:
// one result per rank in flight, one at a time on rank 0. Collective.
void ForEachConstituent(int count, const std::function<std::string(int)>& work,
                        const std::function<void(int, const std::string&)>& take);

// A result: a JSON header (small metadata, text) and doubles, which travel as raw bytes
// (bit for bit).
std::string Pack(const nlohmann::json& header, const std::vector<double>& values);
void Unpack(const std::string& bytes, nlohmann::json& header, std::vector<double>& values);

// Runs f on rank 0 only; its lethe::Error stops every rank with its message. Collective.
void OnRoot(const std::function<void()>& f);

}  // namespace lethe::cli
