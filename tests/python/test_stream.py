#!/usr/bin/env python3
"""A stream of deletion requests: the ledger, its verification and the reuse cache.

    /usr/bin/python3 tests/python/test_stream.py --lethe PATH/TO/lethe

- Proof: 100 sequential single-example removals (`lethe unlearn --ledger --cache`, each on
  the previous one's output) on a softmax regression end within 1e-6 relative parameter
  error of retraining without all 100, and `lethe ledger verify` accepts the ledger.
- An edited line, a removed line, a half-written last line and a swapped model file are each
  detected (exit 1, the first bad line named); a request against a model that is not the
  ledger's head is refused before any work, and nothing is written.
- The cache is used when its hashes match, and ignored (with a note) when it was written for
  another model or computed on other data.
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
REQUESTS = 100


def run(*args, check=True, cwd=None):
    return run_lethe(LETHE, args, check=check, cwd=cwd, env=None)


class Stream(unittest.TestCase):
    """One stream of 100 requests, built once; each test reads it or a copy."""
    dir = None

    @classmethod
    def setUpClass(cls):
        if not LETHE or not os.access(LETHE, os.X_OK):
            return
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = d = cls.tmp.name
        # A small problem (n = 600 digits, p = 650) keeps 100 commands to seconds.
        cls.train = save_digits600(os.path.join(d, "train.npz"))
        run("train", "--spec", os.path.join(DIGITS, "softmax.json"), "--data", cls.train,
            "--out", os.path.join(d, "m0.safetensors"), "--quiet", cwd=d)
        cls.ids = [int(i) for i in np.random.default_rng(5).choice(np.load(cls.train)["ids"], REQUESTS, replace=False)]
        cls.records = []
        for j, i in enumerate(cls.ids):
            r = run("unlearn", "--model", f"m{j}.safetensors", "--train", "train.npz",
                    "--forget-ids", str(i), "--out", f"m{j + 1}.safetensors", "--ledger",
                    "ledger.jsonl", "--cache", "--steps", "3", "--json", "--quiet", cwd=d)
            cls.records.append(json.loads(r.stdout))
        with open(os.path.join(d, "forget.txt"), "w") as f:
            f.write("".join(f"{i}\n" for i in cls.ids))
        run("train", "--spec", os.path.join(DIGITS, "softmax.json"), "--data", "train.npz",
            "--forget", "forget.txt", "--out", "retrained.safetensors", "--tolerance",
            "1e-11", "--quiet", cwd=d)

    @classmethod
    def tearDownClass(cls):
        if cls.dir:
            cls.tmp.cleanup()

    def setUp(self):
        if not self.dir:
            self.skipTest("no lethe binary (pass --lethe)")

    def p(self, name):
        return os.path.join(self.dir, name)

    def copy(self):
        """A copy of the stream's directory, to damage."""
        work = tempfile.mkdtemp(dir=self.dir)
        for name in os.listdir(self.dir):
            if os.path.isfile(self.p(name)):
                shutil.copy(self.p(name), work)
        return work

    def verify(self, cwd, *extra):
        return run("ledger", "verify", "ledger.jsonl", *extra, check=False, cwd=cwd)

    # -- the proof ----------------------------------------------------------------------------

    def test_hundred_removals_reach_retraining(self):
        last, retrained, original = (theta(self.p(f"m{REQUESTS}.safetensors")),
                                     theta(self.p("retrained.safetensors")), theta(self.p("m0.safetensors")))
        error = np.linalg.norm(last - retrained) / np.linalg.norm(retrained)
        moved = np.linalg.norm(original - retrained) / np.linalg.norm(retrained)
        print(f"\n  {REQUESTS} requests: ‖θ − θ_r‖/‖θ_r‖ = {error:.2e} (original {moved:.2e})")
        self.assertGreater(moved, 1e-2)  # the 100 removals moved the optimum measurably
        self.assertLess(error, 1e-6)
        info = json.loads(run("inspect", self.p(f"m{REQUESTS}.safetensors"), "--json").stdout)
        self.assertEqual(info["forgotten"]["ids"], sorted(self.ids))
        self.assertEqual(len(info["forgotten"]["requests"]), REQUESTS)

    def test_ledger_verifies_and_records_the_chain(self):
        r = self.verify(self.dir, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertTrue(out["ok"])
        self.assertEqual(out["lines_verified"], REQUESTS)
        lines = open(self.p("ledger.jsonl")).read().splitlines()
        self.assertEqual(len(lines), REQUESTS)
        import hashlib
        prev = "0" * 64
        for j, line in enumerate(lines):
            e = json.loads(line)
            self.assertEqual(e["seq"], j + 1)
            self.assertEqual(e["request"]["ids"], [self.ids[j]])
            self.assertEqual(e["request"]["method"], "newton")
            self.assertEqual(e["request"]["solver"], "cg")
            self.assertNotIn("certificate", e)  # plain removals carry none
            # The chain as documented: H = sha256(prev + "\n" + the line without "hash").
            self.assertEqual(e["prev"], prev)
            body = dict(e)
            del body["hash"]
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            self.assertEqual(e["hash"], hashlib.sha256((prev + "\n" + canonical).encode()).hexdigest())
            prev = e["hash"]
            for side, name in (("parent", f"m{j}.safetensors"), ("child", f"m{j + 1}.safetensors")):
                self.assertEqual(e[side]["path"], name)
                self.assertEqual(e[side]["sha256"], sha(self.p(name)))
        # inspect --ledger: the model's history from the ledger.
        r = run("inspect", self.p("m3.safetensors"), "--ledger", self.p("ledger.jsonl"), "--json")
        history = json.loads(r.stdout)["ledger"]["history"]
        self.assertEqual([h["ids"] for h in history], [[i] for i in self.ids[:3]])
        r = run("inspect", self.p("m3.safetensors"), "--ledger", self.p("ledger.jsonl"))
        self.assertIn("this model is the child of line 3", r.stdout)

    # -- damage is detected -----------------------------------------------------------------

    def damaged(self, edit):
        work = self.copy()
        path = os.path.join(work, "ledger.jsonl")
        lines = open(path).read().splitlines(keepends=True)
        open(path, "w").write("".join(edit(lines)))
        return self.verify(work, "--models", work)

    def assertBroken(self, r, line):
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertIn(f"ledger.jsonl:{line}:", r.stderr)

    def test_edited_line(self):
        def edit(lines):
            e = json.loads(lines[49])
            e["request"]["ids"] = [e["request"]["ids"][0] + 1]  # canonical, but the hash is stale
            lines[49] = json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n"
            return lines
        r = self.damaged(edit)
        self.assertBroken(r, 50)
        self.assertIn("hash does not match", r.stderr)
        # Re-hashing the edited line does not help: the next line's "prev" names the old hash.
        def rehash(lines):
            e = json.loads(lines[49])
            e["utc"] = "2000-01-01T00:00:00Z"
            del e["hash"]
            import hashlib
            body = json.dumps(e, sort_keys=True, separators=(",", ":"))
            e["hash"] = hashlib.sha256((e["prev"] + "\n" + body).encode()).hexdigest()
            lines[49] = json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n"
            return lines
        self.assertBroken(self.damaged(rehash), 51)
        # A space is an edit too (not canonical).
        self.assertBroken(self.damaged(lambda ls: ls[:9] + [ls[9].replace(",", ", ", 1)] + ls[10:]), 10)

    def test_removed_line(self):
        self.assertBroken(self.damaged(lambda ls: ls[:29] + ls[30:]), 30)
        self.assertBroken(self.damaged(lambda ls: ls[1:]), 1)  # even the first
        # Two lines swapped.
        self.assertBroken(self.damaged(lambda ls: ls[:5] + [ls[6], ls[5]] + ls[7:]), 6)

    def test_half_written_last_line(self):
        work = self.copy()
        path = os.path.join(work, "ledger.jsonl")
        whole = open(path).read()
        last = whole.splitlines(keepends=True)[-1]
        open(path, "w").write(whole[:-len(last)] + last[:len(last) // 2])  # a crash mid-write
        r = self.verify(work)
        self.assertBroken(r, REQUESTS)
        self.assertIn("partial line", r.stderr)
        # Even a whole line without its newline is not accepted.
        open(path, "w").write(whole[:-1])
        self.assertBroken(self.verify(work), REQUESTS)
        # And no request appends after it.
        r = run("unlearn", "--model", f"m{REQUESTS - 1}.safetensors", "--train", "train.npz",
                "--forget-ids", "599", "--out", "next.safetensors", "--ledger", "ledger.jsonl",
                "--quiet", check=False, cwd=work)
        self.assertEqual(r.returncode, 1)
        self.assertIn("partial line", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(work, "next.safetensors")))

    def test_swapped_model_file(self):
        work = self.copy()
        a, b = os.path.join(work, "m10.safetensors"), os.path.join(work, "m11.safetensors")
        os.rename(a, a + ".x")
        os.rename(b, a)
        os.rename(a + ".x", b)
        r = self.verify(work, "--models", work)
        self.assertBroken(r, 10)
        self.assertIn("m10.safetensors does not match", r.stderr)
        # Without --models: the recorded paths, relative to the working directory.
        self.assertBroken(self.verify(work), 10)
        # A model deleted is absent, not broken.
        os.remove(a)
        os.remove(b)
        r = self.verify(work, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["entries"][9]["child"]["file"], "absent")

    def test_request_against_a_model_not_the_head(self):
        work = self.copy()
        size = os.path.getsize(os.path.join(work, "ledger.jsonl"))
        r = run("unlearn", "--model", "m50.safetensors", "--train", "train.npz", "--forget-ids",
                str(self.ids[60]), "--out", "fork.safetensors", "--ledger", "ledger.jsonl",
                "--quiet", check=False, cwd=work)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()[-1:]), 1)
        err = r.stderr.strip().splitlines()[-1]
        self.assertIn("ledger.jsonl: m50.safetensors (sha256 ", err)
        self.assertIn("is not the ledger's head", err)
        head = json.loads(open(os.path.join(work, "ledger.jsonl")).read().splitlines()[-1])
        self.assertIn(head["child"]["sha256"], err)
        self.assertFalse(os.path.exists(os.path.join(work, "fork.safetensors")))
        self.assertEqual(os.path.getsize(os.path.join(work, "ledger.jsonl")), size)
        # The head itself is accepted; a fresh ledger accepts any model.
        run("unlearn", "--model", f"m{REQUESTS}.safetensors", "--train", "train.npz",
            "--forget-ids", "599" if 599 not in self.ids else "598", "--out", "next.safetensors",
            "--ledger", "ledger.jsonl", "--quiet", cwd=work)
        self.assertEqual(self.verify(work).returncode, 0)
        run("unlearn", "--model", "m50.safetensors", "--train", "train.npz", "--forget-ids",
            str(self.ids[60]), "--out", "fork.safetensors", "--ledger", "new.jsonl", "--quiet", cwd=work)
        self.assertEqual(run("ledger", "verify", "new.jsonl", check=False, cwd=work).returncode, 0)

    # -- the cache --------------------------------------------------------------------------

    def test_cache_used_when_its_hashes_match(self):
        reused = [any(s["solve"].get("preconditioner") == "kfac (cached)" for s in r["steps"])
                  for r in self.records]
        self.assertFalse(reused[0])  # nothing to reuse at the first request
        self.assertTrue(all(reused[1:50]))  # then every request until --cache-max-age (50)
        self.assertFalse(reused[50])  # recomputed
        self.assertTrue(all(reused[51:]))

    def cache_note(self, work, model, train="train.npz"):
        r = run("unlearn", "--model", model, "--train", train, "--forget-ids", str(self.ids[60]),
                "--out", "x.safetensors", "--cache", "--json", "--quiet", cwd=work)
        pre = {s["solve"].get("preconditioner") for s in json.loads(r.stdout)["steps"]}
        return r.stderr, pre

    def test_stale_cache_is_ignored(self):
        work = self.copy()
        _, pre = self.cache_note(work, "m40.safetensors")
        self.assertEqual(pre, {"kfac (cached)"})
        # Another model's cache next to this one: written for a different model hash.
        shutil.copy(os.path.join(work, "m30.safetensors.lethe-cache"),
                    os.path.join(work, "m40.safetensors.lethe-cache"))
        err, pre = self.cache_note(work, "m40.safetensors")
        self.assertIn("m40.safetensors.lethe-cache: written for another model", err)
        self.assertEqual(pre, {"kfac"})
        # The right model, other data (same rows, one value changed): a different data hash.
        shutil.copy(self.p("m40.safetensors.lethe-cache"), work)
        d = np.load(os.path.join(work, "train.npz"))
        X = d["X"].copy()
        X[599, 0] += 1.0
        np.savez(os.path.join(work, "other.npz"), X=X, y=d["y"], ids=d["ids"])
        err, pre = self.cache_note(work, "m40.safetensors", "other.npz")
        self.assertIn("computed on other training data", err)
        self.assertEqual(pre, {"kfac"})
        # A damaged cache costs only its use.
        open(os.path.join(work, "m40.safetensors.lethe-cache"), "wb").write(b"\0" * 100)
        err, pre = self.cache_note(work, "m40.safetensors")
        self.assertIn("unreadable cache", err)
        self.assertEqual(pre, {"kfac"})


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
