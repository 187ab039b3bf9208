#!/usr/bin/env python3
"""Differential privacy end to end: `lethe privacy` and `lethe train --dp`.

    /usr/bin/python3 tests/python/test_privacy.py --lethe PATH/TO/lethe [unittest args]

* `lethe privacy` prints Opacus's reference epsilon (sigma 1.5, q 0.04, 2250 steps, delta
  1e-5 -> 7.32911117143) and finds sigma for a target epsilon that meets it.
* `lethe train --dp` is DP-SGD exactly as docs/privacy.md states it: one epoch from the
  committed digits model is reproduced in numpy with an independent mt19937_64, Box-Muller,
  Poisson sampling, clipping, noise, division by q*n and weight decay.
* The same seed writes the same bytes; another seed another model.
* The model carries its guarantee (__metadata__["lethe_dp"]) with the epsilon `lethe privacy`
  gives for the same parameters; `lethe inspect` shows it; `lethe unlearn` drops it.
* A private model still learns (test accuracy), and bad options are one-line errors.
"""

import json
import math
import os
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
SPEC, MODEL = os.path.join(DIGITS, "softmax.json"), os.path.join(DIGITS, "model.safetensors")

# Opacus's own test (opacus/tests/accountants_test.py); the accountant meets it to 1e-9.
REFERENCE_EPSILON = 7.32911117143
REFERENCE_TOLERANCE = 1e-9
# numpy and lethe sum the same per-example gradients in different orders: ~1e-16 per
# operation over ~20 steps of a 650-parameter model.
MECHANISM_TOLERANCE = 1e-10


def run(*args, check=True):
    r = subprocess.run([LETHE, *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def require_lethe():
    if not LETHE or not (os.path.isfile(LETHE) and os.access(LETHE, os.X_OK)):
        raise unittest.SkipTest(f"lethe binary not found (--lethe {LETHE!r})")


class MT19937_64:
    """The 64-bit Mersenne Twister (the C++ standard's std::mt19937_64), written from its
    published definition (Matsumoto & Nishimura; C++ [rand.eng.mers])."""
    N, M, MASK = 312, 156, (1 << 64) - 1

    def __init__(self, seed):
        self.mt = [seed & self.MASK]
        for i in range(1, self.N):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & self.MASK)
        self.index = self.N

    def _twist(self):
        mt = self.mt
        for i in range(self.N):
            x = (mt[i] & 0xFFFFFFFF80000000) | (mt[(i + 1) % self.N] & 0x7FFFFFFF)
            xa = x >> 1
            if x & 1:
                xa ^= 0xB5026F5AA96619E9
            mt[i] = mt[(i + self.M) % self.N] ^ xa
        self.index = 0

    def __call__(self):
        if self.index >= self.N:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000 & self.MASK
        y ^= (y << 37) & 0xFFF7EEE000000000 & self.MASK
        y ^= y >> 43
        return y


class SeededRandom:
    """engine/privacy/seeded_random.h as documented: 53-bit uniforms, Box-Muller pairs."""

    def __init__(self, seed):
        self.engine = MT19937_64(seed)
        self.spare = None

    def uniform(self):
        return (self.engine() >> 11) * 2.0 ** -53

    def normal(self):
        if self.spare is not None:
            z, self.spare = self.spare, None
            return z
        u1, u2 = 1.0 - self.uniform(), self.uniform()
        radius, angle = math.sqrt(-2.0 * math.log(u1)), 2.0 * math.pi * u2
        self.spare = radius * math.sin(angle)
        return radius * math.cos(angle)


def dp_sgd_softmax(W, b, X, y, *, C, sigma, q, epochs, lr, l2, seed):
    """DP-SGD on a softmax regression as docs/privacy.md defines it, in numpy."""
    n = X.shape[0]
    rng = SeededRandom(seed)
    steps_per_epoch = math.ceil((1 / q) * (1 - 1e-12))
    theta = np.concatenate([W.ravel(), b])
    out, d = W.shape
    for _ in range(epochs * steps_per_epoch):
        sample = [i for i in range(n) if rng.uniform() < q]
        total = np.zeros_like(theta)
        if sample:
            Wt, bt = theta[:out * d].reshape(out, d), theta[out * d:]
            logits = X[sample] @ Wt.T + bt
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            delta = p.copy()
            delta[np.arange(len(sample)), y[sample]] -= 1  # d(-log softmax_y)/d logits
            grads = np.concatenate([(delta[:, :, None] * X[sample][:, None, :]).reshape(len(sample), -1),
                                    delta], axis=1)
            norms = np.linalg.norm(grads, axis=1)
            weights = np.where(norms > C, C / np.where(norms > 0, norms, 1), 1.0)
            total = weights @ grads
        noise = np.array([sigma * C * rng.normal() for _ in range(theta.size)])
        theta = (1 - lr * l2) * theta - lr / (q * n) * (total + noise)
    return theta


def dp_metadata(path):
    _, metadata = read_safetensors(path)
    return json.loads(metadata["lethe_dp"]) if "lethe_dp" in metadata else None


def theta_of(path):
    tensors, _ = read_safetensors(path)
    return np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in tensors.values()])


class TestPrivacyCommand(unittest.TestCase):
    def setUp(self):
        require_lethe()

    def test_reference_epsilon(self):
        args = ["privacy", "--noise-multiplier", "1.5", "--sample-rate", "0.04", "--steps", "2250",
                "--delta", "1e-5"]
        j = json.loads(run(*args, "--json").stdout)
        self.assertLess(abs(j["epsilon"] - REFERENCE_EPSILON), REFERENCE_TOLERANCE)
        self.assertEqual(j["best_order"], 3.9)
        self.assertEqual((j["accountant"], j["accountant_version"]), ("rdp", 1))
        text = run(*args).stdout
        self.assertIn("epsilon 7.3291111714", text)
        self.assertIn("best order 3.9", text)

    def test_target_epsilon(self):
        # Opacus's get_noise_multiplier gives 1.416 here (its bisection stops within 0.01 of ε).
        j = json.loads(run("privacy", "--target-epsilon", "8", "--sample-rate", "0.04", "--steps",
                           "2250", "--delta", "1e-5", "--json").stdout)
        sigma = j["noise_multiplier"]
        self.assertAlmostEqual(sigma, 1.416, delta=2e-3)
        self.assertLessEqual(j["epsilon"], 8)
        back = json.loads(run("privacy", "--noise-multiplier", repr(sigma), "--sample-rate", "0.04",
                              "--steps", "2250", "--delta", "1e-5", "--json").stdout)
        self.assertEqual(back["epsilon"], j["epsilon"])
        below = json.loads(run("privacy", "--noise-multiplier", repr(sigma * (1 - 2e-6)),
                               "--sample-rate", "0.04", "--steps", "2250", "--delta", "1e-5",
                               "--json").stdout)
        self.assertGreater(below["epsilon"], 8)

    def test_bad_options(self):
        base = ["--sample-rate", "0.04", "--steps", "100", "--delta", "1e-5"]
        for args, needle in [
                (["--noise-multiplier", "1", "--sample-rate", "0.04", "--steps", "100"], "--delta"),
                (base, "--noise-multiplier or --target-epsilon"),
                (base + ["--noise-multiplier", "1", "--target-epsilon", "2"], "exactly one"),
                (["--noise-multiplier", "0"] + base, "--noise-multiplier"),
                (["--noise-multiplier", "1", "--sample-rate", "1.5", "--steps", "1", "--delta", "1e-5"],
                 "--sample-rate"),
                (["--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "-3", "--delta", "1e-5"],
                 "--steps"),
                (["--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "3", "--delta", "1"],
                 "--delta"),
                (["--target-epsilon", "-1"] + base, "--target-epsilon"),
                (["--noise-multiplier", "abc"] + base, "noise-multiplier")]:
            with self.subTest(args=args):
                r = run("privacy", *args, check=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertEqual(r.stdout, "")
                lines = r.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertIn(needle, lines[0])


class TestTrainDp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_lethe()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.private = cls.path("private.safetensors")
        cls.train_json = json.loads(run(
            "train", "--dp", "--target-epsilon", "4", "--epochs", "20", "--seed", "7",
            "--spec", SPEC, "--data", TRAIN, "--out", cls.private, "--json").stdout)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def path(cls, name):
        return os.path.join(cls.tmp.name, name)

    def test_mechanism_matches_numpy(self):
        """One run from the committed model, checked step by step against numpy."""
        out = self.path("one_epoch.safetensors")
        C, sigma, q, lr, seed = 0.5, 0.8, 0.1, 0.3, 12345
        run("train", "--dp", "--init", MODEL, "--data", TRAIN, "--out", out, "--epochs", "2",
            "--noise-multiplier", repr(sigma), "--max-grad-norm", repr(C), "--sample-rate", repr(q),
            "--learning-rate", repr(lr), "--seed", str(seed), "--quiet")
        tensors, metadata = read_safetensors(MODEL)
        W, b = tensors["0.weight"], tensors["0.bias"]
        data = np.load(TRAIN)
        l2 = json.loads(metadata["lethe"])["l2"]
        expected = dp_sgd_softmax(W, b, data["X"], data["y"], C=C, sigma=sigma, q=q, epochs=2,
                                  lr=lr, l2=l2, seed=seed)
        got = theta_of(out)
        self.assertLess(np.max(np.abs(got - expected)), MECHANISM_TOLERANCE * max(1, np.max(np.abs(expected))))
        # The run moved the model (a test that noise and steps happened at all).
        self.assertGreater(np.max(np.abs(got - np.concatenate([W.ravel(), b]))), 1e-2)

    def test_mt19937_64_is_the_standard_one(self):
        # C++ [rand.predef]: the 10000th output of a default-constructed mt19937_64.
        engine = MT19937_64(5489)
        for _ in range(9999):
            engine()
        self.assertEqual(engine(), 9981545732273789042)

    def test_same_seed_same_bytes(self):
        a, b, c = (self.path(n) for n in ("a.safetensors", "b.safetensors", "c.safetensors"))
        args = ["train", "--dp", "--noise-multiplier", "1.0", "--epochs", "3", "--spec", SPEC,
                "--data", TRAIN, "--quiet"]
        run(*args, "--seed", "3", "--out", a)
        run(*args, "--seed", "3", "--out", b)
        run(*args, "--seed", "4", "--out", c)
        with open(a, "rb") as fa, open(b, "rb") as fb, open(c, "rb") as fc:
            ba, bb, bc = fa.read(), fb.read(), fc.read()
        self.assertEqual(ba, bb)
        self.assertNotEqual(theta_of(a).tolist(), theta_of(c).tolist())

    def test_metadata_is_the_accountants(self):
        dp = dp_metadata(self.private)
        n = 1437
        q = 128 / n  # --batch-size's default as q·n
        self.assertEqual(dp["mechanism"], "dp-sgd")
        self.assertEqual((dp["accountant"], dp["accountant_version"]), ("rdp", 1))
        self.assertEqual(dp["examples"], n)
        self.assertEqual(dp["delta"], 1e-4)  # 1/1437 rounded down to a power of ten
        self.assertAlmostEqual(dp["sample_rate"], q, places=15)
        self.assertEqual(dp["steps"], 20 * math.ceil(n / 128))
        self.assertEqual(dp["max_grad_norm"], 1.0)
        self.assertEqual(dp["learning_rate"], 0.5)
        self.assertEqual(dp["l2"], 1e-3)
        self.assertLessEqual(dp["epsilon"], 4)
        self.assertGreater(dp["epsilon"], 3.99)
        self.assertNotIn("seed", dp)  # the seed would let anyone remove the noise
        # The accountant, asked directly, gives the same ε for the same parameters.
        again = json.loads(run("privacy", "--noise-multiplier", repr(dp["noise_multiplier"]),
                               "--sample-rate", repr(dp["sample_rate"]), "--steps", str(dp["steps"]),
                               "--delta", repr(dp["delta"]), "--json").stdout)
        self.assertEqual(again["epsilon"], dp["epsilon"])
        self.assertEqual(again["best_order"], dp["best_order"])
        self.assertEqual(self.train_json["dp"], dp)

    def test_inspect_shows_the_guarantee(self):
        dp = dp_metadata(self.private)
        j = json.loads(run("inspect", self.private, "--json").stdout)
        self.assertEqual(j["dp"], dp)
        text = run("inspect", self.private).stdout
        self.assertIn(f"(epsilon, delta) = ({dp['epsilon']!r}, 1e-04)-DP", text)
        self.assertIn("accountant rdp v1", text)
        self.assertIn("no differential-privacy guarantee", run("inspect", MODEL).stdout)
        self.assertIsNone(json.loads(run("inspect", MODEL, "--json").stdout)["dp"])

    def test_derived_models_do_not_claim_it(self):
        # A Newton patch and a non-private retrain read the data outside the mechanism.
        forget = os.path.join(DIGITS, "forget.txt")
        patched, retrained = self.path("patched.safetensors"), self.path("retrained.safetensors")
        run("unlearn", "--model", self.private, "--train", TRAIN, "--forget", forget, "--out", patched,
            "--quiet")
        self.assertIsNone(dp_metadata(patched))
        run("train", "--init", self.private, "--data", TRAIN, "--out", retrained, "--max-iterations",
            "3", "--quiet")
        self.assertIsNone(dp_metadata(retrained))

    def test_private_model_learns(self):
        acc = json.loads(run("eval", "--model", self.private, "--data", TEST, "--json").stdout)["accuracy"]
        self.assertGreater(acc, 0.85)

    def test_bad_options(self):
        base = ["train", "--spec", SPEC, "--data", TRAIN, "--out", self.path("bad.safetensors")]
        for args, needle in [
                (["--dp"], "--noise-multiplier S or --target-epsilon E"),
                (["--dp", "--noise-multiplier", "1", "--target-epsilon", "2"], "exactly one"),
                (["--noise-multiplier", "1"], "--noise-multiplier needs --dp"),
                (["--dp", "--noise-multiplier", "1", "--optimizer", "adam"], "--optimizer does not apply"),
                (["--dp", "--noise-multiplier", "0"], "--noise-multiplier"),
                (["--dp", "--noise-multiplier", "1", "--max-grad-norm", "-1"], "--max-grad-norm"),
                (["--dp", "--noise-multiplier", "1", "--sample-rate", "2"], "--sample-rate"),
                (["--dp", "--noise-multiplier", "1", "--sample-rate", "0.1", "--batch-size", "10"],
                 "not both"),
                (["--dp", "--noise-multiplier", "1", "--delta", "0"], "--delta"),
                (["--dp", "--noise-multiplier", "1", "--epochs", "0"], "--epochs"),
                (["--dp", "--target-epsilon", "0"], "--target-epsilon")]:
            with self.subTest(args=args):
                r = run(*base, *args, check=False)
                self.assertNotEqual(r.returncode, 0)
                lines = r.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertIn(needle, lines[0])
                self.assertFalse(os.path.exists(self.path("bad.safetensors")))


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
