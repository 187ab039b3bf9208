"""lethe under mpirun (docs/distributed.md) against one process, on examples/digits.

Each command runs as `mpirun -np 2` and `mpirun -np 3 --oversubscribe` (3 ranks on CI's
2 cores) and is compared with the plain run: every rank reads only its block of the rows
and the objective's sums are reduced in a fixed order, so results agree with one process up
to the rounding of the sums (tolerances below, each with the reason for it). The bad-file
case checks that an error found on one rank's block stops every rank with the one-process
line and exit code, and writes nothing. Skipped, saying why, when lethe was built without
MPI (LETHE_MPI_BUILT is not ON) or mpirun is missing. CI runs as root: the ctest sets
OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1.
"""
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

from lethe_test_main import run_tests
from mpi_tools import assert_reduction_bytes, run_lethe

import numpy as np

LETHE = None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "examples", "digits")
MODEL = os.path.join(DIGITS, "model.safetensors")
SPEC = os.path.join(DIGITS, "softmax.json")
TRAIN_DEFLATED = os.path.join(DIGITS, "train.npz")  # savez_compressed: loaded whole, sliced
TEST = os.path.join(DIGITS, "test.npz")
TEST_IDS = "100000,100003"

# f64 sums over 1437 rows regrouped by rank: the last digits of the reductions.
EVAL_RTOL = 1e-12
# ‖∇L‖ is a difference of O(1) terms: its rounding is absolute, ~1e-16 × the terms.
GRAD_NORM_ATOL = 1e-14
# Training stops at ‖∇L‖ ≤ 1e-9 on both sides, from paths that part in the last digits of the
# line searches (measured 2e-13 … 6e-11 relative); a rank's rows missing from a sum moves θ
# by ~1e-2.
TRAIN_RTOL = 1e-8
# Scores relative to the largest |score|: direct forms the same Hessian up to its sums'
# rounding; cg is run to --cg-tolerance 1e-12 (its iterates part in the last digits, and
# each run stops within its tolerance); lissa's full-batch recursion and lanczos repeat the
# one-process operations on the summed products.
SCORE_RTOL = {"direct": 1e-12, "cg": 1e-9, "lissa": 1e-9, "lanczos": 1e-9}
# Adam: each step's minibatch gradient regrouped by rank (last digits); Adam divides by
# √v̂, which carries those digits along the 60 steps without amplifying them (measured 5e-16).
# A rank's share missing from a minibatch moves θ by ~1e-2 relative.
ADAM_RTOL = 1e-12
# DP-SGD: the clipped sum regrouped by rank; the same sample and noise on both sides
# (measured 3e-16).
DP_RTOL = 1e-12


def run(np_, *args, check=True):
    return run_lethe(LETHE, np_, *args, check=check)


def load_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype="<f8").reshape(v["shape"])
    return out


def read_scores(path):
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["test_id", "train_id", "score"], rows[0]
    return [(r[0], r[1]) for r in rows[1:]], np.array([float(r[2]) for r in rows[1:]])


@unittest.skipIf(os.environ.get("LETHE_MPI_BUILT") != "ON",
                 "lethe was built without MPI (LETHE_MPI_BUILT is not ON): nothing to run")
@unittest.skipIf(shutil.which("mpirun") is None, "mpirun not found (apt-get install openmpi-bin)")
class Distributed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if LETHE is None:
            raise unittest.SkipTest("no --lethe")
        cls.dir = tempfile.mkdtemp(prefix="lethe_mpi_")
        d = np.load(TRAIN_DEFLATED)
        cls.X, cls.y, cls.ids = d["X"], d["y"], d["ids"]
        # numpy.savez stores its members: each rank reads its block by offset.
        cls.train = os.path.join(cls.dir, "train.npz")
        np.savez(cls.train, X=cls.X, y=cls.y, ids=cls.ids)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_eval_agrees(self):
        one = json.loads(run(1, "eval", "--model", MODEL, "--data", self.train, "--json").stdout)
        # stored members read by offset (np 2); deflated ones loaded whole and sliced (np 3)
        for np_, data in ((2, self.train), (3, TRAIN_DEFLATED)):
            with self.subTest(np=np_, data=os.path.basename(data)):
                many = json.loads(run(np_, "eval", "--model", MODEL, "--data", data, "--json").stdout)
                self.assertEqual(many["n"], one["n"])
                for key in ("loss", "objective", "accuracy"):
                    self.assertLessEqual(abs(many[key] - one[key]), EVAL_RTOL * abs(one[key]), key)
                self.assertLessEqual(abs(many["grad_norm"] - one["grad_norm"]), GRAD_NORM_ATOL)

    def test_mpirun_np1_is_the_plain_run(self):
        # One rank reduces nothing: bit for bit the plain run.
        args = ["eval", "--model", MODEL, "--data", self.train, "--json"]
        plain = run(1, *args).stdout
        p = subprocess.run(["mpirun", "-q", "-np", "1", LETHE, *args], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, plain)

    def train_and_compare(self, np_, *extra):
        one, many = self.path(f"one{np_}.safetensors"), self.path(f"many{np_}.safetensors")
        args = ["train", "--spec", SPEC, "--data", self.train, *extra, "--quiet"]
        run(1, *args, "--out", one)
        report = json.loads(run(np_, *args, "--out", many, "--json").stdout)
        self.assertTrue(report["converged"])
        a, b = load_safetensors(one), load_safetensors(many)
        self.assertEqual(a.keys(), b.keys())
        for k in a:
            self.assertLessEqual(np.max(np.abs(a[k] - b[k])), TRAIN_RTOL * np.max(np.abs(a[k])), k)
        # One allreduce of p + 1 values (the gradient and the loss) per evaluation, plus
        # one of p per Hessian product of a Newton-CG step.
        comm = report["communication"]
        assert_reduction_bytes(self, comm, np_)
        self.assertGreaterEqual(comm["allreduces"], report["evaluations"])
        if "newton-cg" in extra:
            # The optimisation alone (the loading's id checks are not counted): per step one
            # product per CG iteration and one for CG's final residual, and one reduction per
            # evaluation (gradient passes and value-only line-search trials). docs/scaling.md.
            self.assertEqual(comm["allreduces"], report["evaluations"] +
                             report["cg_iterations"] + report["iterations"])

    def test_train_lbfgs_np3(self):
        self.train_and_compare(3)

    def test_train_newton_cg_forget_np2(self):
        self.train_and_compare(2, "--optimizer", "newton-cg", "--forget",
                               os.path.join(DIGITS, "forget.txt"))

    def test_influence_every_solver(self):
        # (Each mpirun costs ~1 s to start: 2 and 3 ranks for direct, one count for the rest.)
        for solver, extra, counts in (("direct", [], (2, 3)),
                                      ("cg", ["--cg-tolerance", "1e-12"], (3,)),
                                      ("lissa", [], (2,)), ("lanczos", ["--rank", "650"], (3,))):
            args = ["influence", "--model", MODEL, "--test", TEST, "--test-ids", TEST_IDS,
                    "--solver", solver, *extra, "--quiet"]
            one = self.path(f"{solver}1.csv")
            run(1, *args, "--train", self.train, "--out", one)
            keys, scores = read_scores(one)
            for np_ in counts:
                with self.subTest(solver=solver, np=np_):
                    out = self.path(f"{solver}{np_}.csv")
                    run(np_, *args, "--train", self.train, "--out", out)
                    many_keys, many = read_scores(out)
                    self.assertEqual(many_keys, keys)  # every row, in row order
                    self.assertLessEqual(np.max(np.abs(many - scores)),
                                         SCORE_RTOL[solver] * np.max(np.abs(scores)))

    def test_influence_npy_topk_and_counters(self):
        args = ["influence", "--model", MODEL, "--test", TEST, "--test-ids", TEST_IDS,
                "--train", self.train, "--solver", "cg", "--preconditioner", "none",
                "--cg-tolerance", "1e-12", "--quiet"]
        run(1, *args, "--out", self.path("one.npy"))
        report = json.loads(run(2, *args, "--out", self.path("two.npy"), "--json").stdout)
        a, b = np.load(self.path("one.npy")), np.load(self.path("two.npy"))
        self.assertEqual(a.shape, b.shape)
        self.assertLessEqual(np.max(np.abs(a - b)), 1e-9 * np.max(np.abs(a)))
        # Per CG iteration one allreduce of p values per right-hand side still iterating
        # (p = 650; a converged one leaves the products), plus the final residual's product
        # of all m: values = p·(Σ_r iterations_r + m), bytes = 8·values.
        comm, m, p = report["communication"], 2, 650
        solver = report["solver"]
        self.assertEqual(comm["allreduces"], solver["iterations"] + 1)
        self.assertEqual(len(solver["rhs_iterations"]), m)
        self.assertEqual(max(solver["rhs_iterations"]), solver["iterations"])
        self.assertEqual(comm["allreduce_values"], p * (sum(solver["rhs_iterations"]) + m))
        self.assertEqual(comm["bytes_sent"], 8 * comm["allreduce_values"])  # P = 2: N each way
        # --top-k merged over the ranks: the same K ids as one process.
        run(1, *args, "--out", self.path("top1.csv"), "--top-k", "7")
        run(3, *args, "--out", self.path("top3.csv"), "--top-k", "7")
        k1, s1 = read_scores(self.path("top1.csv"))
        k3, s3 = read_scores(self.path("top3.csv"))
        self.assertEqual(len(k1), 14)
        self.assertEqual(k1, k3)
        self.assertLessEqual(np.max(np.abs(s1 - s3)), 1e-9 * np.max(np.abs(s1)))

    def test_self_influence(self):
        # Every row, and a few --ids across the ranks' blocks in their given order. direct:
        # the solves' grouping (P blocks per round) does not change an exact solve. (An
        # iterative solver scores every row too: 1437 right-hand sides, minutes on CI.)
        def read(path):
            rows = list(csv.reader(open(path)))
            self.assertEqual(rows[0], ["train_id", "score"])
            return [r[0] for r in rows[1:]], np.array([float(r[1]) for r in rows[1:]])
        for solver, extra in (("direct", []),
                              ("direct", ["--ids", "1400,3,700"])):
            args = ["self-influence", "--model", MODEL, "--train", self.train, "--solver", solver,
                    *extra, "--quiet"]
            run(1, *args, "--out", self.path("self1.csv"))
            np_ = 2 if extra else 3
            report = json.loads(run(np_, *args, "--out", self.path("self3.csv"), "--json").stdout)
            k1, s1 = read(self.path("self1.csv"))
            k3, s3 = read(self.path("self3.csv"))
            self.assertEqual(k1, k3)
            self.assertEqual(len(k1), 3 if extra else 1437)
            self.assertLessEqual(np.max(np.abs(s1 - s3)), SCORE_RTOL[solver] * np.max(np.abs(s1)))
            # the top examples merged over the ranks: the one-process ranking
            top = [t["train_id"] for t in report["top"]]
            self.assertEqual(top, [int(k1[i]) for i in np.argsort(-s1, kind="stable")[:len(top)]])

    def test_bad_row_on_one_rank_stops_every_rank(self):
        # A NaN in the last rank's block: the one-process line, once, exit 1, no output.
        X = self.X.copy()
        X[1400, 5] = np.nan
        bad = self.path("bad.npz")
        np.savez(bad, X=X, y=self.y, ids=self.ids)
        outdir = self.path("outputs")
        os.mkdir(outdir)
        out = os.path.join(outdir, "never.safetensors")
        args = ["train", "--spec", SPEC, "--data", bad, "--out", out]
        one = run(1, *args, check=False)
        self.assertEqual(one.returncode, 1)
        self.assertIn("X contains NaN or Inf at row 1400", one.stderr)
        for np_ in (2, 3):
            with self.subTest(np=np_):
                p = run(np_, *args, check=False)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertEqual(p.stderr, one.stderr)  # one line, the same
                self.assertEqual(p.stdout, "")
                self.assertEqual(os.listdir(outdir), [])  # no output, no temporary file
        # Duplicate ids across two ranks' blocks (rows 3 and 1000).
        ids = self.ids.copy()
        ids[1000] = ids[3]
        dup = self.path("dup.npz")
        np.savez(dup, X=self.X, y=self.y, ids=ids)
        one = run(1, "eval", "--model", MODEL, "--data", dup, check=False)
        two = run(2, "eval", "--model", MODEL, "--data", dup, check=False)
        self.assertEqual(one.returncode, 1)
        self.assertEqual((two.returncode, two.stderr), (1, one.stderr))

    def test_train_adam(self):
        # The global permutation from the seed on every rank, each rank's share of each
        # minibatch, one allreduce of p + 1 values per step: one process's steps up to the
        # rounding of the regrouped minibatch sums.
        args = ["train", "--spec", SPEC, "--data", self.train, "--optimizer", "adam",
                "--epochs", "4", "--batch-size", "100", "--learning-rate", "0.01", "--seed", "3",
                "--quiet"]
        run(1, *args, "--out", self.path("adam1.safetensors"))
        a = load_safetensors(self.path("adam1.safetensors"))
        for np_ in (2, 3):
            with self.subTest(np=np_):
                out = self.path(f"adam{np_}.safetensors")
                report = json.loads(run(np_, *args, "--out", out, "--json").stdout)
                b = load_safetensors(out)
                for k in a:
                    self.assertLessEqual(np.max(np.abs(a[k] - b[k])),
                                         ADAM_RTOL * np.max(np.abs(a[k])), k)
                # 4 epochs of ⌈1437/100⌉ = 15 steps, one allreduce of p + 1 = 651 values
                # each, then ‖∇L‖ once at the end.
                comm = report["communication"]
                self.assertEqual(comm["allreduces"], 4 * 15 + 1)
                self.assertEqual(comm["allreduce_values"], (4 * 15 + 1) * 651)

    def test_train_dp(self):
        # Poisson samples over global row indices and the noise from the one seeded
        # generator on every rank; each rank clips and sums its sampled rows.
        args = ["train", "--dp", "--noise-multiplier", "1", "--epochs", "2", "--batch-size", "64",
                "--seed", "5", "--spec", SPEC, "--data", self.train, "--quiet", "--json"]
        one = json.loads(run(1, *args, "--out", self.path("dp1.safetensors")).stdout)
        a = load_safetensors(self.path("dp1.safetensors"))
        for np_ in (2, 3):
            with self.subTest(np=np_):
                out = self.path(f"dp{np_}.safetensors")
                many = json.loads(run(np_, *args, "--out", out).stdout)
                b = load_safetensors(out)
                for k in a:
                    self.assertLessEqual(np.max(np.abs(a[k] - b[k])),
                                         DP_RTOL * np.max(np.abs(a[k])), k)
                self.assertEqual(many["dp"], one["dp"])  # ε, δ, steps, examples: n over all ranks
                self.assertEqual(many["n"], 1437)
                self.assertEqual(many["mean_batch"], one["mean_batch"])
                self.assertEqual(many["clipped_fraction"], one["clipped_fraction"])


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
