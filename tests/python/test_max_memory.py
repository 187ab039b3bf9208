#!/usr/bin/env python3
"""Data larger than memory (--max-memory), end to end through the lethe command line.

    /usr/bin/python3 tests/python/test_max_memory.py --lethe PATH/TO/lethe

A softmax regression's training set whose X, held as lethe holds it (doubles, plus the
compute copy), takes more than the memory limit (RLIMIT_DATA, as `prlimit --data`: the
process's writable memory; not RLIMIT_AS, because the binary maps about 2 GB of CUDA
libraries' address space that is no memory) that the in-memory run cannot live in, and
several times the --max-memory bound: under that limit, with the data streamed from the
.npz a chunk at a time, `train` (L-BFGS), `eval`, `influence` (CG with K-FAC; --top-k;
--out .npy) and `unlearn` (Newton) write exactly what the in-memory run writes, byte for
byte or tensor for tensor. On a small deflated .npz (inflated once to a temporary file)
with --max-memory small enough to stream: influence with the direct solver, CG and
Lanczos (LiSSA, which shuffles a copy of the data, refuses), self-influence.
Bad --max-memory values give one error line, exit 1, no output.
Plain unittest; ends with a line "N passed, N failed, N skipped".
"""
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import unittest

from lethe_test_main import run_tests

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from export_torch import read_safetensors  # noqa: E402

LETHE = None
SANITIZED = bool(os.environ.get("LETHE_SANITIZED"))  # ASan reserves terabytes: no limit
# The big set: n × d doubles = 160 MB in the file, 320 MB held in f64 (its doubles and the
# compute copy), against a data limit of LIMIT and --max-memory BOUND.
N, D, CLASSES = 100_000, 200, 10
# lethe's libraries alone take ~200 MB of RLIMIT_DATA (measured: it does not start under
# 180 MB, evaluates a tiny file under 200 MB; mostly the CUDA libraries' writable
# segments), so the limit leaves ~100 MB for the run: a third of what the held data take.
LIMIT = 300 << 20
BOUND = "100M"
# The small deflated sets: X held takes more than half of the budget, so it streams; a
# chunk of 128 rows keeps the buffers within it. Self-influence (n solves) on fewer rows.
SMALL_N, SMALL_D, SMALL_BUDGET, SMALL_CHUNK = 40000, 6, "6M", "128"
SELF_N, SELF_D, SELF_BUDGET, SELF_CHUNK = 1500, 30, "1300K", "32"


def run(args, limit=None, check=True):
    def set_limit():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    env = dict(os.environ, MALLOC_ARENA_MAX="1", OMP_NUM_THREADS="1")
    r = subprocess.run([LETHE, *args, "--quiet", "--threads", "1"], capture_output=True, text=True,
                       preexec_fn=set_limit, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def tensors(path):
    t, _ = read_safetensors(path)
    return {k: np.asarray(v) for k, v in t.items()}


def same_tensors(test, a, b):
    ta, tb = tensors(a), tensors(b)
    test.assertEqual(sorted(ta), sorted(tb))
    for k in ta:
        test.assertEqual(ta[k].tobytes(), tb[k].tobytes(), k)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def make_data(path, n, d, seed, compressed=False, subset=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, CLASSES))
    y = np.argmax(X @ W + 2.0 * rng.standard_normal((n, CLASSES)), axis=1).astype(np.int64)
    ids = np.arange(n, dtype=np.int64) * 3 + 1000
    (np.savez_compressed if compressed else np.savez)(path, X=X, y=y, ids=ids)
    if subset:  # its first rows, to fit a model quickly
        np.savez(subset, X=X[:3000], y=y[:3000], ids=ids[:3000])
    return ids


SPEC = {"format": "lethe/1", "layers": [{"type": "linear", "weight": "0.weight",
                                         "bias": "0.bias", "out": CLASSES}],
        "loss": "cross_entropy", "l2": 0.01}


class Fixture:
    """The data, spec and a model, made once for every test."""
    dir = None

    @classmethod
    def get(cls):
        if cls.dir is None:
            cls.tmp = tempfile.TemporaryDirectory()
            cls.dir = cls.tmp.name
            p = lambda name: os.path.join(cls.dir, name)  # noqa: E731
            with open(p("spec.json"), "w") as f:
                json.dump(SPEC, f)
            cls.ids = make_data(p("big.npz"), N, D, 1, subset=p("big_subset.npz"))
            make_data(p("big_test.npz"), 50, D, 2)
            cls.small_ids = make_data(p("small.npz"), SMALL_N, SMALL_D, 3, compressed=True)
            make_data(p("small_test.npz"), 10, SMALL_D, 4)
            make_data(p("self.npz"), SELF_N, SELF_D, 5, compressed=True)
            # A model near the optimum: fitted to the first rows (the results compared do
            # not need the exact optimum; the commands warn that it is not one).
            run(["train", "--spec", p("spec.json"), "--data", p("big_subset.npz"),
                 "--out", p("big.safetensors")])
            run(["train", "--spec", p("spec.json"), "--data", p("small.npz"),
                 "--out", p("small.safetensors")])
            run(["train", "--spec", p("spec.json"), "--data", p("self.npz"),
                 "--out", p("self.safetensors")])
        return cls


class MaxMemory(unittest.TestCase):
    def setUp(self):
        if not LETHE or not os.access(LETHE, os.X_OK):
            self.skipTest("no lethe binary (pass --lethe)")
        self.f = Fixture.get()
        self.out = tempfile.TemporaryDirectory()

    def tearDown(self):
        if hasattr(self, "out"):
            self.out.cleanup()

    def p(self, name):
        return os.path.join(self.f.dir, name)

    def o(self, name):
        return os.path.join(self.out.name, name)

    def limit(self):
        if SANITIZED:
            self.skipTest("under ASan: no memory limit")
        return LIMIT

    def test_the_limit_binds_in_memory(self):
        # Held in memory (a bound far above the data), the run cannot live under the limit.
        r = run(["eval", "--model", self.p("big.safetensors"), "--data", self.p("big.npz"),
                 "--max-memory", "100G"], limit=self.limit(), check=False)
        self.assertEqual(r.returncode, 1, r.stderr)

    def test_train_and_eval_streamed_equal_in_memory(self):
        limit = self.limit()
        args = ["train", "--spec", self.p("spec.json"), "--data", self.p("big.npz"),
                "--max-iterations", "6"]
        run(args + ["--out", self.o("held.safetensors")])
        run(args + ["--out", self.o("streamed.safetensors"), "--max-memory", BOUND], limit=limit)
        same_tensors(self, self.o("held.safetensors"), self.o("streamed.safetensors"))
        ev = ["eval", "--model", self.p("big.safetensors"), "--data", self.p("big.npz"), "--json"]
        held = json.loads(run(ev).stdout)
        streamed = json.loads(run(ev + ["--max-memory", BOUND], limit=limit).stdout)
        self.assertEqual(held, streamed)

    def test_influence_streamed_equals_in_memory(self):
        limit = self.limit()
        args = ["influence", "--model", self.p("big.safetensors"), "--train", self.p("big.npz"),
                "--test", self.p("big_test.npz"), "--test-ids", "1000,1003,1030", "--solver", "cg",
                "--cg-max-iterations", "6", "--allow-inexact"]  # 6: the same bits, in seconds
        run(args + ["--out", self.o("held.csv")])
        run(args + ["--out", self.o("held_top.csv"), "--top-k", "7"])
        run(args + ["--out", self.o("streamed.csv"), "--max-memory", BOUND], limit=limit)
        run(args + ["--out", self.o("streamed_top.csv"), "--top-k", "7", "--max-memory", BOUND],
            limit=limit)
        run(args + ["--out", self.o("streamed.npy"), "--max-memory", BOUND], limit=limit)
        self.assertEqual(read_bytes(self.o("held.csv")), read_bytes(self.o("streamed.csv")))
        self.assertEqual(read_bytes(self.o("held_top.csv")), read_bytes(self.o("streamed_top.csv")))
        # The .npy against the CSV, and --top-k against the full scores.
        scores = np.load(self.o("streamed.npy"))
        self.assertEqual(scores.shape, (3, N))
        with open(self.o("held.csv")) as f:
            rows = list(csv.DictReader(f))
        full = np.array([float(r["score"]) for r in rows]).reshape(3, N)
        np.testing.assert_array_equal(scores, full)  # FormatDouble is the shortest round trip
        with open(self.o("streamed_top.csv")) as f:
            top = list(csv.DictReader(f))
        for j in range(3):
            order = sorted(range(N), key=lambda i: (-abs(full[j, i]), i))[:7]
            got = [(int(r["train_id"]), float(r["score"])) for r in top[7 * j:7 * j + 7]]
            self.assertEqual(got, [(int(self.f.ids[i]), full[j, i]) for i in order])

    def test_unlearn_streamed_equals_in_memory(self):
        limit = self.limit()
        args = ["unlearn", "--model", self.p("big.safetensors"), "--train", self.p("big.npz"),
                "--forget-ids", "1000,1003,1006,5008,20011,100000"]
        run(args + ["--out", self.o("held.safetensors")])
        run(args + ["--out", self.o("streamed.safetensors"), "--max-memory", BOUND], limit=limit)
        same_tensors(self, self.o("held.safetensors"), self.o("streamed.safetensors"))

    def test_every_solver_and_self_influence_on_a_deflated_file(self):
        base = ["--model", self.p("small.safetensors"), "--train", self.p("small.npz"),
                "--chunk-size", SMALL_CHUNK]
        for solver in ["direct", "cg", "lanczos"]:
            t = time.time()
            args = ["influence", *base, "--test", self.p("small_test.npz"), "--solver", solver,
                    "--allow-inexact"] + (["--cg-max-iterations", "20"] if solver == "cg" else [])
            run(args + ["--out", self.o(f"{solver}_held.csv")])
            r = run(args + ["--out", self.o(f"{solver}_streamed.csv"), "--max-memory", SMALL_BUDGET])
            if solver != "direct":
                self.assertEqual(read_bytes(self.o(f"{solver}_held.csv")),
                                 read_bytes(self.o(f"{solver}_streamed.csv")), solver + r.stderr)
                print(solver, f"{time.time() - t:.1f} s", file=sys.stderr)
                continue
            # Held, the direct solver forms a linear model's H as weighted Gram matrices of
            # X (n × C² at once); streamed, by p curvature products: equal to rounding.
            held, streamed = (np.loadtxt(self.o(f"direct_{m}.csv"), delimiter=",", skiprows=1)
                              for m in ("held", "streamed"))
            np.testing.assert_array_equal(held[:, :2], streamed[:, :2])
            scale = np.abs(held[:, 2]).max()
            np.testing.assert_allclose(streamed[:, 2], held[:, 2], rtol=0, atol=1e-10 * scale)
            self.assertGreater(np.abs(held[:, 2] - streamed[:, 2]).max(), 0)  # not the same path
        # LiSSA shuffles a copy of the whole data: refused, in one line, nothing written.
        r = run(["influence", *base, "--test", self.p("small_test.npz"), "--solver", "lissa",
                 "--out", self.o("lissa.csv"), "--max-memory", SMALL_BUDGET], check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("lissa", r.stderr)
        self.assertFalse(os.path.exists(self.o("lissa.csv")))
        args = ["self-influence", "--model", self.p("self.safetensors"), "--train", self.p("self.npz"),
                "--chunk-size", SELF_CHUNK, "--solver", "cg", "--cg-max-iterations", "10",
                "--allow-inexact"]
        run(args + ["--out", self.o("self_held.csv")])
        run(args + ["--out", self.o("self_streamed.csv"), "--max-memory", SELF_BUDGET])
        self.assertEqual(read_bytes(self.o("self_held.csv")), read_bytes(self.o("self_streamed.csv")))

    def test_bad_values_one_line(self):
        for value, phrase in [("0", "at least one byte"), ("abc", "not a size"),
                              ("12Q", "unknown unit"), ("-5", "not a size"),
                              ("1000", "too small")]:
            out = self.o("bad.csv")
            r = run(["influence", "--model", self.p("small.safetensors"), "--train", self.p("small.npz"),
                     "--test", self.p("small_test.npz"), "--out", out, "--max-memory", value],
                    check=False)
            self.assertEqual(r.returncode, 1, value + r.stderr)
            lines = r.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertIn("--max-memory", lines[0])
            self.assertIn(phrase, lines[0])
            self.assertFalse(os.path.exists(out))
        r = run(["train", "--spec", self.p("spec.json"), "--data", self.p("small.npz"), "--out",
                 self.o("adam.safetensors"), "--optimizer", "adam", "--max-memory", SMALL_BUDGET, "--chunk-size", SMALL_CHUNK], check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("adam", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
