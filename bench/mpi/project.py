#!/usr/bin/env python3
"""From bench/mpi/scaling.py's measurements to many nodes: an alpha-beta model (issue 18).

    /usr/bin/python3 bench/mpi/project.py bench/mpi/results/scaling-DATE.json
        [--n 1e8] [--p 1e7] [--m 10] [--nodes 64] [--cores 16] [--cg 68]

docs/scaling.md explains every term. In short, on P nodes (one rank per node, --cores
threads each), for one collective pass over the data (a curvature product of m directions,
or a gradient) followed by one allreduce of B = 8·m·p bytes:

    T = T_compute + T_allreduce
    T_compute   = u · (n / P) · m · p / cores                       (measured u, below)
    T_allreduce = 2·log2(P)·α + 2·(P−1)/P · B / β + B / γ           (reduce-scatter + allgather)
    lethe       = (P−1+log2 P)·α + 2·(P−1)/P · B / β + B / γ     (fixed-order reduce-scatter by
                                                                  Alltoallv, then Allgatherv)
    lethe before 2026-11-30 = log2(P)·α + (P−1)·B/β + P·B/γ      (allgather + rank-order sum)

with γ = 10 GB/s, one core adding what it received. Two kinds of node: 16 cores at the rate
measured here (u per core / 16, perfect threading assumed), and one H200 GPU at its measured
f64 HVP rate (docs/performance.md: 38.9 TFLOP/s, 6p flops per row and direction).

u is seconds per (row · direction · parameter), on one core, from the P = 1 runs: the solve's
seconds over its (iterations + 1) curvature products, times the command's CPU / wall ratio
(on a shared machine a process waits for a core part of the wall time). Influence: --cg iterations (68: CG
with K-FAC to 1e-8 on digits784, docs/performance.md) + 1 final residual product + 1 scoring
pass, each of m directions. Newton patch: the measured proxy step (its passes and CG
iterations as measured, m = 1), scaled in n·p.
Prints markdown tables: the per-node rate, the projections for the networks, and the crossover
n/P below which the allreduce takes longer than the compute.
"""
import argparse
import json
import math
import sys

# Generally published figures (not measured here; docs/scaling.md says where they come from).
NETWORKS = {
    "100 Gb/s Ethernet (TCP)": (20e-6, 12.5e9),
    "100 Gb/s Ethernet (RoCE)": (3e-6, 12.5e9),
    "HDR InfiniBand (200 Gb/s)": (1.5e-6, 25e9),
}


# The γ term: the additions read every received byte once, one core streaming from memory
# (an assumed 10 GB/s; lethe's rank-order sum is a single-threaded loop).
SUM_BANDWIDTH = 10e9


def allreduce(P, B, alpha, beta):
    """Reduce-scatter + allgather (Rabenseifner): the bandwidth of a ring, the latency of a
    tree; each rank adds P pieces of B/P bytes."""
    if P == 1:
        return 0.0
    return 2 * math.log2(P) * alpha + 2 * (P - 1) / P * B / beta + B / SUM_BANDWIDTH


def allgather_sum(P, B, alpha, beta):
    """lethe's fixed-order reduction (engine/distributed/mpi_communicator.cc): a reduce-scatter
    by MPI_Alltoallv (pairwise: P − 1 messages, (P − 1)/P·B bytes each way), each segment
    summed in rank order (B bytes read), then MPI_Allgatherv of the sums (log2 P messages,
    (P − 1)/P·B bytes). The ring's bandwidth; the latency of P − 1 messages, which at these
    sizes (B ≥ megabytes) is noise. (Until 2026-11-30: an allgather of whole vectors,
    log2(P)·α + (P − 1)·B/β + P·B/γ.)"""
    if P == 1:
        return 0.0
    return (P - 1 + math.log2(P)) * alpha + 2 * (P - 1) / P * B / beta + B / SUM_BANDWIDTH


def fmt(s):
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    if s >= 1:
        return f"{s:.1f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--p", type=float, default=1e7)
    ap.add_argument("--m", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--cg", type=int, default=68, help="CG iterations of the influence solve")
    args = ap.parse_args()
    with open(args.results) as f:
        runs = json.load(f)["runs"]
    one = {(r["model"], r["task"]): r for r in runs if r["P"] == 1}
    if not one:
        sys.exit(f"{args.results}: no P = 1 run to take the per-core rate from")

    print("| measured (P = 1, 1 thread) | n | p | m | products | solve s (wall) | CPU / wall | "
          "u = CPU s per row·dir·param | GFLOP/s at 4p flops per row·dir |")
    print("|---|---|---|---|---|---|---|---|---|")
    u = {}
    for (model, task), r in sorted(one.items()):
        if task == "influence":
            products, m = r["iterations"] + 1, r["m"]
        else:  # the Newton step: its gradient passes count as products of one direction
            products, m = r["iterations"] + 1 + 3, 1
        # On a shared machine the solve's wall seconds include waiting for a core: count the
        # share of the wall time the command had a core (its CPU / wall seconds; one thread).
        share = min(1.0, r["cpu_s"] / r["wall_s"])
        u[(model, task)] = r["solve_s"] * share / (products * r["n"] * m * r["p"])
        print(f"| {model} {task} | {r['n']} | {r['p']} | {m} | {products} | {r['solve_s']:.2f} | "
              f"{share:.2f} | {u[(model, task)]:.3e} | {4 / u[(model, task)] / 1e9:.2f} |")

    # The largest model's u stands for a p = 1e7 dense network (big layers run nearer the GEMM
    # rate than the softmax's thin 784 × 10 product), for both tasks: the Newton patch takes
    # from its measurement only its number of passes.
    big = max((k for k in u if k[1] == "influence"), key=lambda k: one[k]["p"])
    newton = next((k for k in u if k[1] != "influence"), None)
    n, p, m, P, c = args.n, args.p, args.m, args.nodes, args.cores
    nodes_kinds = {
        f"CPU node ({c} cores at this machine's rate)": u[big] / c,
        # f64 HVP of an MLP 784-1024-1024-10 on one H200, 3 big products = 6p flops per row.
        "GPU node (one H200, 38.9 TFLOP/s f64 HVP)": 6 / 38.9e12,
    }
    # (task, passes, directions per pass, [(reductions, values each)])
    tasks = [("influence", args.cg + 2, m, [(args.cg + 2, m * p)])]
    if newton:
        r = one[newton]
        # As measured: cg + 1 Hessian products and 3 gradient passes of p values each, and
        # evaluations − 3 line-search trials (the loss alone: latency only); the trials'
        # forward passes are counted as whole passes (an overestimate of their compute).
        trials = r.get("evaluations", 3) - 3
        k = r["iterations"] + 1 + 3
        tasks.append((f"Newton patch ({r['iterations']} CG it.)", k + trials, 1,
                      [(k, p), (trials, 1)]))
    print(f"\nProjection: n = {n:.0e}, p = {p:.0e}, m = {m}, {P} nodes, one rank per node; u of "
          f"{big[0]} ({u[big]:.2e} s per core); influence {args.cg} CG iterations + 2 passes")
    print("\n| task | node | network | compute | allreduce (reduce-scatter + allgather) | total "
          "| lethe (reduce-scatter by Alltoallv + allgather) | total, lethe |")
    print("|---|---|---|---|---|---|---|---|")
    for task, passes, dirs, reductions in tasks:
        for node, un in nodes_kinds.items():
            comp = passes * un * (n / P) * dirs * p
            for net, (alpha, beta) in NETWORKS.items():
                ar = sum(cnt * allreduce(P, 8 * v, alpha, beta) for cnt, v in reductions)
                ag = sum(cnt * allgather_sum(P, 8 * v, alpha, beta) for cnt, v in reductions)
                print(f"| {task} | {node} | {net} | {fmt(comp)} | {fmt(ar)} | {fmt(comp + ar)} | "
                      f"{fmt(ag)} | {fmt(comp + ag)} |")

    print(f"\nCrossover at {P} nodes: one pass's allreduce takes as long as its compute when n/P "
          "falls to")
    print("\n| node | network | reduce-scatter + allgather: n/P | lethe: n/P |")
    print("|---|---|---|---|")
    # (m directions per pass scale compute and bytes alike: m moves only the latency term.)
    for node, un in nodes_kinds.items():
        for net, (alpha, beta) in NETWORKS.items():
            # un·(n/P)·m·p = T_allreduce(P, 8·m·p)  →  n/P
            B = 8 * m * p
            print(f"| {node} | {net} | {allreduce(P, B, alpha, beta) / (un * m * p):,.0f} "
                  f"| {allgather_sum(P, B, alpha, beta) / (un * m * p):,.0f} |")

    print(f"\nThe crossover in nodes for n = {n:.0e}: the smallest P at which one pass's allreduce "
          "takes at least as long as its compute")
    print("\n| node | network | reduce-scatter + allgather: P | lethe: P |")
    print("|---|---|---|---|")

    def crossover(un, mm, reduce_time):
        lo, hi = 1, 1 << 40  # compute falls as 1/P, communication grows: bisect
        if reduce_time(hi) < un * (n / hi) * mm * p:
            return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if reduce_time(mid) >= un * (n / mid) * mm * p else (mid, hi)
        return hi

    for node, un in nodes_kinds.items():
        for net, (alpha, beta) in NETWORKS.items():
            B = 8 * m * p
            a = crossover(un, m, lambda P_: allreduce(P_, B, alpha, beta))
            g = crossover(un, m, lambda P_: allgather_sum(P_, B, alpha, beta))
            print(f"| {node} | {net} | {a:,} (n/P = {n / a:,.0f}) | {g:,} (n/P = {n / g:,.0f}) |")

    print(f"\nOne influence CG iteration (m = {m}, {8 * m * p / 1e6:,.0f} MB reduced) against the "
          f"number of nodes, n = {n:.0e}, p = {p:.0e}:")
    nets = list(NETWORKS.items())
    kinds = list(nodes_kinds.items())
    print("\n| nodes | n/P | " + " | ".join(f"compute, {k}" for k, _ in kinds) + " | " +
          " | ".join(f"allreduce, {k}" for k, _ in nets) + f" | lethe, {nets[0][0]} |")
    print("|---|---|" + "---|" * (len(kinds) + len(nets) + 1))
    B = 8 * m * p
    for nodes in (1, 4, 16, 64, 256, 1024, 4096):
        comp = [fmt(un * (n / nodes) * m * p) for _, un in kinds]
        comm = [fmt(allreduce(nodes, B, a, b)) if nodes > 1 else "0" for _, (a, b) in nets]
        today = fmt(allgather_sum(nodes, B, *nets[0][1])) if nodes > 1 else "0"
        print(f"| {nodes} | {n / nodes:,.0f} | " + " | ".join(comp + comm) + f" | {today} |")

if __name__ == "__main__":
    main()
