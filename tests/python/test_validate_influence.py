#!/usr/bin/env python3
"""lethe validate-influence: influence scores against leave-one-out and subset retraining.

    /usr/bin/python3 tests/python/test_validate_influence.py --lethe PATH/TO/lethe

- Koh & Liang on the digits softmax regression: Pearson(predicted, actual change of the test
  loss) >= 0.99 over the 10 largest |score| and 10 random removals, slope near 1 (the command
  built with predicted = -score fails here with Pearson -0.9987).
- The report is checked against the other commands, not against itself: its predictions are
  `lethe influence`'s scores, one of its "actual" changes is redone with `lethe train
  --forget-ids --init` and `lethe eval`, its correlations are recomputed with numpy, and the
  seed chooses the same random examples each time.
- The linear datamodeling score on the breast-cancer logistic regression; the PNG scatter
  (signature, size, pixels); bad inputs: one line, exit 1, no file written.
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
from png_reader import read_png

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "examples", "digits")
CANCER = os.path.join(ROOT, "examples", "breast_cancer")
LETHE = None
# tools/lethe/scatter_png.h
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 560, 120, 690, 50, 470


def run(*args):
    return subprocess.run([LETHE, *args, "--quiet"], capture_output=True, text=True)


def lethe(*args):
    r = run(*args)
    if r.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def ranks(v):
    """Fractional ranks (ties averaged), as engine/stats/correlation.h."""
    v = np.asarray(v, dtype=float)
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j < len(v) and v[order[j]] == v[order[i]]:
            j += 1
        r[order[i:j]] = (i + 1 + j) / 2
        i = j
    return r


def pearson(x, y):
    return float(np.corrcoef(x, y)[0, 1])


class ValidateInfluence(unittest.TestCase):
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

    def test_leave_one_out_digits_softmax(self):
        model = os.path.join(DIGITS, "model.safetensors")
        train, test = os.path.join(DIGITS, "train.npz"), os.path.join(DIGITS, "test.npz")
        out, plot = self.path("report.json"), self.path("loo.png")
        args = ["validate-influence", "--model", model, "--train", train, "--test", test,
                "--test-ids", "100015", "--remove", "10", "--subsets", "0", "--seed", "3"]
        report = json.loads(lethe(*args, "--json", "--out", out, "--plot", plot))
        with open(out) as f:
            self.assertEqual(json.load(f), report)  # --out holds the --json object
        for key in ("model", "train", "test", "n", "num_params", "test_ids", "seed", "grad_norm",
                    "convention", "settings", "solver", "exact", "leave_one_out", "retraining",
                    "warnings"):
            self.assertIn(key, report)
        self.assertNotIn("linear_datamodeling", report)  # --subsets 0
        self.assertEqual(report["n"], 1437)
        self.assertEqual(report["retraining"]["unconverged"], 0)
        loo = report["leave_one_out"]
        points = loo["points"]
        predicted = np.array([p["predicted"] for p in points])
        actual = np.array([p["actual"] for p in points])
        groups = [p["group"] for p in points]
        self.assertEqual(groups.count("top") + groups.count("both"), 10)
        self.assertEqual(groups.count("random") + groups.count("both"), 10)
        r = pearson(predicted, actual)
        print(f"\n  digits softmax, test id 100015: Pearson {r:.5f}, Spearman "
              f"{loo['per_test'][0]['all']['spearman']:.5f}, slope {loo['slope']:.4f}")
        self.assertGreaterEqual(r, 0.99)
        # Same sign and scale, not just correlated (a flipped sign gives Pearson -0.9987 and
        # fails both lines; a missing 1/n a slope of 1/1437).
        self.assertGreater(loo["slope"], 0.7)
        self.assertLess(loo["slope"], 1.5)
        # The report's correlations are those of its points.
        self.assertAlmostEqual(loo["per_test"][0]["all"]["pearson"], r, delta=1e-12)
        self.assertAlmostEqual(loo["per_test"][0]["all"]["spearman"],
                               pearson(ranks(predicted), ranks(actual)), delta=1e-12)
        self.assertAlmostEqual(loo["pooled"]["pearson"], r, delta=1e-12)
        # Predictions are lethe influence's scores; the 10 "top" are its 10 largest |score|.
        scores_csv = self.path("scores.csv")
        lethe("influence", "--model", model, "--train", train, "--test", test,
              "--test-ids", "100015", "--out", scores_csv, "--top-k", "10")
        with open(scores_csv) as f:
            top = {int(row["train_id"]): float(row["score"]) for row in csv.DictReader(f)}
        for p in points:
            if p["group"] in ("top", "both"):
                self.assertIn(p["train_id"], top)
                self.assertAlmostEqual(p["predicted"], top[p["train_id"]],
                                       delta=1e-12 * max(abs(v) for v in top.values()))
        # One actual change redone by hand: retrain without the example, and the reference
        # on all examples, both warm-started from the model, then the test loss of each.
        probe = self.path("probe.npz")
        d = np.load(test)
        k = int(np.nonzero(d["ids"] == 100015)[0][0])
        np.savez(probe, X=d["X"][k:k + 1], y=d["y"][k:k + 1], ids=d["ids"][k:k + 1])
        first = points[0]
        loo_model, ref_model = self.path("loo.safetensors"), self.path("ref.safetensors")
        lethe("train", "--init", model, "--data", train, "--forget-ids", str(first["train_id"]),
              "--out", loo_model)
        lethe("train", "--init", model, "--data", train, "--out", ref_model)
        loss = lambda m: json.loads(lethe("eval", "--model", m, "--data", probe, "--json"))["loss"]
        self.assertAlmostEqual(first["actual"], loss(loo_model) - loss(ref_model),
                               delta=1e-7 * abs(first["actual"]))
        # The scatter: a 720 × 560 RGB PNG, white canvas, black frame, grey y = x diagonal,
        # one blue disc per point.
        w, h, px = read_png(plot)
        self.assertEqual((w, h), (WIDTH, HEIGHT))
        self.assertEqual(px[5, 5].tolist(), [255, 255, 255])
        self.assertEqual(px[TOP, LEFT].tolist(), [0, 0, 0])
        self.assertEqual(px[BOTTOM, RIGHT].tolist(), [0, 0, 0])
        self.assertEqual(px[(TOP + BOTTOM) // 2, LEFT].tolist(), [0, 0, 0])
        blue = np.all(px == [31, 119, 180], axis=2)
        self.assertGreater(int(blue.sum()), 20 * 5)  # 20 discs of ≥ 5 pixels, some overlapping
        # The diagonal: grey where no point covers it, a few pixels in from the frame.
        for t in (0.1, 0.5, 0.9):
            x = LEFT + round(t * (RIGHT - LEFT))
            y = BOTTOM - round(t * (BOTTOM - TOP))
            window = px[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).tolist()
            self.assertTrue(any(c in ([150, 150, 150], [31, 119, 180]) for c in window), (t, window))
        # Title ink: black pixels above the frame.
        self.assertGreater(int(np.all(px[:TOP] == 0, axis=2).sum()), 200)

    def test_linear_datamodeling_logistic(self):
        model = self.path("cancer.safetensors")
        train, test = os.path.join(CANCER, "train.npz"), os.path.join(CANCER, "test.npz")
        lethe("train", "--spec", os.path.join(CANCER, "logistic.json"), "--data", train, "--out", model)
        args = ["validate-influence", "--model", model, "--train", train, "--test", test,
                "--test-ids", "100000,100001,100002", "--remove", "10", "--subsets", "20",
                "--fraction", "0.5", "--json"]
        report = json.loads(lethe(*args))
        # The seed chooses the random examples and subsets: the same report each time (but
        # for timings), another one with another seed.
        again = json.loads(lethe(*args))
        for r in (report, again):
            r["solver"].pop("seconds")
            r["retraining"].pop("seconds")
        self.assertEqual(again, report)
        other = json.loads(lethe(*args, "--seed", "1"))
        random = lambda r: {p["train_id"] for p in r["leave_one_out"]["points"] if p["group"] != "top"}
        self.assertNotEqual(random(other), random(report))
        self.assertNotEqual(other["linear_datamodeling"]["per_test"][0]["actual"],
                            report["linear_datamodeling"]["per_test"][0]["actual"])
        lds = report["linear_datamodeling"]
        self.assertEqual((lds["subsets"], lds["fraction"], lds["subset_size"]), (20, 0.5, 228))
        self.assertEqual(len(lds["per_test"]), 3)
        spearmans = []
        for e in lds["per_test"]:
            self.assertEqual(len(e["predicted"]), 20)
            rho = pearson(ranks(e["predicted"]), ranks(e["actual"]))
            self.assertAlmostEqual(e["spearman"], rho, delta=1e-12)
            self.assertAlmostEqual(e["pearson"], pearson(e["predicted"], e["actual"]), delta=1e-12)
            spearmans.append(rho)
        self.assertAlmostEqual(lds["lds"], float(np.mean(spearmans)), delta=1e-12)
        print(f"\n  breast cancer logistic, 3 test examples, 20 half-subsets: LDS {lds['lds']:.4f}")
        # Removing half the data is far from a first-order perturbation, yet on a convex model
        # the summed scores still order the subsets (a wrong sign would give about -LDS).
        self.assertGreaterEqual(lds["lds"], 0.8)
        self.assertEqual(report["retraining"]["retrainings"],
                         1 + report["leave_one_out"]["retrainings"] + 20)

    def test_bad_inputs(self):
        model = os.path.join(DIGITS, "model.safetensors")
        train, test = os.path.join(DIGITS, "train.npz"), os.path.join(DIGITS, "test.npz")
        unfinished = self.path("unfinished.safetensors")
        lethe("train", "--spec", os.path.join(DIGITS, "softmax.json"), "--data", train,
              "--max-iterations", "3", "--out", unfinished)
        base = ["validate-influence", "--model", model, "--train", train, "--test", test,
                "--test-ids", "100015", "--remove", "2", "--subsets", "0"]
        out, plot = self.path("r.json"), self.path("p.png")
        spec = self.path("spec.json")  # a copy: were the refusal missing, the run would write it
        with open(os.path.join(DIGITS, "softmax.json")) as f, open(spec, "w") as g:
            g.write(f.read())
        cases = {
            "--remove 1": (base[:-4] + ["--remove", "1"], "--remove 1"),
            "--subsets 2": (base[:-2] + ["--subsets", "2"], "--subsets 2"),
            "nothing": (base[:-4] + ["--remove", "0", "--subsets", "0"], "nothing to validate"),
            "--fraction 1": (base[:-2] + ["--subsets", "3", "--fraction", "1"], "--fraction 1"),
            "tiny fraction": (base[:-2] + ["--subsets", "3", "--fraction", "0.0001"], "keeps 0"),
            "--remove > n": (base[:-4] + ["--remove", "5000"], "5000"),
            "unknown test id": (base[:7] + ["--test-ids", "7"] + base[9:], "7"),
            "no --test-ids": (base[:7] + base[9:], "--test-ids is required"),
            "--plot x.txt": (base + ["--plot", self.path("x.txt")], "must end in .png"),
            "--out x.csv": (base + ["--out", self.path("x.csv")], "must end in .json"),
            "--plot without leave-one-out": (base[:-4] + ["--remove", "0", "--subsets", "3",
                                                          "--plot", plot], "--remove 0"),
            "adam": (base + ["--optimizer", "adam"], "adam"),
            "output is input": (base + ["--spec", spec, "--out", spec], "refusing to overwrite"),
            "not stationary": (["validate-influence", "--model", unfinished] + base[3:],
                               "not at a stationary point"),
        }
        for name, (args, needle) in cases.items():
            with self.subTest(name):
                r = run(*args, "--out", out, "--plot", plot) if name == "not stationary" else run(*args)
                self.assertEqual(r.returncode, 1, (name, r.stderr))
                lines = r.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, (name, r.stderr))
                self.assertIn(needle, lines[0], name)
                self.assertEqual(r.stdout, "", name)
                self.assertFalse(os.path.exists(out) or os.path.exists(plot), name)
                self.assertFalse(os.path.exists(self.path("x.txt")) or
                                 os.path.exists(self.path("x.csv")), name)


def main():
    return run_tests(__name__)


if __name__ == "__main__":
    sys.exit(main())
