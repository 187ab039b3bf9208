#!/usr/bin/env python3
"""The stream's cache on disk: `lethe unlearn --requests FILE --cache` (tools/lethe/dense_cache.h).

    /usr/bin/python3 tests/python/test_dense_cache.py --lethe PATH/TO/lethe

- A stream split over several processes (3 requests, 3 more, then one process per request),
  each starting from the last one's OUT.lethe-dense, gives the bytes of one process serving
  all of them: every model, the ledger and the cache key; the later processes say (note, and
  the records) that they reused the dense factor and carried the kept gradient, and build
  nothing. The same stream without --cache gives the same bytes too (the cache changes how
  the answer is reached, never the answer).
- Never trusted when it does not match: data with another SHA-256 (the same rows, saved
  differently), a key for another model, a key cut short, a factor file changed by one byte,
  cut short, or missing: a note naming the file and why, and the result is that of a
  process without the cache (byte-identical where the cache is ignored entirely; where only
  the factor is, identical to rebuilding it, and within 1e-9 of no cache at all).
Plain unittest; ends with a line "N passed, N failed, N skipped".
"""
import json
import os
import shutil
import sys
import tempfile
import unittest

from lethe_test_main import run_tests

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from stream_tools import run_lethe, save_digits600, sha, theta  # noqa: E402

LETHE = None
DIGITS = os.path.join(ROOT, "examples", "digits")
ENV = dict(os.environ, SOURCE_DATE_EPOCH="1764460800")
N = 9  # requests


def run(*args, check=True, cwd=None):
    return run_lethe(LETHE, args, check=check, cwd=cwd, env=ENV)


class DenseCache(unittest.TestCase):
    dir = None

    @classmethod
    def setUpClass(cls):
        if not LETHE or not os.access(LETHE, os.X_OK):
            return
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = d = cls.tmp.name
        save_digits600(os.path.join(d, "train.npz"))
        # The same rows in a file of another SHA-256.
        save_digits600(os.path.join(d, "same_rows.npz"), np.savez_compressed)
        run("train", "--spec", os.path.join(DIGITS, "softmax.json"), "--data", "train.npz",
            "--out", "m0.safetensors", "--quiet", cwd=d)
        ids = np.random.default_rng(5).choice(np.load(os.path.join(d, "train.npz"))["ids"], N, replace=False)
        cls.lines = [f"{i} m{j + 1}.safetensors\n" for j, i in enumerate(ids)]
        # The reference: one process, all N requests, with the cache.
        cls.one = cls.work()
        cls.records = cls.serve(cls.one, "m0.safetensors", cls.lines, "--cache")[0]

    @classmethod
    def tearDownClass(cls):
        if cls.dir:
            cls.tmp.cleanup()

    def setUp(self):
        if not self.dir:
            self.skipTest("no lethe binary (pass --lethe)")

    @classmethod
    def work(cls):
        w = tempfile.mkdtemp(dir=cls.dir)
        for name in ("train.npz", "same_rows.npz", "m0.safetensors"):
            os.link(os.path.join(cls.dir, name), os.path.join(w, name))
        return w

    @classmethod
    def serve(cls, w, model, lines, *extra, train="train.npz"):
        with open(os.path.join(w, "req.txt"), "w") as f:
            f.write("".join(lines))
        r = run("unlearn", "--model", model, "--train", train, "--requests", "req.txt", "--ledger",
                "ledger.jsonl", "--json", *extra, cwd=w)
        return [json.loads(l) for l in r.stdout.splitlines()], r.stderr

    def assertSameBytes(self, w, names):
        for name in names:
            self.assertEqual(sha(os.path.join(w, name)), sha(os.path.join(self.one, name)), name)

    def test_reference_stream(self):
        pre = [r["steps"][0]["solve"]["preconditioner"] for r in self.records]
        self.assertEqual(pre, ["dense"] + ["dense (reused)"] * (N - 1))
        self.assertEqual([r["kept_gradient"] for r in self.records], ["computed"] + ["carried"] * (N - 1))
        # One factor file, by the request that built it; a key per model.
        files = sorted(os.listdir(self.one))
        self.assertEqual([f for f in files if "lethe-dense-" in f], ["m1.safetensors.lethe-dense-f32"])
        self.assertEqual(os.path.getsize(os.path.join(self.one, "m1.safetensors.lethe-dense-f32")), 650 * 650 * 4)
        for j in range(1, N + 1):
            self.assertIn(f"m{j}.safetensors.lethe-dense", files)
        self.assertEqual(run("ledger", "verify", "ledger.jsonl", cwd=self.one).returncode, 0)

    def test_split_stream_gives_the_same_bytes(self):
        w = self.work()
        self.serve(w, "m0.safetensors", self.lines[:3], "--cache")
        records, err = self.serve(w, "m3.safetensors", self.lines[3:6], "--cache")
        self.assertIn("m3.safetensors.lethe-dense: dense preconditioner reused: f32 (3 request(s) old); "
                      "kept gradient carried", err)
        self.assertEqual([r["steps"][0]["solve"]["preconditioner"] for r in records], ["dense (reused)"] * 3)
        self.assertEqual([r["kept_gradient"] for r in records], ["carried"] * 3)
        for j in range(6, N):  # one process per request
            records, err = self.serve(w, f"m{j}.safetensors", self.lines[j:j + 1], "--cache")
            self.assertEqual(records[0]["steps"][0]["solve"]["preconditioner"], "dense (reused)")
            self.assertEqual(records[0]["steps"][0]["solve"].get("setup_seconds", 0), 0)
        self.assertFalse([f for f in os.listdir(w) if "lethe-dense-" in f and not f.startswith("m1.")])
        self.assertSameBytes(w, [f"m{j}.safetensors" for j in range(1, N + 1)] +
                             [f"m{j}.safetensors.lethe-dense" for j in range(1, N + 1)] + ["ledger.jsonl"])

    def test_no_cache_gives_the_same_bytes(self):
        w = self.work()
        records, _ = self.serve(w, "m0.safetensors", self.lines)
        self.assertFalse([f for f in os.listdir(w) if "lethe-dense" in f])
        self.assertSameBytes(w, [f"m{j}.safetensors" for j in range(1, N + 1)] + ["ledger.jsonl"])

    # -- never trusted when it does not match ----------------------------------------------------

    def continued(self, damage=None, train="train.npz"):
        """Requests 1-3 with --cache, `damage` applied to the directory, then requests 4-6 with
        --cache: (directory, records, stderr)."""
        w = self.work()
        self.serve(w, "m0.safetensors", self.lines[:3], "--cache", train=train)
        if damage:
            damage(w)
        records, err = self.serve(w, "m3.safetensors", self.lines[3:6], "--cache", train=train)
        return w, records, err

    def without_cache(self, train="train.npz"):
        """Requests 1-3 with --cache, then 4-6 in a process without it."""
        w = self.work()
        self.serve(w, "m0.safetensors", self.lines[:3], "--cache", train=train)
        self.serve(w, "m3.safetensors", self.lines[3:6], train=train)
        return w

    def assertIgnored(self, records, err, text):
        self.assertIn(text, err)
        self.assertEqual(records[0]["steps"][0]["solve"]["preconditioner"], "dense")  # built afresh
        for r in records:
            self.assertEqual(r["steps"][0]["solve"]["termination"], "converged")

    def test_other_data(self):
        w = self.work()
        self.serve(w, "m0.safetensors", self.lines[:3], "--cache")
        records, err = self.serve(w, "m3.safetensors", self.lines[3:6], "--cache", train="same_rows.npz")
        self.assertIgnored(records, err, "m3.safetensors.lethe-dense: computed on other training data")
        self.assertEqual(records[0]["kept_gradient"], "computed")
        plain = self.without_cache()
        for j in range(4, 7):
            self.assertEqual(sha(os.path.join(w, f"m{j}.safetensors")), sha(os.path.join(plain, f"m{j}.safetensors")))

    def test_key_of_another_model(self):
        def swap(w):
            shutil.copy(os.path.join(w, "m2.safetensors.lethe-dense"), os.path.join(w, "m3.safetensors.lethe-dense"))
        w, records, err = self.continued(swap)
        self.assertIgnored(records, err, "m3.safetensors.lethe-dense: written for another model")
        self.assertEqual(records[0]["kept_gradient"], "computed")
        plain = self.without_cache()
        for j in range(4, 7):
            self.assertEqual(sha(os.path.join(w, f"m{j}.safetensors")), sha(os.path.join(plain, f"m{j}.safetensors")))

    def test_key_cut_short(self):
        def cut(w):
            path = os.path.join(w, "m3.safetensors.lethe-dense")
            os.truncate(path, os.path.getsize(path) // 2)
        w, records, err = self.continued(cut)
        self.assertIgnored(records, err, "m3.safetensors.lethe-dense: unreadable cache")
        plain = self.without_cache()
        for j in range(4, 7):
            self.assertEqual(sha(os.path.join(w, f"m{j}.safetensors")), sha(os.path.join(plain, f"m{j}.safetensors")))

    def check_factor_damage(self, damage, text):
        w, records, err = self.continued(damage)
        self.assertIgnored(records, err, "m1.safetensors.lethe-dense-f32: " + text)
        self.assertIn("dense preconditioner is rebuilt", err)
        self.assertEqual(records[0]["kept_gradient"], "carried")  # the key itself is sound
        # The same bytes as rebuilding the factor (its file removed), and within rounding
        # of a process without the cache (whose kept gradient is a fresh pass).
        def remove(v):
            os.remove(os.path.join(v, "m1.safetensors.lethe-dense-f32"))
        rebuilt, _, err2 = self.continued(remove)
        self.assertIn("cannot read", err2)
        plain = self.without_cache()
        for j in range(4, 7):
            name = f"m{j}.safetensors"
            self.assertEqual(sha(os.path.join(w, name)), sha(os.path.join(rebuilt, name)))
            a, b = theta(os.path.join(w, name)), theta(os.path.join(plain, name))
            self.assertLess(np.linalg.norm(a - b) / np.linalg.norm(b), 1e-9)
        # The rebuilt factor is written by the request that built it, and the key names it.
        self.assertTrue(os.path.exists(os.path.join(w, "m4.safetensors.lethe-dense-f32")))
        return w

    def test_factor_changed(self):
        def flip(w):
            path = os.path.join(w, "m1.safetensors.lethe-dense-f32")
            with open(path, "r+b") as f:
                f.seek(650 * 4 * 17 + 12)
                b = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([b[0] ^ 0x40]))
        self.check_factor_damage(flip, "its SHA-256 is not the one its key names")

    def test_factor_cut_short(self):
        def cut(w):
            os.truncate(os.path.join(w, "m1.safetensors.lethe-dense-f32"), 1000)
        self.check_factor_damage(cut, "holds 1000 bytes, not 1690000 (truncated?)")

    def test_max_age(self):
        # --dense-max-age 4: the factor built at request 1 is dropped after request 4, in one
        # process and across two alike.
        w = self.work()
        records, _ = self.serve(w, "m0.safetensors", self.lines[:6], "--cache", "--dense-max-age", "4")
        pre = [r["steps"][0]["solve"]["preconditioner"] for r in records]
        self.assertEqual(pre, ["dense", "dense (reused)", "dense (reused)", "dense (reused)", "dense", "dense (reused)"])
        self.assertIn("--dense-max-age", " ".join(records[3]["warnings"]))
        v = self.work()
        self.serve(v, "m0.safetensors", self.lines[:3], "--cache", "--dense-max-age", "4")
        self.serve(v, "m3.safetensors", self.lines[3:4], "--cache", "--dense-max-age", "4")
        records, _ = self.serve(v, "m4.safetensors", self.lines[4:6], "--cache", "--dense-max-age", "4")
        self.assertEqual(records[0]["steps"][0]["solve"]["preconditioner"], "dense")
        for j in range(1, 7):
            self.assertEqual(sha(os.path.join(w, f"m{j}.safetensors")), sha(os.path.join(v, f"m{j}.safetensors")))


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
