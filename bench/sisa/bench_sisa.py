#!/usr/bin/env python3
"""SISA's price and payoff, side by side (issue 16; docs/unlearning.md, "SISA").

    /usr/bin/python3 bench/sisa/bench_sisa.py --lethe build/tools/lethe [--n 10000]
        [--shards 1,5,10,20] [--slices 1,4] [--requests 20] [--models softmax,mlp]

On digits784 (bench/compare/common.py), for each model and each S × R: the time of
`lethe sisa train`, the ensemble's test accuracy (against the single model, S = R = 1), the
mean wall time of `lethe sisa unlearn` of one random id over --requests requests in a row
(each served on the ensemble the previous one left), and of one request of 1% of n; for the
convex model, a Newton patch (`lethe unlearn`, default settings) of the first request's id
on the single model: its time and its distance to the exact retrain, relative to the
original's (‖θ_patch − θ_retrained‖ / ‖θ_orig − θ_retrained‖). Speed-ups are against full
retraining of the single model (S = R = 1's train time), the baseline a user without SISA
pays per request. Prints a markdown table; --json writes the rows.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compare"))
from common import digits784, run, theta_of  # noqa: E402

SPECS = {
    "softmax": ({"format": "lethe/1", "loss": "cross_entropy", "l2": 1e-3,
                 "layers": [{"type": "linear", "weight": "w", "bias": "b", "out": 10}]},
                ["--optimizer", "lbfgs"]),
    "mlp": ({"format": "lethe/1", "loss": "cross_entropy", "l2": 1e-4,
             "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 64},
                        {"type": "tanh"},
                        {"type": "linear", "weight": "2.weight", "bias": "2.bias", "out": 10}]},
            ["--optimizer", "adam", "--epochs", "20", "--batch-size", "128"]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lethe", required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--shards", default="1,5,10,20")
    ap.add_argument("--slices", default="1,4")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--models", default="softmax,mlp")
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
    rng = np.random.default_rng(a.seed + 1)
    singles = rng.choice(ids, size=a.requests, replace=False)
    rest = np.setdiff1d(ids, singles)
    batch = rng.choice(rest, size=max(1, a.n // 100), replace=False)
    rows = []
    for model in a.models.split(","):
        spec_json, options = SPECS[model]
        spec = os.path.join(work, model + ".json")
        with open(spec, "w") as f:
            json.dump(spec_json, f)
        single_train = None
        for S in map(int, a.shards.split(",")):
            for R in map(int, a.slices.split(",")):
                d = os.path.join(work, f"{model}-{S}x{R}")
                t_train, _ = run([lethe, "sisa", "train", "--spec", spec, "--data", train,
                                  "--shards", str(S), "--slices", str(R), "--out", d, "--quiet",
                                  "--seed", str(a.seed), *options])
                if S == 1 and R == 1:
                    single_train = t_train
                    original = os.path.join(work, f"{model}-single.safetensors")
                    shutil.copy(os.path.join(d, "s0-r0-g0.safetensors"), original)
                _, out = run([lethe, "eval", "--model", d, "--data", test, "--json", "--quiet"])
                accuracy = json.loads(out)["accuracy"]
                times, retrain = [], []
                for k, i in enumerate(singles):
                    t, out = run([lethe, "sisa", "unlearn", "--model", d, "--forget-ids", str(i),
                                  "--json", "--quiet"])
                    times.append(t)
                    retrain.append(json.loads(out)["retrain_seconds"])
                    if S == 1 and R == 1 and k == 0:
                        exact_after_first = os.path.join(work, f"{model}-retrained.safetensors")
                        shutil.copy(os.path.join(d, json.loads(out)["retrained"][0]["checkpoints"][-1]["file"]),
                                    exact_after_first)
                t_batch, _ = run([lethe, "sisa", "unlearn", "--model", d, "--forget-ids",
                                  ",".join(map(str, batch)), "--json", "--quiet"])
                row = {"model": model, "S": S, "R": R, "train_s": t_train, "accuracy": accuracy,
                       "single_request_s": float(np.mean(times)),
                       "single_request_retrain_s": float(np.mean(retrain)),
                       "batch_1pct_s": t_batch}
                if single_train:
                    row["single_speedup"] = single_train / row["single_request_s"]
                    row["batch_speedup"] = single_train / t_batch
                rows.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(d)
        if model == "softmax" and single_train:
            patched = os.path.join(work, "patched.safetensors")
            t, _ = run([lethe, "unlearn", "--model", original, "--train", train, "--forget-ids",
                        str(singles[0]), "--out", patched, "--quiet"])
            o, p, r = (theta_of(x) for x in (original, patched, exact_after_first))
            rows.append({"model": model, "newton_single_request_s": t,
                         "newton_relative_distance": float(np.linalg.norm(p - r) / np.linalg.norm(o - r)),
                         "newton_speedup": single_train / t})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| model | S | R | train s | test acc | single req s | speed-up | 1% batch s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "S" in r:
            print(f"| {r['model']} | {r['S']} | {r['R']} | {r['train_s']:.2f} | {100 * r['accuracy']:.2f} % "
                  f"| {r['single_request_s']:.3f} | {r.get('single_speedup', 0):.1f}× "
                  f"| {r['batch_1pct_s']:.3f} | {r.get('batch_speedup', 0):.1f}× |")
        else:
            print(f"| {r['model']} Newton patch (single model) | | | | | {r['newton_single_request_s']:.3f} "
                  f"| {r['newton_speedup']:.1f}× | | rel. distance to retrain {r['newton_relative_distance']:.2e} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
