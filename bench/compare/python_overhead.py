#!/usr/bin/env python3
"""What `import lethe` costs over the lethe CLI: influence on digits784, same threads, one run.

    PYTHONPATH=build/python /usr/bin/python3 bench/compare/python_overhead.py \
        --lethe build/tools/lethe [--n 10000] [--m 10] [--threads 2] [--rounds 3] [--solver direct]

The data are written once as .npz (bench/compare/common.py's digits784) and a softmax
regression 784 → 10 (l2 = 1e-3) is trained on them by `lethe train`. Then, alternating, each
round runs in fresh processes:
  cli     `lethe influence --json` on the .npz files (reads and converts them, solves, writes .npy)
  python  np.load of the same files, then lethe.influence on the arrays (X viewed, not copied)
and records wall seconds, the solver's own seconds, and each process's peak RSS (wait4). The
Python process also reports its RSS before the call (numpy's arrays already loaded): its
growth during the call against the data's size shows that the module adds no copy of X (the
engine's own device copy is the one X-sized buffer). Scores must be identical.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import digits784  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import numpy as np
import lethe
train, test, model_path, out, threads, solver, ids = sys.argv[1:8]
t0 = time.perf_counter()
tr, te = np.load(train), np.load(test)
X, y, i = tr["X"], tr["y"], tr["ids"]
Xt, yt, it = te["X"], te["y"], te["ids"]
model = lethe.Model(model_path)
t1 = time.perf_counter()
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = lethe.Data(X, y, i, name="train")
r = lethe.influence(model, data, (Xt, yt, it), test_ids=[int(v) for v in ids.split(",")],
                    threads=int(threads), solver=solver)
t2 = time.perf_counter()
np.save(out, r["scores"])
print(json.dumps({"load": t1 - t0, "call": t2 - t1, "solver": r["solver"]["seconds"],
                  "setup": r["solver"].get("setup_seconds", 0), "zero_copy": data.zero_copy,
                  "rss_before_kb": rss_before}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lethe", required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--m", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--solver", default="direct")
    ap.add_argument("--model", help="a trained model for these data (else trained here)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lethe_pyoverhead_")
    X, y = digits784(args.n, 0)
    Xt, yt = digits784(max(args.m, 100), 1)
    train, test = os.path.join(tmp, "train.npz"), os.path.join(tmp, "test.npz")
    np.savez(train, X=X, y=y.astype(np.int64), ids=np.arange(args.n, dtype=np.int64))
    np.savez(test, X=Xt, y=yt.astype(np.int64), ids=np.arange(len(yt), dtype=np.int64))
    model = args.model
    if not model:
        model = os.path.join(tmp, "model.safetensors")
        spec = os.path.join(tmp, "softmax.json")
        json.dump({"format": "lethe/1", "layers": [{"type": "linear", "out": 10}],
                   "loss": "cross_entropy", "l2": 1e-3}, open(spec, "w"))
        t, _, _ = timed_rusage([args.lethe, "train", "--spec", spec, "--data", train, "--out", model,
                         "--threads", str(args.threads), "--quiet"])
        print(f"trained {model} in {t:.1f} s")
    ids = ",".join(str(i) for i in range(args.m))
    rows = {"cli": [], "python": []}
    for r in range(args.rounds):
        out = os.path.join(tmp, "cli.npy")
        wall, stdout, _ = timed_rusage([args.lethe, "influence", "--model", model, "--train", train,
                                        "--test", test, "--test-ids", ids, "--solver", args.solver,
                                        "--threads", str(args.threads), "--out", out, "--json", "--quiet"])
        j = json.loads(stdout[0])
        rows["cli"].append({"wall": wall, "solver": j["solver"]["seconds"],
                            "setup": j["solver"].get("setup_seconds", 0), "rss": stdout[1]})
        pout = os.path.join(tmp, "py.npy")
        wall, stdout, _ = timed_rusage([sys.executable, "-c", CHILD, train, test, model, pout,
                                        str(args.threads), args.solver, ids])
        j = json.loads(stdout[0].strip().splitlines()[-1])
        rows["python"].append({"wall": wall, "call": j["call"], "load": j["load"],
                               "solver": j["solver"], "setup": j["setup"], "rss": stdout[1],
                               "rss_before": j["rss_before_kb"], "zero_copy": j["zero_copy"]})
        same = np.array_equal(np.load(out), np.load(pout))
        print(f"round {r + 1}: cli {rows['cli'][-1]['wall']:.2f} s, python call "
              f"{rows['python'][-1]['call']:.2f} s, scores identical: {same}")
        if not same:
            sys.exit("the scores differ")
    med = lambda side, key: statistics.median(x[key] for x in rows[side])  # noqa: E731
    x_mb = args.n * 784 * 8 / 2**20
    print(f"\ndigits784 n = {args.n}, m = {args.m}, solver {args.solver}, {args.threads} threads, "
          f"medians of {args.rounds} rounds (X: {x_mb:.1f} MiB as float64)")
    print(f"  cli     wall {med('cli', 'wall'):.3f} s   solve {med('cli', 'solver'):.3f} s "
          f"(setup {med('cli', 'setup'):.3f} s)   peak RSS {med('cli', 'rss') / 1024:.1f} MiB")
    print(f"  python  call {med('python', 'call'):.3f} s   solve {med('python', 'solver'):.3f} s "
          f"(setup {med('python', 'setup'):.3f} s)   np.load {med('python', 'load'):.3f} s   "
          f"process wall {med('python', 'wall'):.3f} s")
    print(f"          peak RSS {med('python', 'rss') / 1024:.1f} MiB, of which before the call "
          f"{med('python', 'rss_before') / 1024:.1f} MiB: the call added "
          f"{(med('python', 'rss') - med('python', 'rss_before')) / 1024:.1f} MiB; "
          f"X viewed without a copy: {all(x['zero_copy'] for x in rows['python'])}")
    # the solver's seconds include its setup (the K-FAC factors, a factorisation)
    over = med('python', 'call') - med('python', 'solver')
    over_cli = med('cli', 'wall') - med('cli', 'solver')
    print(f"  time outside the solve: python call {over:.3f} s, cli process {over_cli:.3f} s")


def timed_rusage(cmd):
    """(wall s, (stdout, peak RSS kB), None) of a child that must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status:
        sys.exit(f"failed: {' '.join(cmd[:4])} ...\n{err}")
    return wall, (out, usage.ru_maxrss), None


if __name__ == "__main__":
    main()
