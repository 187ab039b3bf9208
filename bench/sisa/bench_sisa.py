#!/usr/bin/env python3
"""SISA's price and payoff against full retraining and the Newton patch (issue 16).

    /usr/bin/python3 bench/sisa/bench_sisa.py --lethe build/tools/lethe [--n 10000]
        [--shards 1,5,10,20] [--slices 1,4] [--requests 20] [--models softmax,mlp]
        [--parts sisa,newton] [--softmax-tolerance 1e-9] [--adam-epochs 20] [--json rows.json]

On digits784 (bench/compare/common.py; n training and --test test examples), for each model
(`softmax`: convex, 784 → 10, l2 = 1e-3, L-BFGS to ‖∇L‖ ≤ --softmax-tolerance; `softmax-adam`:
the same objective, trained by Adam as the MLP is; `mlp`: 784 → 64 → tanh → 10, l2 = 1e-4;
Adam for --adam-epochs epochs, batches of 128):

1. The single model and the Newton patch (docs/unlearning.md). `lethe train` of the single
   model on all n examples (the original), and again without the first request's id and
   without a batch of 1% of n (the exact retrains: full retraining, from the same seed).
   `lethe unlearn` (default settings: one Newton step, CG) of the same two requests on the
   original: its time, and its distance to the retrain relative to the original's,
   ‖θ_patch − θ_retrained‖ / ‖θ_orig − θ_retrained‖ (0: the patch is the retrain; 1: it
   moved no closer than the original). For the convex softmax the retrain is the unique
   optimum of the kept objective, so this distance is the patch's error. For the MLP it is
   not: Adam's retrain is one draw of a training run (removing one id changes every later
   minibatch), the Adam-trained original is not at a stationary point (the patch also
   "finishes training"), and the retrain and the patch sit in different places of a
   non-convex landscape; the distance then says how far the patch is from *that* retrain,
   not how well it removed the id, and the test accuracies are the comparable numbers.
2. SISA, for each S × R: `lethe sisa train` time, the ensemble's test accuracy and its cost
   against the single model (S = R = 1), the mean time of `lethe sisa unlearn` of one
   random id over --requests requests in a row (each served on the ensemble the previous one
   left), and of one request of the same 1% batch (served after them).

The baseline a user without SISA pays per request is full retraining of the single model:
for the SISA rows, S = R = 1's request times (each a retrain from scratch on the kept data, by
the same code; the mean of --requests of them for a single id); for the Newton rows, `lethe
train --forget-ids` of the same request. Both are measured in the same run. Every time is of
the whole command, as wall time and as CPU time (user + system, all threads): on a shared
machine the CPU time is the one to compare. --parts and subsets of --shards/--slices split
the grid over several processes (the same --seed gives the same data and requests); a subset
without S = R = 1 has no speed-ups of its own. Progress on stderr; a markdown table on
stdout; --json writes the rows as they come.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compare"))
from common import digits784, theta_of  # noqa: E402


def run(cmd):
    """(wall seconds, CPU seconds, stdout) of a command that must succeed. CPU seconds: user +
    system of all its threads, from the kernel's accounting of the waited-for child. On a shared
    machine the wall time measures the load as much as the work; the CPU time measures the work."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    wall = time.perf_counter() - t
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r.ru_utime + r.ru_stime - run.cpu
    run.cpu += cpu
    if p.returncode:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{err}")
    return wall, cpu, out


run.cpu = 0.0


def specs(a):
    """model → (spec, training options shared by `lethe train` and `lethe sisa train`)."""
    softmax = {"format": "lethe/1", "loss": "cross_entropy", "l2": 1e-3,
               "layers": [{"type": "linear", "weight": "w", "bias": "b", "out": 10}]}
    mlp = {"format": "lethe/1", "loss": "cross_entropy", "l2": 1e-4,
           "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 64},
                      {"type": "tanh"},
                      {"type": "linear", "weight": "2.weight", "bias": "2.bias", "out": 10}]}
    adam = ["--optimizer", "adam", "--epochs", str(a.adam_epochs), "--batch-size", "128"]
    return {"softmax": (softmax, ["--optimizer", "lbfgs", "--tolerance", str(a.softmax_tolerance)]),
            "softmax-adam": (softmax, adam),
            "mlp": (mlp, adam)}


T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:6.0f} s] {msg}", file=sys.stderr, flush=True)


class Results:
    """The rows, printed as they come and (--json) rewritten after each, so that a long run
    that is stopped keeps what it finished."""

    def __init__(self, path):
        self.path, self.rows = path, []

    def add(self, row):
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        if self.path:
            with open(self.path, "w") as f:
                json.dump(self.rows, f, indent=1)


def accuracy(lethe, model, test):
    return json.loads(run([lethe, "eval", "--model", model, "--data", test, "--json", "--quiet"])[2])["accuracy"]


def newton_part(a, lethe, work, model, spec, options, train, test, requests, results):
    """The single model, its exact retrains and the Newton patch of each request."""
    seed = ["--seed", str(a.seed)]
    original = os.path.join(work, f"{model}-original.safetensors")
    t_train, c_train, _ = run([lethe, "train", "--spec", spec, "--data", train, "--out", original,
                               "--quiet", *seed, *options])
    acc_original = accuracy(lethe, original, test)
    log(f"{model}: single model trained in {t_train:.1f} s ({c_train:.1f} CPU s), test accuracy {acc_original:.4f}")
    for kind, ids in requests:
        forget = ",".join(map(str, ids))
        retrained = os.path.join(work, f"{model}-retrained-{kind}.safetensors")
        t_retrain, c_retrain, _ = run([lethe, "train", "--spec", spec, "--data", train, "--out", retrained,
                                       "--forget-ids", forget, "--quiet", *seed, *options])
        log(f"{model}: {kind} (k = {len(ids)}): retrained in {t_retrain:.1f} s ({c_retrain:.1f} CPU s)")
        patched = os.path.join(work, f"{model}-patched-{kind}.safetensors")
        report = os.path.join(work, f"{model}-patched-{kind}.json")
        t_patch, c_patch, _ = run([lethe, "unlearn", "--model", original, "--train", train, "--forget-ids",
                                   forget, "--out", patched, "--report", report, "--quiet"])
        with open(report) as f:
            record = json.load(f)
        step = record["steps"][0]
        o, p, r = (theta_of(x) for x in (original, patched, retrained))
        row = {"model": model, "part": "newton", "request": kind, "k": len(ids),
               "train_single_s": t_train, "train_single_cpu_s": c_train,
               "retrain_s": t_retrain, "retrain_cpu_s": c_retrain,
               "newton_s": t_patch, "newton_cpu_s": c_patch,
               "newton_speedup": t_retrain / t_patch, "newton_cpu_speedup": c_retrain / c_patch,
               "newton_solve_iterations": step["solve"]["iterations"],
               "newton_solve_s": step["solve"]["seconds"],
               "newton_damping": step["damping"], "newton_action": step["action"],
               "kept_grad_norm_before": record["kept_grad_norm_before"],
               "kept_grad_norm_after": record["kept_grad_norm_after"],
               "relative_distance": float(np.linalg.norm(p - r) / np.linalg.norm(o - r)),
               "original_to_retrained": float(np.linalg.norm(o - r)),
               "accuracy_original": acc_original,
               "accuracy_retrained": accuracy(lethe, retrained, test),
               "accuracy_patched": accuracy(lethe, patched, test)}
        log(f"{model}: {kind}: Newton patch {t_patch:.1f} s ({c_patch:.1f} CPU s), relative distance "
            f"{row['relative_distance']:.3g}")
        results.add(row)


def grid_order(a):
    """S = R = 1 (the baseline) first, then from the cheapest to the dearest, so that a run
    stopped early has the baseline and the configurations the targets are about."""
    grid = [(S, R) for S in map(int, a.shards.split(",")) for R in map(int, a.slices.split(","))]
    return sorted(grid, key=lambda c: (c != (1, 1), -c[0], c[1]))


def sisa_part(a, lethe, work, model, spec, options, train, test, singles, batch, results):
    """Every S × R: train, evaluate, --requests single-id deletions in a row, then the 1% batch."""
    base = None
    for S, R in grid_order(a):
        d = os.path.join(work, f"{model}-{S}x{R}")
        t_train, c_train, _ = run([lethe, "sisa", "train", "--spec", spec, "--data", train, "--shards", str(S),
                                   "--slices", str(R), "--out", d, "--quiet", "--seed", str(a.seed), *options])
        acc = accuracy(lethe, d, test)
        log(f"{model} S={S} R={R}: trained in {t_train:.1f} s ({c_train:.1f} CPU s), test accuracy {acc:.4f}")
        wall, cpu, retrain = [], [], []
        for k, i in enumerate(singles):
            t, c, out = run([lethe, "sisa", "unlearn", "--model", d, "--forget-ids", str(i), "--json", "--quiet"])
            wall.append(t)
            cpu.append(c)
            retrain.append(json.loads(out)["retrain_seconds"])
            if S == 1 or k + 1 == len(singles):
                log(f"{model} S={S} R={R}: request {k + 1}/{len(singles)} in {t:.1f} s ({c:.1f} CPU s)")
        t_batch, c_batch, _ = run([lethe, "sisa", "unlearn", "--model", d, "--forget-ids",
                                   ",".join(map(str, batch)), "--json", "--quiet"])
        log(f"{model} S={S} R={R}: 1% batch ({len(batch)} ids) in {t_batch:.1f} s ({c_batch:.1f} CPU s)")
        row = {"model": model, "part": "sisa", "S": S, "R": R, "train_s": t_train, "train_cpu_s": c_train,
               "accuracy": acc, "requests": len(wall),
               "single_request_s": float(np.mean(wall)), "single_request_sd_s": float(np.std(wall)),
               "single_request_cpu_s": float(np.mean(cpu)),
               "single_request_retrain_s": float(np.mean(retrain)),
               "batch_1pct_s": t_batch, "batch_1pct_cpu_s": c_batch}
        if (S, R) == (1, 1):
            base = row
        if base:  # against full retraining of the single model, measured in this run
            row["accuracy_cost"] = base["accuracy"] - acc
            row["single_speedup"] = base["single_request_s"] / row["single_request_s"]
            row["single_cpu_speedup"] = base["single_request_cpu_s"] / row["single_request_cpu_s"]
            row["batch_speedup"] = base["batch_1pct_s"] / t_batch
            row["batch_cpu_speedup"] = base["batch_1pct_cpu_s"] / c_batch
        results.add(row)
        shutil.rmtree(d)


def table(rows):
    nan = float("nan")
    print("\n| model | S | R | train (s) | test acc | cost vs single | one id: wall s (mean) | speed-up "
          "| CPU s | speed-up | 1% of n: wall s | speed-up | CPU s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["part"] == "sisa":
            print(f"| {r['model']} | {r['S']} | {r['R']} | {r['train_s']:.1f} | {100 * r['accuracy']:.2f} % "
                  f"| {100 * r.get('accuracy_cost', nan):+.2f} pt | {r['single_request_s']:.2f} "
                  f"| {r.get('single_speedup', nan):.1f}× | {r['single_request_cpu_s']:.2f} "
                  f"| {r.get('single_cpu_speedup', nan):.1f}× | {r['batch_1pct_s']:.1f} "
                  f"| {r.get('batch_speedup', nan):.1f}× | {r['batch_1pct_cpu_s']:.1f} "
                  f"| {r.get('batch_cpu_speedup', nan):.1f}× |")
    print("\n| model | request | retrain: wall s / CPU s | Newton patch: wall s / CPU s | speed-up (wall / CPU) "
          "| relative distance | test acc original / retrained / patched |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["part"] == "newton":
            print(f"| {r['model']} | {r['request']} (k = {r['k']}) | {r['retrain_s']:.1f} / {r['retrain_cpu_s']:.1f} "
                  f"| {r['newton_s']:.1f} / {r['newton_cpu_s']:.1f} "
                  f"| {r['newton_speedup']:.1f}× / {r['newton_cpu_speedup']:.1f}× | {r['relative_distance']:.3g} "
                  f"| {100 * r['accuracy_original']:.2f} / {100 * r['accuracy_retrained']:.2f} / "
                  f"{100 * r['accuracy_patched']:.2f} % |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lethe", required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--shards", default="1,5,10,20")
    ap.add_argument("--slices", default="1,4")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--models", default="softmax,mlp")
    ap.add_argument("--parts", default="sisa,newton", help="sisa (the S × R grid), newton (the patch), or both")
    ap.add_argument("--softmax-tolerance", type=float, default=1e-9)
    ap.add_argument("--adam-epochs", type=int, default=20, help="mlp and softmax-adam")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    lethe = os.path.abspath(a.lethe)
    work = tempfile.mkdtemp(prefix="bench_sisa_")
    X, y = digits784(a.n + a.test, a.seed)
    ids = np.arange(a.n, dtype=np.int64)
    train, test = os.path.join(work, "train.npz"), os.path.join(work, "test.npz")
    np.savez(train, X=X[:a.n], y=y[:a.n], ids=ids)
    np.savez(test, X=X[a.n:], y=y[a.n:])
    # The same requests in every part and run with the same --seed: --requests random ids,
    # then 1% of n others.
    rng = np.random.default_rng(a.seed + 1)
    singles = rng.choice(ids, size=a.requests, replace=False)
    batch = np.sort(rng.choice(np.setdiff1d(ids, singles), size=max(1, a.n // 100), replace=False))
    results = Results(a.json)
    for model in a.models.split(","):
        spec_json, options = specs(a)[model]
        spec = os.path.join(work, model + ".json")
        with open(spec, "w") as f:
            json.dump(spec_json, f)
        for part in a.parts.split(","):
            if part == "sisa":
                sisa_part(a, lethe, work, model, spec, options, train, test, singles, batch, results)
            elif part == "newton":
                newton_part(a, lethe, work, model, spec, options, train, test,
                            [("single id", singles[:1]), ("1% batch", batch)], results)
            else:
                sys.exit(f"unknown part {part} (sisa, newton)")
    table(results.rows)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
