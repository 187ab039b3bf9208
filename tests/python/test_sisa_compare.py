#!/usr/bin/env python3
"""`lethe compare` and `lethe influence` on SISA ensembles (docs/unlearning.md, docs/influence.md).

    /usr/bin/python3 tests/python/test_sisa_compare.py --lethe PATH/TO/lethe

- compare: an ensemble's per-set loss and accuracy, test agreement and membership AUC come
  from its aggregated predictions, recomputed here in numpy from the constituents' weights
  (softmax regression: p = softmax(W x + b)): mean, −log p̄_y; vote, 1 − v_y/S; the AUC by
  pair counting. A 1-shard, 1-slice mean ensemble equals its constituent as a plain model.
  Parameter distances: per constituent between ensembles of one partition (and their root
  sum of squares), "not applicable" (screen and --json) otherwise.
- influence: an ensemble's score is its constituent's own `lethe influence` score on its
  shard's rows times p_c,y/(S p̄_y) (mean) or 1/S (vote), to 1e-9; and against actual
  leave-one-out retraining of the affected constituent (`lethe sisa unlearn` of one id),
  the predicted change of the ensemble's test loss −log p̄_y matches the actual one within
  10% for the most influential examples (l2 = 0.05, the first-order regime), same sign (a wrong scale by S or a sign fails).
Plain unittest; ends with a line "N passed, N failed, N skipped".
"""
import json
import os
import shutil
import struct
import sys
import unittest

from lethe_test_main import run_tests

import numpy as np

import test_sisa as base

LETHE = None
TEST = os.path.join(base.DIGITS, "test.npz")


def load_weights(path):
    """W, b of a one-linear-layer safetensors model."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float64).reshape(t["shape"])
    return out["0.weight"], out["0.bias"]


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def auc(member, nonmember):
    """P(nonmember loss > member loss) + ½ P(equal)."""
    m = np.asarray(member)[:, None]
    n = np.asarray(nonmember)[None, :]
    return float(((n > m).sum() + 0.5 * (n == m).sum()) / (m.size * n.size))


class Compare(unittest.TestCase):
    LBFGS = base.Sisa.LBFGS
    path = base.Sisa.path
    train = base.Sisa.train
    trained_copy = base.Sisa.trained_copy
    write_data = base.Sisa.__dict__["write_data"]

    @classmethod
    def setUpClass(cls):
        if LETHE is None:
            raise unittest.SkipTest("--lethe not given")
        base.LETHE = LETHE
        base.Sisa.setUpClass.__func__(cls)
        t = np.load(TEST)
        cls.Xt, cls.yt = t["X"], t["y"].astype(np.int64)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def ensemble_losses(self, d, X, y):
        """Per-example loss and label of ensemble d, from its constituents' weights."""
        m = base.manifest(d)
        probs, votes = [], []
        for s, shard in enumerate(m["shards"]):
            f = shard["patch"]["file"] if shard["patch"] else shard["slices"][-1]["file"]
            W, b = load_weights(os.path.join(d, f))
            z = X @ W.T + b
            probs.append(softmax(z))
            votes.append(np.argmax(z, axis=1))
        S = len(probs)
        if m["aggregate"] == "mean":
            p = np.mean(probs, axis=0)
            return -np.log(p[np.arange(len(y)), y]), np.argmax(p, axis=1)
        counts = np.zeros((len(y), probs[0].shape[1]))
        for v in votes:
            counts[np.arange(len(y)), v] += 1
        return 1 - counts[np.arange(len(y)), y] / S, np.argmax(counts, axis=1)

    def compare(self, a, b, *extra):
        return json.loads(base.lethe("compare", "--model", a, "--reference", b, "--train",
                                     self.data, "--test", TEST, "--json", *extra))

    def check_against_numpy(self, d, row, forget_ids):
        forget = np.isin(self.ids, forget_ids)
        loss, label = self.ensemble_losses(d, self.X, self.y)
        tloss, tlabel = self.ensemble_losses(d, self.Xt, self.yt)
        for name, mask in (("forget", forget), ("kept", ~forget)):
            self.assertAlmostEqual(row[name]["loss"], loss[mask].mean(), delta=1e-10)
            self.assertAlmostEqual(row[name]["accuracy"], (label[mask] == self.y[mask]).mean(),
                                   delta=1e-12)
        self.assertAlmostEqual(row["test"]["loss"], tloss.mean(), delta=1e-10)
        self.assertAlmostEqual(row["test"]["accuracy"], (tlabel == self.yt).mean(), delta=1e-12)
        self.assertAlmostEqual(row["membership_auc"], auc(loss[forget], tloss), delta=1e-12)
        return tlabel

    def test_ensembles_against_numpy_and_distances(self):
        for aggregate in ("mean", "vote"):
            opts = self.LBFGS + ["--aggregate", aggregate]
            a = self.trained_copy("cmp-a-" + aggregate, opts)
            b = self.trained_copy("cmp-b-" + aggregate, opts)
            forget = [int(i) for i in base.cells(b)[(1, 2)][0][:3]]
            base.lethe("sisa", "unlearn", "--model", b, "--forget-ids", ",".join(map(str, forget)))
            j = self.compare(a, b, "--forget-ids", ",".join(map(str, forget)))
            la = self.check_against_numpy(a, j["model"], forget)
            lb = self.check_against_numpy(b, j["reference"], forget)
            self.assertAlmostEqual(j["test_agreement"], (la == lb).mean(), delta=1e-12)
            # Same partition: per-constituent distances, only shard 1 retrained.
            per = j["constituent_parameter_distance"]
            self.assertEqual(per[0], 0)
            self.assertEqual(per[2], 0)
            self.assertEqual(per[3], 0)
            ma, mb = base.manifest(a), base.manifest(b)
            Wa, ba = load_weights(os.path.join(a, ma["shards"][1]["slices"][-1]["file"]))
            Wb, bb = load_weights(os.path.join(b, mb["shards"][1]["slices"][-1]["file"]))
            d1 = np.sqrt(((Wa - Wb) ** 2).sum() + ((ba - bb) ** 2).sum())
            self.assertAlmostEqual(per[1], d1, delta=1e-12 * d1)
            self.assertAlmostEqual(j["parameter_distance"], np.sqrt(sum(x * x for x in per)),
                                   delta=1e-12 * d1)
            self.assertIn("ensembles", j)

    def test_not_applicable(self):
        a = self.trained_copy("na-a", self.LBFGS)
        other = self.path("na-other")
        self.train(other, self.data, self.LBFGS[:-1] + ["6"])  # another seed: another partition
        plain = os.path.join(a, base.manifest(a)["shards"][0]["slices"][-1]["file"])
        for b, why in ((other, "partitions differ"), (plain, "single model")):
            j = self.compare(a, b)
            self.assertIsNone(j["parameter_distance"])
            self.assertIn(why, j["parameter_distance_not_applicable"])
            self.assertIsNone(j["model"]["distance_to_reference"])
            r = base.run("compare", "--model", a, "--reference", b, "--train", self.data,
                         "--test", TEST)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("parameter distance: not applicable", r.stdout)

    def test_one_constituent_mean_ensemble_is_the_plain_model(self):
        d = self.train(self.path("cmp-single"), self.data,
                       ["--spec", self.spec, "--shards", "1", "--slices", "1", "--aggregate", "mean"])
        plain = os.path.join(d, "s0-r0-g0.safetensors")
        forget = [str(i) for i in self.ids[:20]]
        j = self.compare(d, plain, "--forget-ids", ",".join(forget))
        for name in ("forget", "kept", "test"):
            self.assertAlmostEqual(j["model"][name]["loss"], j["reference"][name]["loss"],
                                   delta=1e-12 * j["reference"][name]["loss"])
            self.assertEqual(j["model"][name]["accuracy"], j["reference"][name]["accuracy"])
        self.assertAlmostEqual(j["model"]["membership_auc"], j["reference"]["membership_auc"],
                               delta=1e-12)
        self.assertEqual(j["test_agreement"], 1.0)


    def test_refusals(self):
        """Bad input: one line, exit 1, no output file."""
        a = self.trained_copy("bad-a", self.LBFGS)
        victim = os.path.join(a, base.manifest(a)["shards"][1]["slices"][-1]["file"])
        out = self.path("bad.csv")
        changed = self.path("bad-data.npz")
        X = self.X.copy()
        X[5, 0] += 1
        np.savez(changed, X=X, y=self.y, ids=self.ids)
        cases = [(["influence", "--model", a, "--train", changed, "--test", TEST, "--out", out],
                  "rows differ"),
                 (["influence", "--model", a, "--train", self.data, "--test", TEST, "--out", out,
                   "--spec", self.spec], "--spec: not for an ensemble DIR")]
        for args, message in cases:
            r = base.run(*args)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn(message, r.stderr)
            self.assertFalse(os.path.exists(out))
        with open(victim, "r+b") as f:
            f.seek(-1, 2)
            last = f.read(1)
            f.seek(-1, 2)
            f.write(bytes([last[0] ^ 1]))
        for args in (["compare", "--model", a, "--reference", victim, "--train", self.data,
                      "--test", TEST],
                     ["influence", "--model", a, "--train", self.data, "--test", TEST, "--out", out]):
            r = base.run(*args)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn(victim + ": SHA-256 differs", r.stderr)
            self.assertFalse(os.path.exists(out))


def read_scores(path):
    """{(test_id, train_id): score} of a lethe influence CSV."""
    out = {}
    with open(path) as f:
        next(f)
        for line in f:
            t, i, v = line.strip().split(",")
            out[(int(t), int(i))] = float(v)
    return out


class Influence(unittest.TestCase):
    path = base.Sisa.path
    train = base.Sisa.train
    write_data = base.Sisa.__dict__["write_data"]
    ensemble_losses = Compare.ensemble_losses
    setUpClass = Compare.__dict__["setUpClass"]
    tearDownClass = Compare.__dict__["tearDownClass"]
    OPTS = ["--spec", os.path.join(base.DIGITS, "softmax.json"), "--shards", "3", "--slices", "1",
            "--seed", "2"]

    def influence(self, model, train, out, *extra):
        base.lethe("influence", "--model", model, "--train", train, "--test", TEST,
                   "--test-ids", ",".join(map(str, self.chosen_test_ids())), "--solver", "direct",
                   "--out", out, *extra)
        return read_scores(out)

    def chosen_test_ids(self):
        t = np.load(TEST)
        return [int(i) for i in t["ids"][[0, 7, 40]]]

    def test_weights_against_the_constituents_own_scores(self):
        t = np.load(TEST)
        rows = [int(np.where(t["ids"] == i)[0][0]) for i in self.chosen_test_ids()]
        for aggregate in ("mean", "vote"):
            d = self.train(self.path("infl-" + aggregate), self.data, self.OPTS + ["--aggregate", aggregate])
            ens = self.influence(d, self.data, self.path(f"infl-{aggregate}.csv"))
            m = base.manifest(d)
            S = len(m["shards"])
            probs = []
            for s in range(S):
                W, b = load_weights(os.path.join(d, m["shards"][s]["slices"][-1]["file"]))
                probs.append(softmax(self.Xt[rows] @ W.T + b)[np.arange(len(rows)), self.yt[rows]])
            for s in range(S):
                ids = m["shards"][s]["slices"][0]["ids"]
                shard = self.write_data(f"infl-shard{s}.npz", np.isin(self.ids, ids))
                own = self.influence(os.path.join(d, m["shards"][s]["slices"][-1]["file"]), shard,
                                     self.path(f"infl-own{s}.csv"))
                for j, tid in enumerate(self.chosen_test_ids()):
                    w = probs[s][j] / sum(p[j] for p in probs) if aggregate == "mean" else 1 / S
                    for i in ids:
                        self.assertAlmostEqual(ens[(tid, i)], w * own[(tid, i)],
                                               delta=1e-9 * abs(own[(tid, i)]) + 1e-15)
            self.assertEqual(len(ens), len(self.chosen_test_ids()) * 600)

    def test_against_leave_one_out_retraining(self):
        # l2 = 0.05: the first-order regime. With the digits spec's l2 = 1e-3 and ~200
        # examples per shard, one removal moves a constituent far (p_c,y from 0.65 to 0.25)
        # and the actual change is 1.4-4x the score (up to 6x on the constituent's own loss)
        # (measured); at l2 = 0.05 it is within 7%, at 0.01 within 40%.
        with open(os.path.join(base.DIGITS, "softmax.json")) as f:
            spec = json.load(f)
        spec["l2"] = 0.05
        spec_path = self.path("loo-spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        opts = ["--spec", spec_path] + self.OPTS[2:]
        d = self.train(self.path("loo"), self.data, opts + ["--aggregate", "mean"])
        ens = self.influence(d, self.data, self.path("loo.csv"))
        t = np.load(TEST)
        rows = [int(np.where(t["ids"] == i)[0][0]) for i in self.chosen_test_ids()]
        before, _ = self.ensemble_losses(d, self.Xt[rows], self.yt[rows])
        tid = self.chosen_test_ids()[0]
        # The 4 training examples of largest |score| on the first test example.
        top = sorted(((abs(v), i) for (tt, i), v in ens.items() if tt == tid), reverse=True)[:4]
        for _, i in top:
            copy = self.path(f"loo-{i}")
            shutil.copytree(d, copy)
            base.lethe("sisa", "unlearn", "--model", copy, "--forget-ids", str(i))
            after, _ = self.ensemble_losses(copy, self.Xt[rows], self.yt[rows])
            actual, predicted = after[0] - before[0], ens[(tid, i)]
            self.assertGreater(actual * predicted, 0, (i, actual, predicted))
            self.assertLess(abs(actual - predicted), 0.10 * abs(actual), (i, actual, predicted))


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
