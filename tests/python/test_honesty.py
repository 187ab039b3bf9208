#!/usr/bin/env python3
"""Every answer honest: what lethe says about its results is true, on the same screen.

    /usr/bin/python3 tests/python/test_honesty.py --lethe PATH/TO/lethe

- Deletion requests one after another: a patched model carries the ids it has forgotten,
  and every later command leaves them out of the training data, so request 1 then
  request 2 lands where removing both at once does (and not back near request 1's ids).
- Not converged is said where the result is: train's iteration limit is the whole run's,
  its summary says NOT converged; a solve stopped short is refused, or written with
  --allow-inexact and marked; negative curvature is never "allowed".
- Analysing commands report ‖∇L(θ)‖ and warn off a stationary point; --json carries the
  settings actually used, the warnings and the examples the table shows.
- Progress goes to a terminal only; --out /dev/null works; no "nan" in tables.
Plain unittest; ends with a line "N passed, N failed, N skipped".
"""
import json
import os
import pty
import select
import subprocess
import sys
import tempfile
import unittest

from lethe_test_main import run_tests

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from export_torch import read_safetensors  # noqa: E402

LETHE = None
DIGITS = os.path.join(ROOT, "examples", "digits")
TRAIN, TEST = os.path.join(DIGITS, "train.npz"), os.path.join(DIGITS, "test.npz")


def run(*args, check=True):
    r = subprocess.run([LETHE, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def theta(path):
    tensors, _ = read_safetensors(path)
    return np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in tensors.values()])


def write_ids(path, ids):
    with open(path, "w") as f:
        f.write("".join(f"{i}\n" for i in ids))
    return path


class Honesty(unittest.TestCase):
    model = None  # the softmax regression on digits, trained once for the class

    @classmethod
    def setUpClass(cls):
        if not LETHE or not os.access(LETHE, os.X_OK):
            return
        cls.shared = tempfile.TemporaryDirectory()
        cls.model = os.path.join(cls.shared.name, "model.safetensors")
        run("train", "--spec", os.path.join(DIGITS, "softmax.json"), "--data", TRAIN, "--out",
            cls.model, "--quiet")

    @classmethod
    def tearDownClass(cls):
        if cls.model:
            cls.shared.cleanup()

    def setUp(self):
        if not self.model:
            self.skipTest("no lethe binary (pass --lethe)")
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    # -- deletion requests one after another ------------------------------------------------

    def test_chained_requests_equal_one_request_for_both(self):
        ids = np.load(TRAIN)["ids"]
        rng = np.random.default_rng(7)
        chosen = rng.choice(ids, 30, replace=False)
        s1, s2 = write_ids(self.path("s1.txt"), chosen[:15]), write_ids(self.path("s2.txt"), chosen[15:])
        both = write_ids(self.path("both.txt"), chosen)
        p1, p2 = self.path("p1.safetensors"), self.path("p2.safetensors")
        retrained = self.path("retrained.safetensors")
        run("unlearn", "--model", self.model, "--train", TRAIN, "--forget", s1, "--out", p1,
            "--steps", "3", "--quiet")
        r = run("unlearn", "--model", p1, "--train", TRAIN, "--forget", s2, "--out", p2,
                "--steps", "3", "--report", self.path("r2.json"), "--quiet")
        # The second request said that it left request 1's ids out.
        self.assertIn("has forgotten 15 id(s)", r.stderr)
        self.assertIn("15 of them are in", r.stderr)
        run("train", "--init", self.model, "--data", TRAIN, "--forget", both, "--out", retrained,
            "--quiet")
        t2, tr, t0 = theta(p2), theta(retrained), theta(self.model)
        error = np.linalg.norm(t2 - tr) / np.linalg.norm(tr)
        print(f"\n  chained: ‖θ₂−θ_r‖/‖θ_r‖ = {error:.2e} (original {np.linalg.norm(t0 - tr) / np.linalg.norm(tr):.2e})")
        # Three Newton steps on a convex model reach the optimum to ~1e-9; the old behaviour
        # (request 1's ids back in the kept data) lands ~0.85 of the way back.
        self.assertLess(error, 1e-6)
        # The models carry the record: ids, request chain with parent hashes.
        info = json.loads(run("inspect", p2, "--json").stdout)
        self.assertEqual(info["forgotten"]["ids"], sorted(int(i) for i in chosen))
        requests = info["forgotten"]["requests"]
        self.assertEqual([q["k"] for q in requests], [15, 15])
        self.assertEqual(requests[1]["parent_sha256"],
                         json.load(open(self.path("r2.json")))["input_model"]["sha256"])
        self.assertRegex(requests[0]["utc"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        # The retrained model records its own removal ("retrain"), so it too is analysed
        # without those ids: influence on it sees n − 30 training examples.
        info = json.loads(run("inspect", retrained, "--json").stdout)
        self.assertEqual(info["forgotten"]["requests"][0]["method"], "retrain")
        inf = json.loads(run("influence", "--model", retrained, "--train", TRAIN, "--test", TEST,
                             "--test-ids", "100015", "--out", self.path("s.csv"), "--json").stdout)
        self.assertEqual(inf["n"], len(ids) - 30)
        self.assertEqual(inf["forgotten_excluded"], 30)
        self.assertLess(inf["grad_norm"], 1e-6)  # at its optimum once the ids are left out
        self.assertEqual(inf["warnings"], [])

    def test_repeated_request(self):
        ids = np.load(TRAIN)["ids"][:5]
        s = write_ids(self.path("s.txt"), ids)
        p1 = self.path("p1.safetensors")
        run("unlearn", "--model", self.model, "--train", TRAIN, "--forget", s, "--out", p1, "--quiet")
        r = run("unlearn", "--model", p1, "--train", TRAIN, "--forget", s, "--out",
                self.path("p2.safetensors"), "--quiet", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already forgotten", r.stderr)
        self.assertFalse(os.path.exists(self.path("p2.safetensors")))
        # Partly new: the old ids are skipped with a warning, the new one removed.
        more = write_ids(self.path("more.txt"), list(ids) + [int(np.load(TRAIN)["ids"][5])])
        r = run("unlearn", "--model", p1, "--train", TRAIN, "--forget", more, "--out",
                self.path("p3.safetensors"), "--json")
        record = json.loads(r.stdout)
        self.assertEqual(record["k"], 1)
        self.assertEqual(sorted(record["previously_forgotten"]["in_this_request"]), sorted(int(i) for i in ids))
        self.assertTrue(any("already forgotten" in w for w in record["warnings"]))

    # -- not converged, said where the result is --------------------------------------------

    def test_train_iteration_limit_is_the_whole_run(self):
        r = run("train", "--spec", os.path.join(DIGITS, "softmax.json"), "--data", TRAIN, "--out",
                self.path("m.safetensors"), "--max-iterations", "5", "--json")
        j = json.loads(r.stdout)
        self.assertLessEqual(j["iterations"], 5)
        self.assertFalse(j["converged"])
        self.assertTrue(j["warnings"])
        self.assertIn("NOT converged", r.stderr)
        r = run("train", "--spec", os.path.join(DIGITS, "softmax.json"), "--data", TRAIN, "--out",
                self.path("m.safetensors"), "--max-iterations", "5", "--quiet")
        self.assertIn("NOT converged", r.stdout)  # in the summary line itself

    def test_unconverged_solve_refused_or_marked(self):
        args = ["influence", "--model", self.model, "--train", TRAIN, "--test", TEST, "--test-ids",
                "100015", "--solver", "cg", "--preconditioner", "none", "--cg-max-iterations", "2"]
        out = self.path("s.csv")
        r = run(*args, "--out", out, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--allow-inexact writes", r.stderr)
        self.assertFalse(os.path.exists(out))
        r = run(*args, "--out", out, "--allow-inexact", "--json")
        j = json.loads(r.stdout)
        self.assertFalse(j["exact"])
        self.assertTrue(any("inexact" in w for w in j["warnings"]))
        self.assertTrue(os.path.exists(out))
        r = run(*args, "--out", self.path("t.csv"), "--allow-inexact")
        self.assertIn("INEXACT", r.stdout)

    def test_negative_curvature_never_offers_allow_inexact(self):
        # An MLP at its random initialisation: its Hessian is indefinite.
        m = self.path("init.safetensors")
        run("train", "--spec", os.path.join(DIGITS, "mlp.json"), "--data", TRAIN, "--out", m,
            "--max-iterations", "0", "--quiet")
        for extra in ([], ["--allow-inexact"]):
            r = run("influence", "--model", m, "--train", TRAIN, "--test", TEST, "--test-ids",
                    "100015", "--solver", "direct", "--out", self.path("s.csv"), *extra, check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            last = r.stderr.strip().splitlines()[-1]
            self.assertIn("negative-curvature", last)
            self.assertNotIn("--allow-inexact", last)
            self.assertNotIn("relative residual 0.000e+00", last)
            self.assertFalse(os.path.exists(self.path("s.csv")))

    def test_unconverged_reference_is_marked(self):
        r = run("unlearn", "--model", self.model, "--train", TRAIN, "--forget-ids", "10,11", "--out",
                self.path("p.safetensors"), "--verify", "--verify-max-iterations", "1",
                "--report", self.path("r.json"), "--quiet")
        rows = [line for line in r.stdout.splitlines() if line.startswith("retrained")]
        self.assertEqual(len(rows), 1)
        self.assertTrue(rows[0].startswith("retrained*"), r.stdout)
        self.assertIn("NOT converged", r.stdout)
        self.assertIn("did not converge", r.stderr)
        record = json.load(open(self.path("r.json")))
        self.assertFalse(record["verify"]["retrain"]["converged"])
        self.assertIn("reference_caveat", record["verify"])
        self.assertFalse(record["verify"]["models"]["retrained"]["converged"])

    def test_unlearn_has_no_allow_inexact(self):
        r = run("unlearn", "--help")
        self.assertNotIn("allow-inexact", r.stdout)

    # -- stationarity and what --json carries -----------------------------------------------

    def test_off_optimum_models_are_flagged(self):
        m = self.path("early.safetensors")
        run("train", "--spec", os.path.join(DIGITS, "softmax.json"), "--data", TRAIN, "--out", m,
            "--max-iterations", "3", "--quiet")
        r = run("influence", "--model", m, "--train", TRAIN, "--test", TEST, "--test-ids",
                "100015", "--out", self.path("s.csv"), "--json")
        j = json.loads(r.stdout)
        self.assertGreater(j["grad_norm"], 1e-3)
        self.assertIn("not at a stationary point", r.stderr)
        self.assertTrue(any("stationary" in w for w in j["warnings"]))
        for key in ("solver", "curvature", "damping", "dtype"):
            self.assertIn(key, j["settings"])
        self.assertEqual(len(j["top"]), 1)
        self.assertEqual(len(j["top"][0]["helpful"]), 5)
        r = run("self-influence", "--model", m, "--train", TRAIN, "--out", self.path("self.csv"),
                "--json")
        self.assertIn("not at a stationary point", r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(len(j["top"]), 10)
        scores = [t["score"] for t in j["top"]]
        self.assertEqual(scores, sorted(scores, reverse=True))
        r = run("unlearn", "--model", m, "--train", TRAIN, "--forget-ids", "10", "--out",
                self.path("p.safetensors"), "--json")
        self.assertTrue(any("stationary" in w for w in json.loads(r.stdout)["warnings"]))
        r = run("eval", "--model", m, "--data", TRAIN)
        self.assertIn("not at a stationary point", r.stderr)

    def test_patch_short_of_the_optimum_is_flagged(self):
        # 400 of 1437 rows at once: one Newton step leaves ‖∇L₋ₛ‖ ~1e-3 (its own record says
        # so); three reach ~1e-8. The first patch says, on the same screen and in its record,
        # that it is not at the kept objective's optimum; the second says nothing of the kind.
        ids = write_ids(self.path("ids.txt"), np.load(TRAIN)["ids"][:400])
        notes = {}
        for steps in (1, 3):
            r = run("unlearn", "--model", self.model, "--train", TRAIN, "--forget", ids, "--out",
                    self.path(f"p{steps}.safetensors"), "--steps", str(steps), "--json")
            record = json.loads(r.stdout)
            after = record["kept_grad_norm_after"]
            flagged = [w for w in record["warnings"] if "not at the optimum of the kept" in w]
            notes[steps] = (after, flagged, r.stderr)
        after, flagged, stderr = notes[1]
        self.assertGreater(after, 1e-5)
        self.assertEqual(len(flagged), 1, flagged)
        self.assertIn(f"{after:.3e}", flagged[0])
        self.assertIn("--steps 3", flagged[0])
        self.assertIn("not at the optimum of the kept objective", stderr)
        after, flagged, stderr = notes[3]
        self.assertLess(after, 1e-5)
        self.assertEqual(flagged, [])
        self.assertNotIn("optimum", stderr)
        # --steps auto: Newton steps until ‖∇L₋ₛ‖ <= 1e-5, stopping at the first step that
        # gets there (here 2 or 3: more than one, no more than --steps 3 needed).
        r = run("unlearn", "--model", self.model, "--train", TRAIN, "--forget", ids, "--out",
                self.path("pauto.safetensors"), "--steps", "auto", "--json")
        record = json.loads(r.stdout)
        norms = [s["kept_grad_norm_after"] for s in record["steps"]]
        self.assertIn(len(norms), (2, 3), norms)
        self.assertEqual(record["steps_requested"], "auto")
        self.assertLessEqual(norms[-1], 1e-5)
        self.assertTrue(all(x > 1e-5 for x in norms[:-1]), norms)
        self.assertEqual(record["warnings"], [])
        # A request one step serves takes one step.
        one = write_ids(self.path("one.txt"), np.load(TRAIN)["ids"][:1])
        r = run("unlearn", "--model", self.model, "--train", TRAIN, "--forget", one, "--out",
                self.path("pone.safetensors"), "--steps", "auto", "--json")
        record = json.loads(r.stdout)
        self.assertEqual(len(record["steps"]), 1, record["steps"])
        self.assertLessEqual(record["kept_grad_norm_after"], 1e-5)
        for bad in ("0", "x", "2.5", ""):
            r = subprocess.run([LETHE, "unlearn", "--model", self.model, "--train", TRAIN,
                                "--forget", one, "--out", self.path("pbad.safetensors"),
                                "--steps", bad], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, (bad, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn("expected a count >= 1 or auto", r.stderr)
            self.assertFalse(os.path.exists(self.path("pbad.safetensors")))

    def test_influence_json_settings_at_optimum(self):
        r = run("influence", "--model", self.model, "--train", TRAIN, "--test", TEST, "--test-ids",
                "100015", "--solver", "cg", "--out", self.path("s.csv"), "--json")
        j = json.loads(r.stdout)
        self.assertEqual(j["settings"]["solver"], "cg")
        self.assertEqual(j["settings"]["preconditioner"], "kfac")
        self.assertEqual(j["settings"]["dtype"], "f64")
        self.assertTrue(j["exact"])
        self.assertLess(j["grad_norm"], 1e-6)
        self.assertEqual(j["warnings"], [])
        self.assertEqual(r.stderr, "")  # nothing but results when stderr is not a terminal

    # -- output streams ---------------------------------------------------------------------

    def test_progress_only_on_a_terminal(self):
        args = [LETHE, "influence", "--model", self.model, "--train", TRAIN, "--test", TEST,
                "--test-ids", "100015", "--out", self.path("s.csv"), "--solver", "cg"]
        piped = subprocess.run(args, capture_output=True, text=True)
        self.assertEqual(piped.returncode, 0)
        self.assertEqual(piped.stderr, "")
        # Under a pseudo-terminal: the announcement and phase lines appear.
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(LETHE, args)
        chunks = []
        while True:
            ready, _, _ = select.select([fd], [], [], 600)
            if not ready:
                break
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        _, status = os.waitpid(pid, 0)
        text = b"".join(chunks).decode("utf-8", "replace")
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, text)
        self.assertIn("lethe influence: 1 test × 1437 training examples", text)
        quiet = subprocess.run(args + ["--quiet"], capture_output=True, text=True)
        self.assertIn("solver cg", quiet.stdout)  # the solver summary is a result: printed

    def test_out_dev_null_and_no_nan_in_tables(self):
        run("influence", "--model", self.model, "--train", TRAIN, "--test", TEST, "--test-ids",
            "100015", "--out", "/dev/null", "--quiet")
        r = run("unlearn", "--model", self.model, "--train", TRAIN, "--forget-ids", "10,11",
                "--out", self.path("p.safetensors"), "--verify", "--quiet")
        self.assertNotIn("nan", r.stdout)
        r = run("unlearn", "--model", self.model, "--train", TRAIN, "--forget-ids", "10",
                "--out", "/dev/null", "--quiet")
        self.assertTrue(os.path.exists("/dev/null") and not os.path.isfile("/dev/null"))

    def test_erasure_record_time_test_hash_absolute_paths(self):
        import hashlib
        report = self.path("r.json")
        run("unlearn", "--model", self.model, "--train", TRAIN, "--test", TEST, "--forget-ids",
            "10", "--out", self.path("p.safetensors"), "--report", report, "--quiet")
        r = json.load(open(report))
        self.assertRegex(r["utc"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        with open(TEST, "rb") as f:
            self.assertEqual(r["test_data"]["sha256"], hashlib.sha256(f.read()).hexdigest())
        for key in ("input_model", "training_data", "test_data", "patched_model"):
            self.assertTrue(os.path.isabs(r[key]["absolute"]), key)
            self.assertTrue(os.path.samefile(r[key]["absolute"], r[key]["path"]), key)


def main():
    return run_tests(__name__)


if __name__ == "__main__":
    sys.exit(main())
