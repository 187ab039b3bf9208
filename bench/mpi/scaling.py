#!/usr/bin/env python3
"""Strong scaling of lethe under mpirun, and its communication against the model (issue 18).

    /usr/bin/python3 bench/mpi/scaling.py --lethe build/tools/lethe [--procs 1,2,4]
        [--n 100000] [--models softmax,mlp] [--hidden 32] [--softmax-cg 10] [--mlp-cg 3]
        [--work /tmp/lethe-mpiscale] [--out bench/mpi/results/NAME.json]

Data: digits784 (bench/compare/common.py: scikit-learn's 1,797 digits upsampled to 24 × 24
at a random offset in 28 × 28, drawn with replacement) for n rows, plus Gaussian noise of
standard deviation --noise (0.02) clipped to [0, 1], so that no two rows are identical
(1,797 images × 25 offsets give at most 44,925 distinct rows; 100,000 draws repeat many).
Stored with numpy.savez (uncompressed: each rank reads only its block). 10 test rows.

Models (l2 = 1e-3, f64):
- softmax: 784 → 10 (p = 7,850), L-BFGS on all n rows for at most --train-iterations.
- mlp: 784 → --hidden → tanh → 10 (p = 25,450 for 32), L-BFGS on the first --mlp-subset rows
  for at most --train-iterations: a full fit of 100,000 rows is minutes on 2 shared cores,
  and the per-iteration cost of a solve does not depend on how well θ fits.
Neither is trained to a minimiser (influence warns so): the measurement is the cost of the
solves, not their scores. Trained once per --work directory and reused.

Measured for each P in --procs, every rank with 1 thread (OMP_NUM_THREADS=1, --threads 1),
`mpirun -q --oversubscribe --bind-to none -np P` (P = 1 too, for the same start-up cost):
- influence, m = 10 test rows, `--solver cg --preconditioner none`, exactly K CG iterations
  (--softmax-cg / --mlp-cg; --cg-tolerance 1e-15 is never met that soon, so every P does the
  same work; --allow-inexact writes the scores all the same). The MLP uses the Gauss-Newton
  curvature (positive semi-definite at a θ that is not a minimiser).
- the Newton patch: `lethe unlearn` (one Newton step, CG) of --forget ids when it runs under
  mpirun; until it does (refused: "does not run under mpirun"), its proxy `lethe train
  --init MODEL --forget-ids … --optimizer newton-cg --max-iterations 1`: one truncated Newton
  step on the kept rows from the trained θ (a gradient, a CG solve with the Hessian to
  relative tolerance min(0.5, √‖∇L‖), an Armijo line search of value-only passes, the
  gradient at the new θ). Softmax only (the MLP's Hessian step is minutes here).
Each: wall time of the whole command, CPU time (user + system of mpirun and every rank, from
RUSAGE_CHILDREN), the solve's own seconds from --json (rank 0), the load average, and the
`communication` counters of --json (P > 1), checked EXACTLY against the model:
- influence CG: (iterations + 1) allreduces (one curvature product of the m directions per
  iteration, one for the explicit final residual), each of m·p values; rank 0 sends and
  receives 8·(N + (P − 2)·⌈N/P⌉) bytes per allreduce of N values (the fixed-order
  reduce-scatter + allgather, engine/distributed/mpi_communicator.cc);
- Newton-CG step (train proxy): allreduces = evaluations + cg_iterations + 1 and values =
  p·(cg_iterations + 4) + evaluations: three gradient passes (before, after the step, and
  train's closing one) of p + 1 values, cg_iterations + 1 Hessian products of p, and
  evaluations − 3 line-search trials of 1 value (the loss alone).
Parallel efficiency: T(1) / (P · T(P)), of the wall time and of the solve's seconds.
Writes the JSON with every run and prints a markdown table. Progress on stderr.
"""
import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compare"))
from common import digits784  # noqa: E402

M_TEST = 10
L2 = 1e-3


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_data(work, n, noise, seed, mlp_subset):
    train, test, sub = (os.path.join(work, f) for f in ("train.npz", "test.npz", "subset.npz"))
    if all(os.path.exists(f) for f in (train, test, sub)):
        return train, test, sub
    log(f"making digits784 × {n} (+ noise {noise})")
    X, y = digits784(n + M_TEST, seed)
    rng = np.random.default_rng(seed + 1)
    X = np.clip(X + noise * rng.standard_normal(X.shape), 0, 1)
    ids = np.arange(n + M_TEST, dtype=np.int64)
    np.savez(train, X=X[:n], y=y[:n].astype(np.int64), ids=ids[:n])
    np.savez(test, X=X[n:], y=y[n:].astype(np.int64), ids=ids[n:] + 10**7)
    np.savez(sub, X=X[:mlp_subset], y=y[:mlp_subset].astype(np.int64), ids=ids[:mlp_subset])
    return train, test, sub


def spec(work, name, hidden):
    layers = [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 10}]
    if name == "mlp":
        layers = [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": hidden},
                  {"type": "tanh"},
                  {"type": "linear", "weight": "2.weight", "bias": "2.bias", "out": 10}]
    path = os.path.join(work, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"format": "lethe/1", "layers": layers, "loss": "cross_entropy", "l2": L2}, f)
    return path


def num_params(name, hidden):
    return 785 * 10 if name == "softmax" else 785 * hidden + (hidden + 1) * 10


def measured(cmd, env):
    """Runs cmd; wall seconds, CPU seconds of it and its descendants, rc, stdout, stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.returncode, r.stdout, r.stderr


def mpirun(P):
    return ["mpirun", "-q", "--oversubscribe", "--bind-to", "none", "-np", str(P)]


def run_json(cmd, env, what):
    wall, cpu, rc, out, err = measured(cmd, env)
    if rc:
        sys.exit(f"{what}: failed (exit {rc}): {' '.join(cmd)}\n{err}")
    return wall, cpu, json.loads(out)


def moved(P, N):
    """Bytes rank 0 sends (and receives) in one AllreduceSum of N doubles: the fixed-order
    reduce-scatter (the other ranks' segments out, its own segment's pieces in) and the
    allgather of its summed segment (⌈N/P⌉ values, rank 0's segment, to P − 1 ranks)."""
    mine = -(-N // P)
    return 8 * (N - mine + mine * (P - 1))


def check_influence(c, P, m, p, iterations):
    """The counters against the model; the list of what differs (empty: exact)."""
    want = {"processes": P, "allreduces": iterations + 1}
    want["allreduce_values"] = want["allreduces"] * m * p
    want["bytes_sent"] = want["bytes_received"] = want["allreduces"] * moved(P, m * p)
    return want, [k for k in want if c.get(k) != want[k]]


def check_newton(c, P, p, evaluations, cg):
    want = {"processes": P, "allreduces": evaluations + cg + 1,
            "allreduce_values": p * (cg + 4) + evaluations}
    # Three gradient passes of p + 1 values, cg + 1 products of p, evaluations − 3 trials of 1.
    want["bytes_sent"] = want["bytes_received"] = (
        3 * moved(P, p + 1) + (cg + 1) * moved(P, p) + (evaluations - 3) * moved(P, 1))
    return want, [k for k in want if c.get(k) != want[k]]


def table(results):
    """Efficiencies against P = 1 of the same model and task; prints the markdown table."""
    base = {(r["model"], r["task"]): r for r in results["runs"] if r["P"] == 1}
    print("| model | task | P | wall s | CPU s | solve s | CG it. | solve s / CG it. | eff. wall | "
          "eff. solve | CPU(1)/CPU(P) | load avg | allreduces | bytes sent / rank | = model |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        b = base.get((r["model"], r["task"]))
        if b:
            r["efficiency_wall"] = b["wall_s"] / (r["P"] * r["wall_s"])
            r["efficiency_solve"] = b["solve_s"] / (r["P"] * r["solve_s"])
            r["cpu_ratio"] = b["cpu_s"] / r["cpu_s"]
        c = r.get("communication") or {}
        per_it = r["solve_s"] / r["iterations"] if r["iterations"] else float("nan")
        nan = float("nan")
        print(f"| {r['model']} | {r['task']} | {r['P']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
              f"{r['solve_s']:.2f} | {r['iterations']} | {per_it:.2f} | "
              f"{r.get('efficiency_wall', nan):.2f} | {r.get('efficiency_solve', nan):.2f} | "
              f"{r.get('cpu_ratio', nan):.2f} | {r['loadavg_before'][0]:.1f} | "
              f"{c.get('allreduces', '—')} | {c.get('bytes_sent', '—')} | "
              f"{'yes' if r.get('counters_match') else ('—' if r['P'] == 1 else 'NO')} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lethe")
    ap.add_argument("--table", metavar="RESULTS", help="only print the table of a results JSON")
    ap.add_argument("--procs", default="1,2,4")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--models", default="softmax,mlp")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--mlp-subset", type=int, default=10000)
    ap.add_argument("--train-iterations", type=int, default=100)
    ap.add_argument("--softmax-cg", type=int, default=10, help="CG iterations of softmax influence")
    ap.add_argument("--mlp-cg", type=int, default=3, help="CG iterations of MLP influence")
    ap.add_argument("--forget", type=int, default=100, help="ids forgotten by the Newton patch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/lethe-mpiscale")
    ap.add_argument("--out", help="results JSON (default bench/mpi/results/scaling-DATE.json)")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as f:
            table(json.load(f))
        return
    if not args.lethe:
        sys.exit("--lethe is required (the lethe binary, built with MPI)")
    procs = [int(x) for x in args.procs.split(",")]
    models = args.models.split(",")
    if shutil.which("mpirun") is None:
        sys.exit("mpirun not found (apt-get install openmpi-bin)")
    lethe = os.path.abspath(args.lethe)
    os.makedirs(args.work, exist_ok=True)
    out_path = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        f"scaling-{datetime.date.today()}.json")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    train_env = dict(env, OMP_NUM_THREADS=str(os.cpu_count()))

    train, test, subset = make_data(args.work, args.n, args.noise, args.seed, args.mlp_subset)
    model_paths = {}
    for name in models:
        model = os.path.join(args.work, f"{name}.safetensors")
        model_paths[name] = model
        if os.path.exists(model):
            continue
        data = train if name == "softmax" else subset
        log(f"training {name} on {data}")
        wall, _, j = run_json([lethe, "train", "--spec", spec(args.work, name, args.hidden),
                               "--data", data, "--out", model, "--max-iterations",
                               str(args.train_iterations), "--json", "--quiet"], train_env, "train")
        log(f"  {j['iterations']} iterations, ‖∇L‖ {j['grad_norm']:.2e}, {wall:.1f} s")

    forget_ids = ",".join(str(i) for i in range(0, args.n, args.n // args.forget)[:args.forget])
    # Does `lethe unlearn` run under mpirun yet? (Refused with one line until it does.)
    probe = [*mpirun(2), lethe, "unlearn", "--model", model_paths.get("softmax", ""), "--train",
             train, "--forget-ids", forget_ids, "--out", os.path.join(args.work, "probe.safetensors"),
             "--threads", "1", "--json", "--quiet"]
    _, _, rc, _, err = measured(probe, env)
    unlearn_mpi = rc == 0
    log("lethe unlearn under mpirun: " + ("yes" if unlearn_mpi else "no (" + err.strip()[:160] + ")"))

    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
               "settings": {k: v for k, v in vars(args).items()},
               "unlearn_under_mpi": unlearn_mpi,
               "unlearn_probe_stderr": err.strip()[:300], "runs": []}

    def record(row):
        results["runs"].append(row)
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1)

    for name in models:
        p = num_params(name, args.hidden)
        K = args.softmax_cg if name == "softmax" else args.mlp_cg
        for P in procs:
            load = os.getloadavg()
            cmd = [*mpirun(P), lethe, "influence", "--model", model_paths[name], "--train", train,
                   "--test", test, "--out", os.path.join(args.work, "scores.npy"), "--solver", "cg",
                   "--preconditioner", "none", "--cg-tolerance", "1e-15", "--cg-max-iterations",
                   str(K), "--allow-inexact", "--threads", "1", "--json", "--quiet"]
            if name == "mlp":
                cmd += ["--curvature", "gauss-newton"]
            wall, cpu, j = run_json(cmd, env, f"influence {name} np {P}")
            it = j["solver"]["iterations"]
            row = {"model": name, "task": "influence", "P": P, "n": j["n"], "p": p, "m": j["m"],
                   "wall_s": wall, "cpu_s": cpu, "solve_s": j["solver"]["seconds"],
                   "iterations": it, "loadavg_before": load, "loadavg_after": os.getloadavg()}
            if P > 1:
                c = j["communication"]
                want, wrong = check_influence(c, P, j["m"], p, it)
                row.update(communication=c, predicted=want, counters_match=not wrong)
                if wrong:
                    log(f"  COUNTERS DIFFER from the model in {wrong}: {c} vs {want}")
            record(row)
            log(f"{name} influence np {P}: wall {wall:.1f} s, cpu {cpu:.1f} s, solve "
                f"{row['solve_s']:.1f} s, {it} iterations" +
                (f", counters {'=' if row['counters_match'] else '≠'} model" if P > 1 else ""))

        if name != "softmax":
            continue
        for P in procs:
            load = os.getloadavg()
            patched = os.path.join(args.work, "patched.safetensors")
            if unlearn_mpi:
                cmd = [*mpirun(P), lethe, "unlearn", "--model", model_paths[name], "--train", train,
                       "--forget-ids", forget_ids, "--out", patched, "--threads", "1", "--json",
                       "--quiet"]
                wall, cpu, j = run_json(cmd, env, f"unlearn np {P}")
                steps = j.get("steps", [])
                row = {"model": name, "task": "unlearn", "P": P, "n": args.n, "p": p,
                       "wall_s": wall, "cpu_s": cpu,
                       "solve_s": sum(s["solve"]["seconds"] for s in steps),
                       "iterations": sum(s["solve"]["iterations"] for s in steps),
                       "communication": j.get("communication"),
                       "loadavg_before": load, "loadavg_after": os.getloadavg()}
            else:
                cmd = [*mpirun(P), lethe, "train", "--init", model_paths[name], "--data", train,
                       "--forget-ids", forget_ids, "--optimizer", "newton-cg", "--max-iterations",
                       "1", "--tolerance", "1e-12", "--out", patched, "--threads", "1", "--json",
                       "--quiet"]
                wall, cpu, j = run_json(cmd, env, f"newton step np {P}")
                cg = j.get("cg_iterations", 0)
                row = {"model": name, "task": "newton-step (train proxy)", "P": P,
                       "n": j["n"], "p": p, "wall_s": wall, "cpu_s": cpu, "solve_s": j["seconds"],
                       "iterations": cg, "evaluations": j["evaluations"],
                       "loadavg_before": load, "loadavg_after": os.getloadavg()}
                if P > 1:
                    c = j["communication"]
                    want, wrong = check_newton(c, P, p, j["evaluations"], cg)
                    row.update(communication=c, predicted=want, counters_match=not wrong)
                    if wrong:
                        log(f"  COUNTERS DIFFER from the model in {wrong}: {c} vs {want}")
            record(row)
            log(f"{name} {row['task']} np {P}: wall {wall:.1f} s, cpu {cpu:.1f} s, solve "
                f"{row['solve_s']:.1f} s, {row['iterations']} CG iterations")

    table(results)
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)
    log(f"wrote {out_path}")


if __name__ == "__main__":
    main()
