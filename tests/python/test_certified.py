#!/usr/bin/env python3
"""Certified removal end to end: `lethe train --certified` and `lethe unlearn --certified`.

    /usr/bin/python3 tests/python/test_certified.py --lethe PATH/TO/lethe [unittest args]

* train --certified writes the secret b next to the model (float64 .npy, owner-only), never
  into it; the model records sigma, b's SHA-256, loss, gamma and l2, and `lethe inspect`
  shows them. The model is the minimiser of the perturbed objective, checked in numpy:
  mean cross-entropy + (l2/2)|theta|^2 + b.theta/n has zero gradient.
* unlearn --certified: each removal's bound is at least the kept objective's true gradient
  residual (recomputed in numpy from the patched file), beta accumulates over a sequence of
  removals, and epsilon = sqrt(2 ln(1.5/delta)) * beta / sigma by hand.
* The budget: refused with nothing written, or --on-budget retrain: a fresh b, beta reset,
  the minimiser of the kept data's new perturbed objective.
* Refusals, one line each: no b, another model's b, a model outside the theory, f32,
  a model not trained --certified, plain unlearn on a certified model.
"""

import hashlib
import json
import math
import os
import stat
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
TRAIN, SPEC, MLP = (os.path.join(DIGITS, f) for f in ("train.npz", "softmax.json", "mlp.json"))
PLAIN_MODEL = os.path.join(DIGITS, "model.safetensors")
SIGMA, DELTA = 2.0, 1e-5


def run(*args, check=True):
    r = subprocess.run([LETHE, *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def load_theta(path):
    tensors, meta = read_safetensors(path)
    W, c = tensors["0.weight"].astype(np.float64), tensors["0.bias"].astype(np.float64)
    return W, c, meta


def kept_gradient(W, c, b, l2, X, y):
    """Sum-form gradient of sum_i CE_i + (m l2/2)|theta|^2 + b.theta over the rows X, y,
    in theta order (weight row-major, then bias)."""
    m = X.shape[0]
    z = X @ W.T + c
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(m), y] -= 1
    gW = p.T @ X + m * l2 * W
    gc = p.sum(axis=0) + m * l2 * c
    return np.concatenate([gW.ravel(), gc]) + b


def c_of(delta):
    return math.sqrt(2 * math.log(1.5 / delta))


class Certified(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not LETHE or not os.access(LETHE, os.X_OK):
            raise unittest.SkipTest(f"lethe binary not found (--lethe {LETHE!r})")
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        cls.model = os.path.join(cls.dir, "cert.safetensors")
        cls.b = os.path.join(cls.dir, "cert.b.npy")
        run("train", "--certified", "--sigma", str(SIGMA), "--seed", "17", "--spec", SPEC,
            "--data", TRAIN, "--out", cls.model, "--quiet")
        d = np.load(TRAIN)
        cls.X, cls.y, cls.ids = d["X"], d["y"], d["ids"]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def refused(self, *args, contains):
        r = run(*args, check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn(contains, r.stderr)
        return r

    def test_train_writes_b_apart_and_records_it(self):
        b = np.load(self.b)
        self.assertEqual((b.dtype, b.shape), (np.float64, (650,)))
        self.assertEqual(stat.S_IMODE(os.stat(self.b).st_mode), 0o600)
        self.assertAlmostEqual(float(b.std()), SIGMA, delta=0.15 * SIGMA)
        W, c, meta = load_theta(self.model)
        rec = json.loads(meta["lethe_certified"])
        self.assertEqual(rec["sigma"], SIGMA)
        self.assertEqual(rec["b_sha256"], hashlib.sha256(b.astype("<f8").tobytes()).hexdigest())
        self.assertEqual((rec["loss"], rec["gamma"], rec["l2"]), ("cross_entropy", 1 / math.sqrt(2), 0.001))
        self.assertEqual((rec["examples"], rec["removals"], rec["beta"]), (1437, 0, 0))
        # b itself is nowhere in the model file.
        with open(self.model, "rb") as f:
            raw = f.read()
        self.assertNotIn(b.tobytes()[:64], raw)
        self.assertNotIn(repr(float(b[0]))[:12].encode(), raw)
        shown = run("inspect", self.model).stdout
        self.assertIn("certified removal", shown)
        self.assertIn("b ~ N(0, 2²I)", shown)
        self.assertEqual(json.loads(run("inspect", self.model, "--json").stdout)["certified"]["sigma"], SIGMA)

    def test_model_minimises_the_perturbed_objective(self):
        # mean form: (1/n) sum CE + (l2/2)|theta|^2 + b.theta/n, so the sum-form gradient is n times it.
        W, c, _ = load_theta(self.model)
        g = kept_gradient(W, c, np.load(self.b), 0.001, self.X, self.y)
        self.assertLess(np.linalg.norm(g) / len(self.y), 1e-8)
        # Without b (or with b/n's scale wrong by a factor) it is not a minimiser.
        g0 = kept_gradient(W, c, 0 * np.load(self.b), 0.001, self.X, self.y)
        self.assertGreater(np.linalg.norm(g0) / len(self.y), 1e-4)

    def test_same_seed_same_b(self):
        out = self.path("again.safetensors")
        run("train", "--certified", "--sigma", str(SIGMA), "--seed", "17", "--spec", SPEC,
            "--data", TRAIN, "--out", out, "--quiet")
        self.assertEqual(np.load(self.path("again.b.npy")).tobytes(), np.load(self.b).tobytes())
        run("train", "--certified", "--sigma", str(SIGMA), "--spec", SPEC, "--data", TRAIN,
            "--out", out, "--quiet")  # no --seed: a fresh one
        self.assertNotEqual(np.load(self.path("again.b.npy")).tobytes(), np.load(self.b).tobytes())

    def unlearn(self, model, out, ids, budget="10", *extra, b=None):
        r = run("unlearn", "--certified", "--model", model, "--b", b or self.b, "--train", TRAIN,
                "--forget-ids", ids, "--delta", str(DELTA), "--epsilon-budget", budget,
                "--out", out, "--json", "--quiet", *extra)
        return json.loads(r.stdout)

    def test_sequence_of_removals(self):
        b = np.load(self.b)
        model, beta, removed = self.model, 0.0, []
        for step, ids in enumerate(["3", "4,5", "100,200,300,400"]):
            out = self.path(f"seq{step}.safetensors")
            j = self.unlearn(model, out, ids, "50")
            removed += [int(i) for i in ids.split(",")]
            s = j["step"]
            self.assertAlmostEqual(s["beta"], s["solve_residual"] + s["taylor"], delta=1e-15 * s["beta"])
            # The true residual, recomputed here from the patched file on the kept rows.
            W, c, meta = load_theta(out)
            keep = ~np.isin(self.ids, removed)
            residual = np.linalg.norm(kept_gradient(W, c, b, 0.001, self.X[keep], self.y[keep]))
            self.assertAlmostEqual(residual, s["residual_measured"], delta=1e-6 * residual + 1e-12)
            self.assertLessEqual(residual, s["beta"])
            self.assertGreater(residual, 0)
            beta += s["beta"]
            rec = json.loads(meta["lethe_certified"])
            self.assertAlmostEqual(rec["beta"], beta, delta=1e-14 * beta)
            self.assertAlmostEqual(rec["epsilon"], c_of(DELTA) * beta / SIGMA, delta=1e-12 * beta)
            self.assertEqual((rec["removals"], rec["removed"], rec["examples"]),
                             (step + 1, len(removed), 1437 - len(removed)))
            self.assertEqual(j["method"], "certified-newton")
            model = out
        self.assertEqual(json.loads(meta["lethe_forgotten"])["ids"], sorted(removed))

    def test_budget_refuses_and_writes_nothing(self):
        out = self.path("over.safetensors")
        r = self.refused("unlearn", "--certified", "--model", self.model, "--b", self.b, "--train",
                         TRAIN, "--forget-ids", "7", "--delta", "1e-5", "--epsilon-budget", "1e-6",
                         "--out", out, contains="certified removal refused, nothing written")
        self.assertIn("--epsilon-budget", r.stderr)
        self.assertFalse(os.path.exists(out))

    def test_budget_retrains_with_fresh_b(self):
        out, b_out = self.path("retrained.safetensors"), self.path("fresh.b.npy")
        j = self.unlearn(self.model, out, "7,8", "1e-6", "--on-budget", "retrain", "--b-out", b_out,
                         "--seed", "5")
        self.assertEqual(j["method"], "retrain")
        fresh = np.load(b_out)
        self.assertFalse(np.array_equal(fresh, np.load(self.b)))
        W, c, meta = load_theta(out)
        rec = json.loads(meta["lethe_certified"])
        self.assertEqual((rec["beta"], rec["removals"], rec["examples"], rec["examples_trained"]),
                         (0, 0, 1435, 1435))
        self.assertEqual(rec["b_sha256"], hashlib.sha256(fresh.tobytes()).hexdigest())
        keep = ~np.isin(self.ids, [7, 8])
        g = kept_gradient(W, c, fresh, 0.001, self.X[keep], self.y[keep])
        self.assertLess(np.linalg.norm(g) / keep.sum(), 1e-8)
        self.assertEqual(json.loads(meta["lethe_forgotten"])["ids"], [7, 8])
        # The old b no longer opens it.
        self.refused("unlearn", "--certified", "--model", out, "--b", self.b, "--train", TRAIN,
                     "--forget-ids", "9", "--delta", "1e-5", "--epsilon-budget", "1",
                     "--out", self.path("x.safetensors"), contains="not the perturbation")

    def test_refusals(self):
        out = self.path("never.safetensors")
        base = ["unlearn", "--certified", "--train", TRAIN, "--forget-ids", "3", "--delta", "1e-5",
                "--epsilon-budget", "1", "--out", out]
        self.refused(*base, "--model", self.model, contains="--b is required")
        self.refused(*base, "--model", self.model, "--b", self.path("missing.npy"), contains="missing.npy")
        other = self.path("other.safetensors")
        run("train", "--certified", "--sigma", "1", "--seed", "99", "--spec", SPEC, "--data", TRAIN,
            "--out", other, "--quiet")
        self.refused(*base, "--model", self.model, "--b", self.path("other.b.npy"),
                     contains="not the perturbation")
        self.refused(*base, "--model", PLAIN_MODEL, "--b", self.b, contains="not trained with lethe train --certified")
        self.refused(*base, "--model", self.model, "--b", self.b, "--dtype", "f32", contains="f64")
        self.refused("unlearn", "--model", self.model, "--train", TRAIN, "--forget-ids", "3", "--out", out,
                     contains="unlearn --certified")
        self.refused("train", "--certified", "--sigma", "1", "--spec", MLP, "--data", TRAIN, "--out", out,
                     contains="outside certified removal's theory")
        self.refused("train", "--certified", "--spec", SPEC, "--data", TRAIN, "--out", out, contains="--sigma")
        self.refused("train", "--sigma", "1", "--spec", SPEC, "--data", TRAIN, "--out", out,
                     contains="needs --certified")
        self.refused("train", "--certified", "--dp", "--sigma", "1", "--spec", SPEC, "--data", TRAIN,
                     "--out", out, contains="not both")
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
