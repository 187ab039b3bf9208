"""lethe unlearn and lethe compare under mpirun (docs/distributed.md) against one process.

On examples/digits (1437 rows, softmax regression, p = 650), each command runs as
`mpirun -np 2` and `mpirun -np 3 --oversubscribe` and is compared with the plain run. The
forget set's rows live on whichever rank holds them (examples/digits/forget.txt has rows in
every rank's block; --forget-ids 3,700 leaves the last of 3 ranks none), their gradient is
reduced like the kept objective's, and every solve and line search runs on the summed
values: the patched θ agrees with one process up to the rounding of the regrouped sums.
The erasure record's counts and ids, --verify's retraining and audit, the ledger line,
compare's metrics and membership AUC, and the errors (an unknown id, a rank left with no
kept rows) are checked against one process too. Skipped, saying why, when
lethe was built without MPI or mpirun is missing; CI runs as root (the ctest sets
OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1).
"""
import json
import os
import shutil
import struct
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
RETRAINED = os.path.join(DIGITS, "retrained.safetensors")
FORGET = os.path.join(DIGITS, "forget.txt")
TEST = os.path.join(DIGITS, "test.npz")

# θ after the patch, relative to max|θ|. direct: the same Hessian up to its sums' rounding,
# solved exactly; cg: run to --cg-tolerance 1e-12, so each run's solve is within 1e-12 of
# the exact one whatever its iterates' last digits (a forget row's gradient missing from
# the sum moves θ by ~1e-3 relative: both would catch it by orders of magnitude).
THETA_RTOL = {"direct": 1e-12, "cg": 1e-9,
              # the default CG solve runs in f32 (--solve-dtype auto): the reductions are
              # rounded to f32 once, where one process rounds its own f32 sums (measured
              # 4e-8; one forget row's gradient missing would move θ by ~1e-2)
              "cg-f32": 1e-6}
# Sums over 1437 rows (or 14) regrouped by rank: the last digits of the reductions.
METRIC_RTOL = 1e-12
# --verify's retraining: L-BFGS to ‖∇L‖ ≤ 1e-9 on both sides from paths that part in the
# last digits of the line searches (as test_mpi.py's TRAIN_RTOL).
RETRAIN_RTOL = 1e-8


def run(np_, *args, check=True):
    return run_lethe(LETHE, np_, *args, check=check)


def theta(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    parts = []
    for k in sorted(header):
        if k == "__metadata__":
            continue
        s, e = header[k]["data_offsets"]
        parts.append(np.frombuffer(b[8 + n + s:8 + n + e], dtype="<f8"))
    return np.concatenate(parts), header.get("__metadata__", {})


def close(a, b, rtol):
    return np.max(np.abs(a - b)) <= rtol * np.max(np.abs(a))


@unittest.skipIf(os.environ.get("LETHE_MPI_BUILT") != "ON",
                 "lethe was built without MPI (LETHE_MPI_BUILT is not ON): nothing to run")
@unittest.skipIf(shutil.which("mpirun") is None, "mpirun not found (apt-get install openmpi-bin)")
class DistributedUnlearn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if LETHE is None:
            raise unittest.SkipTest("no --lethe")
        cls.dir = tempfile.mkdtemp(prefix="lethe_mpi_unlearn_")
        d = np.load(os.path.join(DIGITS, "train.npz"))
        cls.X, cls.y, cls.ids = d["X"], d["y"], d["ids"]
        # numpy.savez stores its members: each rank reads its block by offset.
        cls.train = os.path.join(cls.dir, "train.npz")
        np.savez(cls.train, X=cls.X, y=cls.y, ids=cls.ids)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def unlearn(self, np_, name, *extra):
        out = self.path(f"{name}{np_}.safetensors")
        p = run(np_, "unlearn", "--model", MODEL, "--train", self.train, "--out", out,
                "--quiet", "--json", *extra)
        return json.loads(p.stdout), out

    def test_newton_agrees_with_one_process(self):
        for solver, extra, forget, counts in (
                ("cg", ["--cg-tolerance", "1e-12"], ["--forget", FORGET], (2, 3)),
                ("cg-f32", [], ["--forget", FORGET], (2,)),
                ("direct", [], ["--forget", FORGET], (3,)),
                # rank 2 of 3 holds no forget row: its forget objective is empty
                ("cg", ["--cg-tolerance", "1e-12", "--steps", "2"], ["--forget-ids", "3,700"], (3,))):
            args = ["--solver", solver.split("-")[0], *extra, *forget]
            one, one_out = self.unlearn(1, f"{solver}_", *args)
            a, meta_one = theta(one_out)
            for np_ in counts:
                with self.subTest(solver=solver, forget=forget[1], np=np_):
                    many, many_out = self.unlearn(np_, f"{solver}_", *args)
                    b, meta_many = theta(many_out)
                    self.assertTrue(close(a, b, THETA_RTOL[solver]),
                                    f"max |Δθ| {np.max(np.abs(a - b)):.3e}")
                    # θ moved: a missing term would not hide in the tolerance
                    self.assertGreater(many["delta_norm"], 1e4 * THETA_RTOL[solver])
                    for key in ("n", "k", "forget_ids", "method", "solver"):
                        self.assertEqual(many[key], one[key], key)
                    self.assertEqual(len(many["steps"]), len(one["steps"]))
                    for key in ("input_grad_norm", "kept_grad_norm_before"):
                        self.assertLessEqual(abs(many[key] - one[key]), 1e-14 + METRIC_RTOL * one[key], key)
                    # The patched model records the same forgotten ids.
                    fa = json.loads(meta_one["lethe_forgotten"])
                    fb = json.loads(meta_many["lethe_forgotten"])
                    self.assertEqual(fa["ids"], fb["ids"])
                    self.assertEqual(fb["ids"], sorted(many["forget_ids"]))
                    assert_reduction_bytes(self, many["communication"], np_)

    def test_gradient_ascent(self):
        args = ["--method", "gradient-ascent", "--steps", "3", "--kept-weight", "0.5",
                "--forget", FORGET]
        _, one_out = self.unlearn(1, "ga", *args)
        _, many_out = self.unlearn(3, "ga", *args)
        # Plain sums (no solve): the reductions' rounding alone.
        self.assertTrue(close(theta(one_out)[0], theta(many_out)[0], 1e-12))

    def test_verify_report_and_ledger(self):
        out = {}
        for np_ in (1, 2):
            report, ledger = self.path(f"erasure{np_}.json"), self.path(f"ledger{np_}.jsonl")
            model = self.path(f"patched{np_}.safetensors")
            p = run(np_, "unlearn", "--model", MODEL, "--train", self.train, "--forget", FORGET,
                    "--out", model, "--report", report, "--ledger", ledger, "--verify",
                    "--test", TEST, "--solver", "direct", "--quiet")
            self.assertIn("erasure record: " + report, p.stdout)
            self.assertEqual(len(open(ledger).read().splitlines()), 1)  # one line, rank 0's
            v = run(1, "ledger", "verify", ledger, "--models", model)
            self.assertEqual(v.returncode, 0)
            out[np_] = json.load(open(report))
        one, two = out[1], out[2]
        self.assertEqual(one["training_data"]["sha256"], two["training_data"]["sha256"])
        self.assertEqual((two["n"], two["k"]), (1437, 14))
        for name in ("original", "patched", "retrained"):
            m1, m2 = one["verify"]["models"][name], two["verify"]["models"][name]
            # The retrained model differs by its own run's tolerance (RETRAIN_RTOL in θ).
            rtol = RETRAIN_RTOL if name == "retrained" else METRIC_RTOL
            for part in ("forget", "kept", "test"):
                self.assertEqual(m1[part]["n"], m2[part]["n"], (name, part))
                for key in ("loss", "accuracy"):
                    self.assertLessEqual(abs(m1[part][key] - m2[part][key]),
                                         rtol * abs(m1[part][key]) + 1e-15, (name, part, key))
            # 14 forget losses gathered from both ranks, ranked among the test set's: the same
            # AUC (a rank statistic) as one process.
            self.assertAlmostEqual(m1["membership_auc"], m2["membership_auc"], delta=1e-12)
            self.assertAlmostEqual(m1["test_agreement_with_reference"],
                                   m2["test_agreement_with_reference"], delta=1e-12)
        self.assertTrue(two["verify"]["retrain"]["converged"])
        d1 = one["verify"]["models"]["patched"]["distance_to_reference"]
        d2 = two["verify"]["models"]["patched"]["distance_to_reference"]
        self.assertLessEqual(abs(d1 - d2), RETRAIN_RTOL * 10 * np.max(np.abs(theta(MODEL)[0])))

    def test_cache_chain(self):
        # Two requests in a stream with --cache: the second reuses the K-FAC factors the
        # first computed (on every rank: the same bits) and writes its own cache (rank 0).
        out = {}
        for np_ in (1, 2):
            first, second = self.path(f"c1_{np_}.safetensors"), self.path(f"c2_{np_}.safetensors")
            common = ["--cache", "--cg-tolerance", "1e-12", "--quiet", "--json"]
            run(np_, "unlearn", "--model", MODEL, "--train", self.train, "--forget-ids", "3,700",
                "--out", first, *common)
            self.assertTrue(os.path.exists(first + ".lethe-cache"))
            r = json.loads(run(np_, "unlearn", "--model", first, "--train", self.train,
                               "--forget-ids", "1000", "--out", second, *common).stdout)
            self.assertEqual(r["steps"][0]["solve"]["preconditioner"], "kfac (cached)")
            out[np_] = theta(second)[0]
        self.assertTrue(close(out[1], out[2], THETA_RTOL["cg"]))

    def test_compare_agrees(self):
        base = ["compare", "--model", MODEL, "--reference", RETRAINED, "--train", self.train,
                "--test", TEST, "--json"]
        # --forget given, and not: then the forget set is the ids the reference has
        # forgotten, found by each rank in its own rows.
        for extra, counts in ((["--forget", FORGET], (2, 3)), ([], (3,))):
            args = base + extra
            one = json.loads(run(1, *args).stdout)
            self.assertEqual(one["model"]["forget"]["n"], 14)
            for np_ in counts:
                with self.subTest(forget=bool(extra), np=np_):
                    self.compare_case(one, json.loads(run(np_, *args).stdout))

    def compare_case(self, one, many):
        self.assertEqual(many["test_agreement"], one["test_agreement"])
        self.assertAlmostEqual(many["parameter_distance"], one["parameter_distance"],
                               delta=1e-15)
        for name in ("model", "reference"):
            self.assertAlmostEqual(many[name]["membership_auc"],
                                   one[name]["membership_auc"], delta=1e-12)
            for part in ("forget", "kept", "test"):
                self.assertEqual(many[name][part]["n"], one[name][part]["n"])
                for key in ("loss", "accuracy"):
                    self.assertLessEqual(
                        abs(many[name][part][key] - one[name][part][key]),
                        METRIC_RTOL * abs(one[name][part][key]) + 1e-15, (name, part, key))

    def test_errors_are_the_one_process_lines(self):
        outdir = self.path("never")
        os.mkdir(outdir)
        out = os.path.join(outdir, "never.safetensors")
        base = ["unlearn", "--model", MODEL, "--train", self.train, "--out", out]
        # An id in no rank's rows: the one-process line, once, exit 1, nothing written.
        one = run(1, *base, "--forget-ids", "3,99999", check=False)
        self.assertEqual(one.returncode, 1)
        self.assertIn("unknown id 99999", one.stderr)
        for np_ in (2, 3):
            p = run(np_, *base, "--forget-ids", "3,99999", check=False)
            self.assertEqual((p.returncode, p.stderr, p.stdout), (1, one.stderr, ""))
        # Every row of one rank's block forgotten (2 rows in 2 blocks of 1).
        tiny = self.path("tiny.npz")
        np.savez(tiny, X=self.X[:2], y=self.y[:2], ids=self.ids[:2])
        p = run(2, "unlearn", "--model", MODEL, "--train", tiny, "--out", out, "--forget-ids", "1",
                check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn("forgets every row of process 1's block", p.stderr)
        # (--certified and --requests run under mpirun too: test_mpi_certified.py,
        # test_mpi_requests.py.)
        self.assertEqual(os.listdir(outdir), [])


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
