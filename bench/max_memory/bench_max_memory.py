#!/usr/bin/env python3
"""Streamed training data (--max-memory) against held, on digits784 (bench/compare/common.py).

    /usr/bin/python3 bench/max_memory/bench_max_memory.py --lethe build/tools/lethe \\
        [--n 60000] [--max-memory 256M] [--threads 2]

Writes train.npz (n × 784 float32, numpy.savez: stored), fits a softmax regression to its
first 5000 rows, then times under /usr/bin/time -v, held and streamed: `eval` and
`influence` (10 test examples, CG with K-FAC) and `unlearn` (Newton, 10 ids). Prints wall
and user+sys seconds, peak RSS, and whether the outputs are byte-identical. Not a test:
numbers for docs/performance.md.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compare"))
from common import digits784  # noqa: E402

SPEC = {"format": "lethe/1", "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias",
                                         "out": 10}], "loss": "cross_entropy", "l2": 0.001}


def timed(cmd):
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    def field(name):
        return re.search(re.escape(name) + r": (.*)", r.stderr).group(1).strip()
    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return seconds, cpu, int(field("Maximum resident set size (kbytes)")) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lethe", required=True)
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--max-memory", default="256M")
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        p = lambda name: os.path.join(d, name)  # noqa: E731
        X, y = digits784(a.n + 10, 1)
        ids = np.arange(a.n + 10, dtype=np.int64)
        np.savez(p("train.npz"), X=X[:a.n].astype(np.float32), y=y[:a.n].astype(np.int64), ids=ids[:a.n])
        np.savez(p("test.npz"), X=X[a.n:].astype(np.float32), y=y[a.n:].astype(np.int64), ids=ids[a.n:])
        np.savez(p("fit.npz"), X=X[:5000].astype(np.float32), y=y[:5000].astype(np.int64), ids=ids[:5000])
        with open(p("spec.json"), "w") as f:
            json.dump(SPEC, f)
        common = ["--quiet", "--threads", a.threads]
        subprocess.run([a.lethe, "train", "--spec", p("spec.json"), "--data", p("fit.npz"), "--out",
                        p("m.safetensors"), *common], check=True, capture_output=True)
        jobs = {
            "eval": (["eval", "--model", p("m.safetensors"), "--data", p("train.npz"), "--json"], None),
            "influence cg, m = 10": (["influence", "--model", p("m.safetensors"), "--train", p("train.npz"),
                                      "--test", p("test.npz"), "--solver", "cg", "--allow-inexact"], ".csv"),
            "unlearn newton, 10 ids": (["unlearn", "--model", p("m.safetensors"), "--train", p("train.npz"),
                                        "--forget-ids", ",".join(str(i) for i in range(0, 5000, 500))],
                                       ".safetensors"),
        }
        print(f"n = {a.n}, d = 784, X float32 in the file ({os.path.getsize(p('train.npz')) / 2**20:.0f} MiB), "
              f"--max-memory {a.max_memory}, --threads {a.threads}, load average {os.getloadavg()}")
        for name, (args, ext) in jobs.items():
            rows = []
            outputs = []
            for mode, extra in [("held", []), ("streamed", ["--max-memory", a.max_memory])]:
                out = [] if ext is None else ["--out", p(mode + (ext or ""))]
                rows.append((mode, *timed([a.lethe, *args, *out, *extra, *common])))
                if ext:
                    outputs.append(p(mode + ext))
            same = ""
            if ext == ".csv":
                same = open(outputs[0], "rb").read() == open(outputs[1], "rb").read()
                same = f"  outputs identical: {same}"
            print(f"{name}:{same}")
            for mode, wall, cpu, rss in rows:
                print(f"  {mode:9s} wall {wall:7.2f} s  user+sys {cpu:7.2f} s  peak RSS {rss:8.1f} MiB")


if __name__ == "__main__":
    main()
