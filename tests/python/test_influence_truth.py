#!/usr/bin/env python3
"""Influence scores against ground truth: actual leave-one-out retraining.

    /usr/bin/python3 tests/python/test_influence_truth.py --lethe PATH/TO/lethe

- Koh & Liang's experiment: for one test example of a convex model (softmax regression on
  the bundled digits), remove each of the 20 training examples of largest |score|, retrain
  to convergence with `lethe train --forget-ids ID --init FULL`, and compare the predicted
  change of the test loss (the score) with the actual one: Pearson >= 0.98.
- Self-influence finds planted label flips: flip 5% of the training labels, train, and the
  flipped examples must dominate the top 5% of the self-influence ranking.
Plain unittest; ends with a line "N passed, N failed, N skipped".
"""
import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest

from lethe_test_main import run_tests

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "examples", "digits")
LETHE = None


def lethe(*args):
    r = subprocess.run([LETHE, *args, "--quiet"], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def write_npz(path, X, y, ids):
    np.savez(path, X=np.asarray(X, dtype=np.float64), y=np.asarray(y, dtype=np.int64),
             ids=np.asarray(ids, dtype=np.int64))


class InfluenceTruth(unittest.TestCase):
    def setUp(self):
        if not LETHE or not os.access(LETHE, os.X_OK):
            self.skipTest("no lethe binary (pass --lethe)")
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        if hasattr(self, "tmp"):
            self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_koh_liang_leave_one_out(self):
        spec = os.path.join(DIGITS, "softmax.json")
        train = os.path.join(DIGITS, "train.npz")
        full = self.path("full.safetensors")
        lethe("train", "--spec", spec, "--data", train, "--out", full)
        # The test example: the one the model finds hardest (largest loss), whose loss moves most.
        test = np.load(os.path.join(DIGITS, "test.npz"))
        probe = self.path("probe.npz")
        losses = []
        for j in range(40):
            write_npz(probe, test["X"][j:j + 1], test["y"][j:j + 1], test["ids"][j:j + 1])
            losses.append(json.loads(lethe("eval", "--model", full, "--data", probe, "--json"))["loss"])
        j = int(np.argmax(losses))
        write_npz(probe, test["X"][j:j + 1], test["y"][j:j + 1], test["ids"][j:j + 1])
        base = losses[j]
        scores_csv = self.path("scores.csv")
        lethe("influence", "--model", full, "--train", train, "--test", probe,
              "--out", scores_csv, "--top-k", "20")
        with open(scores_csv) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 20)
        predicted, actual = [], []
        for row in rows:
            retrained = self.path("loo.safetensors")
            lethe("train", "--init", full, "--data", train, "--forget-ids", row["train_id"],
                  "--out", retrained)
            loss = json.loads(lethe("eval", "--model", retrained, "--data", probe, "--json"))["loss"]
            predicted.append(float(row["score"]))
            actual.append(loss - base)
        r = float(np.corrcoef(predicted, actual)[0, 1])
        slope = float(np.polyfit(predicted, actual, 1)[0])
        print(f"\n  test id {int(test['ids'][j])}: Pearson(predicted, actual) = {r:.5f}, "
              f"slope {slope:.4f} over the 20 largest |score|")
        self.assertGreaterEqual(r, 0.98)
        # Same sign and scale, not just correlated: the first-order prediction of a 1/n
        # perturbation is accurate to a few percent here.
        self.assertGreater(slope, 0.7)
        self.assertLess(slope, 1.5)

    def test_self_influence_finds_label_flips(self):
        d = np.load(os.path.join(DIGITS, "train.npz"))
        X, y, ids = d["X"], d["y"].copy(), d["ids"]
        rng = np.random.default_rng(0)
        k = int(round(0.05 * len(y)))
        flipped = rng.choice(len(y), size=k, replace=False)
        y[flipped] = (y[flipped] + rng.integers(1, 10, size=k)) % 10
        noisy = self.path("noisy.npz")
        write_npz(noisy, X, y, ids)
        model = self.path("noisy.safetensors")
        lethe("train", "--spec", os.path.join(DIGITS, "softmax.json"), "--data", noisy, "--out", model)
        out = self.path("self.csv")
        lethe("self-influence", "--model", model, "--train", noisy, "--out", out)
        with open(out) as f:
            scores = {int(r["train_id"]): float(r["score"]) for r in csv.DictReader(f)}
        top = sorted(scores, key=scores.get, reverse=True)[:k]
        precision = len(set(top) & set(int(i) for i in ids[flipped])) / k
        print(f"\n  {k} flipped labels; precision at 5% = {precision:.3f}")
        self.assertGreaterEqual(precision, 0.6)  # random ranking gives 0.05


def main():
    return run_tests(__name__)


if __name__ == "__main__":
    sys.exit(main())
