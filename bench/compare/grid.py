#!/usr/bin/env python3
"""The benchmark grids of docs/performance.md, lethe against itself (compare.py holds PyTorch):

1. influence of all n training examples on m = 1, 10, 100 test examples with every solver,
   timed, and each solver's scores for the first (up to) 10 test examples against a
   reference, CG to a relative residual of 1e-10: Spearman rank correlation (mean and worst
   over test examples) and max |difference| / max |reference|. The direct solver forms the
   p × p matrix by p Hessian-vector products (p = 7,850 for the softmax regression): it runs
   where --solvers names it (minutes on a CPU at n = 10,000);
2. unlearning (`lethe unlearn`, one Newton step, its defaults) against retraining from scratch
   with the same optimiser and tolerance as the original training (`lethe train --forget`),
   for k = 1, 1% and 10% of n, with the relative parameter error
   ‖θ_patched − θ_ref‖ / ‖θ_original − θ_ref‖. θ_ref is the from-scratch retrain for the
   convex softmax regression (its optimum is unique) and a retrain warm-started from the
   original weights for the MLP (from scratch it lands in another basin).

Models: softmax regression 784 → 10 and an MLP 784-256-10 (relu), cross-entropy, l2 1e-3.
Times are wall clock of the whole command (process start, reading the data, writing the
output) and, in brackets, the computation lethe reports. One run, one machine, one setting.

    /usr/bin/python3 bench/compare/grid.py --lethe build/tools/lethe [--n 10000]
        [--data digits784|synthetic] [--device cpu|cuda] [--threads N] [--models softmax,mlp]
        [--solvers cg,cg-plain,lissa,lissa-plain,lanczos] [--ms 1,10,100]
        [--skip softmax/lissa/100,...] [--timeout 300] [--ks 1,0.01,0.1] [--no-influence]
        [--no-unlearn] [--mlp-iterations 2000] [--json results.json]

`-plain` after cg or lissa means `--preconditioner none` (both use K-FAC by default for the
softmax regression).
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Timeout, make as make_data, run, theta_of  # noqa: E402

SPECS = {
    "softmax": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 10}],
    "mlp": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 256},
            {"type": "relu"},
            {"type": "linear", "weight": "2.weight", "bias": "2.bias", "out": 10}],
}
# The MLP is trained to a looser tolerance and an iteration limit (--mlp-iterations; its
# L-BFGS run would otherwise dominate), and its Hessian is indefinite: its solves use the
# Gauss-Newton matrix with a little damping.
TRAIN_ARGS = {"softmax": [], "mlp": ["--tolerance", "1e-6"]}
SOLVE_ARGS = {"softmax": [], "mlp": ["--curvature", "gauss-newton", "--damping", "1e-3"]}
# A rank-100 Lanczos approximation inverts the discarded spectrum as 1/λ: it needs λ > 0.
EXTRA_ARGS = {("softmax", "lanczos"): ["--damping", "1e-3"]}


def solver_args(solver):
    """cg-plain, lissa-plain: --preconditioner none (`cg` and `lissa` use K-FAC by default for
    the softmax regression)."""
    if solver.endswith("-plain"):
        return ["--solver", solver[:-len("-plain")], "--preconditioner", "none"]
    return ["--solver", solver]


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lethe", required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--data", default="digits784")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", default="softmax,mlp")
    ap.add_argument("--solvers", default="direct,cg,cg-plain,lissa,lanczos",
                    help="direct is left out for the MLP (p = 203,530)")
    ap.add_argument("--skip", default="", help="model/solver/m triples to leave out, e.g. softmax/lissa/100")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per command")
    ap.add_argument("--mlp-iterations", type=int, default=2000, help="MLP training iteration limit")
    ap.add_argument("--ks", default="1,0.01,0.1",
                    help="forget-set sizes: counts (≥ 1) or fractions of n (< 1)")
    ap.add_argument("--ms", default="1,10,100", help="numbers of test examples")
    ap.add_argument("--no-influence", action="store_true", help="unlearning only")
    ap.add_argument("--no-unlearn", action="store_true", help="influence only")
    ap.add_argument("--json", help="write every measurement here")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    TRAIN_ARGS["mlp"] += ["--max-iterations", str(args.mlp_iterations)]
    L = [args.lethe]
    common = ["--device", args.device, "--threads", str(args.threads), "--quiet"]
    tmp = tempfile.mkdtemp()
    X, y = make_data(args.data, args.n, 0)
    Xt, yt = make_data(args.data, 100, 1)
    train, test = os.path.join(tmp, "train.npz"), os.path.join(tmp, "test.npz")
    np.savez(train, X=X, y=y.astype(np.int64), ids=np.arange(args.n, dtype=np.int64))
    np.savez(test, X=Xt, y=yt.astype(np.int64), ids=np.arange(100000, 100100, dtype=np.int64))
    results = {"n": args.n, "data": args.data, "device": args.device, "threads": args.threads,
               "influence": [], "unlearn": [], "train": {}}

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)

    print(f"# {args.data} {args.n} × 784, 10 classes; device {args.device}, {args.threads} threads",
          flush=True)
    for name in args.models.split(","):
        spec = os.path.join(tmp, f"{name}.json")
        with open(spec, "w") as f:
            json.dump({"format": "lethe/1", "layers": SPECS[name], "loss": "cross_entropy",
                       "l2": 1e-3}, f)
        model = os.path.join(tmp, f"{name}.safetensors")
        wall, out = run(L + ["train", "--spec", spec, "--data", train, "--out", model, "--json"]
                        + TRAIN_ARGS[name] + common, None)
        tr = json.loads(out)
        results["train"][name] = dict(tr, wall=wall)
        print(f"\n## {name} (p = {tr['num_params']}): trained in {wall:.1f} s [{tr['seconds']:.1f} s], "
              f"{tr['optimizer']}, {tr['iterations']} iterations, ‖∇L‖ {tr['grad_norm']:.1e}", flush=True)

        # 1. influence grid
        if not args.no_influence:
            ref_path = os.path.join(tmp, f"{name}_ref.npy")
            ref_args = ["--solver", "cg", "--cg-tolerance", "1e-10", "--cg-max-iterations", "5000"]
            ref_ids = ",".join(str(100000 + j) for j in range(10))
            wall, _ = run(L + ["influence", "--model", model, "--train", train, "--test", test,
                               "--test-ids", ref_ids, "--out", ref_path] + ref_args + SOLVE_ARGS[name]
                          + common, None)
            ref = np.load(ref_path)
            print(f"reference scores ({' '.join(ref_args + SOLVE_ARGS[name])}, m = 10): {wall:.1f} s\n",
                  flush=True)
            print("| solver | m | time [solve] | Spearman vs reference (mean, worst) | max rel. difference "
                  "| termination |")
            print("|---|---|---|---|---|---|", flush=True)
            solvers = [v for v in args.solvers.split(",") if not (name == "mlp" and v == "direct")]
            for solver in solvers:
                for m in map(int, args.ms.split(",")):
                    if f"{name}/{solver}/{m}" in skip:
                        continue
                    out_path = os.path.join(tmp, f"{name}_{solver}_{m}.npy")
                    ids = ",".join(str(100000 + j) for j in range(m))
                    try:
                        wall, out = run(L + ["influence", "--model", model, "--train", train, "--test", test,
                                             "--test-ids", ids, "--out", out_path,
                                             "--json", "--allow-inexact"] + solver_args(solver)
                                        + SOLVE_ARGS[name]
                                        + EXTRA_ARGS.get((name, solver), []) + common,
                                        args.timeout)
                    except Timeout:
                        print(f"| {solver} | {m} | > {args.timeout:.0f} s (stopped) | | |", flush=True)
                        results["influence"].append({"model": name, "solver": solver, "m": m,
                                                     "timeout": args.timeout})
                        save()
                        continue
                    info = json.loads(out)["solver"]
                    c = min(m, 10)
                    scores = np.load(out_path)[:c]
                    rhos = [spearman(scores[j], ref[j]) for j in range(c)]
                    err = float(np.max(np.abs(scores - ref[:c])) / np.max(np.abs(ref[:c])))
                    results["influence"].append({"model": name, "solver": solver, "m": m, "wall": wall,
                                                 "solve": info, "spearman_mean": float(np.mean(rhos)),
                                                 "spearman_min": float(np.min(rhos)), "max_rel_diff": err})
                    save()
                    print(f"| {solver} | {m} | {wall:.2f} s [{info['seconds']:.2f} s] | "
                          f"{np.mean(rhos):.4f}, {np.min(rhos):.4f} | {err:.1e} | "
                          f"{info['termination']}, {info['iterations']} it., residual "
                          f"{info.get('relative_residual', float('nan')):.1e} |", flush=True)

        # 2. unlearning against retraining
        if args.no_unlearn:
            continue
        rng = np.random.default_rng(2)
        theta0 = theta_of(model)
        print("\n| k | lethe unlearn [patch] | rel. error | retrain from scratch [train] | speedup (wall, compute) |")
        print("|---|---|---|---|---|", flush=True)
        for frac in map(float, args.ks.split(",")):
            k = int(frac) if frac >= 1 else max(1, int(round(frac * args.n)))
            forget = os.path.join(tmp, f"forget_{name}_{k}.txt")
            with open(forget, "w") as f:
                f.write("".join(f"{i}\n" for i in rng.choice(args.n, k, replace=False)))
            patched = os.path.join(tmp, "patched.safetensors")
            scratch = os.path.join(tmp, "scratch.safetensors")
            t_un, out = run(L + ["unlearn", "--model", model, "--train", train, "--forget", forget,
                                 "--out", patched, "--json"] + common, None)
            rep = json.loads(out)
            t_re, out = run(L + ["train", "--spec", spec, "--data", train, "--forget", forget,
                                 "--out", scratch, "--json"] + TRAIN_ARGS[name] + common, None)
            re = json.loads(out)
            reference = scratch
            if name != "softmax":
                reference = os.path.join(tmp, "warm.safetensors")
                run(L + ["train", "--init", model, "--data", train, "--forget", forget, "--out",
                         reference] + TRAIN_ARGS[name] + common, None)
            tp, tr_ = theta_of(patched), theta_of(reference)
            rel = float(np.linalg.norm(tp - tr_) / np.linalg.norm(theta0 - tr_))
            results["unlearn"].append({"model": name, "k": k, "unlearn_wall": t_un,
                                       "unlearn_seconds": rep["seconds"], "rel_error": rel,
                                       "retrain_wall": t_re, "retrain_seconds": re["seconds"],
                                       "retrain_iterations": re["iterations"],
                                       "solver": rep.get("solver"), "steps": rep["steps"]})
            save()
            print(f"| {k} | {t_un:.2f} s [{rep['seconds']:.2f} s] | {rel:.1e} | {t_re:.2f} s "
                  f"[{re['seconds']:.2f} s, {re['iterations']} it.] | {t_re / t_un:.1f}×, "
                  f"{re['seconds'] / rep['seconds']:.1f}× |", flush=True)
    save()


if __name__ == "__main__":
    main()
