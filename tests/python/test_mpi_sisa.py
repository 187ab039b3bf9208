"""lethe sisa and commands on a SISA ensemble under mpirun (docs/distributed.md, "SISA ensembles").

The constituents are spread over the ranks (shard or job j on rank j mod P, in rounds of P),
each trained or evaluated by the one-process code, and rank 0 gathers the results in shard
order and alone writes. So, on examples/digits (1437 rows, softmax regression, 4 shards × 2
slices, L-BFGS), against the plain run:
- `sisa train` on 2 and 3 ranks (and 3 ranks for 2 shards of an MLP trained by Adam in f32:
  one rank idle) writes checkpoint files of the same SHA-256 and the same manifest, timings
  and dates aside;
- `sisa unlearn` likewise (three ids in three shards, the report's content too), also given
  a file with earlier forgotten rows deleted (every cell checked, each shard's on one rank;
  a changed row named as one process names it), and
  `unlearn --model DIR --method newton` (patch files, manifest, report) followed by the
  `sisa unlearn` that makes the patched constituents exact;
- `eval` (vote and mean), `compare` of two ensembles and `influence` with CG: identical
  output bytes (gathered, never summed; influence's CSV, .npy, `--top-k` file and table,
  each rank holding only its shards' scores); influence with the direct solver agrees to 1e-12
  relative to max|score| (one process on 2 threads does not repeat itself bit for bit
  there: measured 4e-16 between two plain runs);
- rank 0 killed mid-unlearn (at its first checkpoint, before the commit): DIR is the old
  ensemble plus leftovers, and the next unlearn ends as one process's;
- each rank holds X of its jobs' shards' rows only (`rows_held_per_rank` of --json against
  the shard sizes; sisa train, sisa unlearn, influence --model DIR): from a numpy.savez file (read by offset), a savez_compressed one
  (inflated block by block) and a CSV (parsed row by row), the one-process files and cell
  hashes;
- bad input — NaNs in the data (the file's first bad row named, whichever rank holds it), an unknown id, a changed training row, self-influence on a
  DIR — gives the one-process line once, exit 1, and leaves DIR (or no DIR) as it was.
Skipped, saying why, without MPI or mpirun; the ctest sets OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM).
"""
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

from lethe_test_main import run_tests
from mpi_tools import run_lethe

import numpy as np

LETHE = None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "examples", "digits")
SPEC = os.path.join(DIGITS, "softmax.json")
TEST = os.path.join(DIGITS, "test.npz")
# The direct solver: one process on 2 threads against itself differed by 4e-16 relative
# (measured; with OMP_NUM_THREADS=1 it repeats exactly); a constituent's score missing or
# mis-weighted would differ by O(1).
DIRECT_RTOL = 1e-12


def run(np_, *args, check=True):
    return run_lethe(LETHE, np_, *args, check=check)


def files(d):
    """Every file of DIR → its SHA-256 (the lock file aside)."""
    out = {}
    for name in sorted(os.listdir(d)):
        if name != ".lock":
            with open(os.path.join(d, name), "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def manifest(d):
    """The manifest without what depends on the clock: `created`, each checkpoint's
    `seconds`, each request's `utc` and `parent_sha256` (the previous manifest's SHA-256,
    which covers the clock's values)."""
    with open(os.path.join(d, "manifest.json")) as f:
        m = json.load(f)
    del m["created"]
    for s in m["shards"]:
        for c in s["slices"]:
            del c["seconds"]
    for r in m["forgotten"]["requests"]:
        del r["utc"], r["parent_sha256"]
    return m


def safetensors(path):
    """(metadata, the tensors' bytes) of a safetensors file."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]).get("__metadata__", {}), b[8 + n:]


def checkpoints(d):
    return {k: v for k, v in files(d).items() if k.endswith(".safetensors")}


@unittest.skipIf(os.environ.get("LETHE_MPI_BUILT") != "ON",
                 "lethe was built without MPI (LETHE_MPI_BUILT is not ON): nothing to run")
@unittest.skipIf(shutil.which("mpirun") is None, "mpirun not found (apt-get install openmpi-bin)")
class DistributedSisa(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if LETHE is None:
            raise unittest.SkipTest("no --lethe")
        cls.dir = tempfile.mkdtemp(prefix="lethe_mpi_sisa_")
        d = np.load(os.path.join(DIGITS, "train.npz"))
        cls.X, cls.y, cls.ids = d["X"], d["y"], d["ids"]
        cls.train = os.path.join(cls.dir, "train.npz")
        np.savez(cls.train, X=cls.X, y=cls.y, ids=cls.ids)
        # The one-process ensembles every test compares with.
        cls.one = cls.sisa_train(1, "one")
        cls.mean = cls.sisa_train(1, "mean", "--aggregate", "mean")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def sisa_train(cls, np_, name, *extra, shards="4", spec=SPEC):
        out = os.path.join(cls.dir, name)
        run(np_, "sisa", "train", "--spec", spec, "--data", cls.train, "--shards", shards,
            "--slices", "2", "--out", out, "--quiet", *extra)
        return out

    def path(self, name):
        return os.path.join(self.dir, name)

    def assert_rows_held(self, held, job_shards, np_):
        """Each rank held X of its jobs' shards' rows only (job j on rank j mod P), counted
        from the one-process manifest: never the whole file (1437 rows)."""
        sizes = [sum(len(c["ids"]) for c in s["slices"]) for s in manifest(self.one)["shards"]]
        expect = [sum(sizes[s] for j, s in enumerate(job_shards) if j % np_ == r)
                  for r in range(np_)]
        self.assertEqual(held, expect)
        self.assertLess(max(held), len(self.ids))

    def test_train_and_unlearn_are_the_one_process_files(self):
        ids = "3,700,5"  # three shards, from slice 0 and slice 1
        one = self.sisa_train(1, "u1")
        report_one = json.loads(run(1, "sisa", "unlearn", "--model", one, "--forget-ids", ids,
                                    "--quiet", "--json").stdout)
        self.assertEqual(len(report_one["retrained"]), 3)
        self.assertNotIn("rows_held_per_rank", report_one)
        retrained = [x["shard"] for x in report_one["retrained"]]
        for np_ in (2, 3):
            with self.subTest(np=np_):
                d = self.path(f"u{np_}")
                held = json.loads(run(np_, "sisa", "train", "--spec", SPEC, "--data", self.train,
                                      "--shards", "4", "--slices", "2", "--out", d, "--quiet",
                                      "--json").stdout)["rows_held_per_rank"]
                self.assert_rows_held(held, [0, 1, 2, 3], np_)
                self.assertEqual(checkpoints(d), checkpoints(self.one))
                self.assertEqual(manifest(d), manifest(self.one))
                self.assertFalse([n for n in os.listdir(self.dir) if ".tmp-" in n])
                r = json.loads(run(np_, "sisa", "unlearn", "--model", d, "--forget-ids", ids,
                                   "--quiet", "--json").stdout)
                self.assert_rows_held(r["rows_held_per_rank"], retrained, np_)
                self.assertEqual(checkpoints(d), checkpoints(one))
                self.assertEqual(manifest(d), manifest(one))
                for key in ("k", "ids_sha256", "untouched_shards", "made_exact", "constituents",
                            "generation", "data_sha256"):
                    self.assertEqual(r[key], report_one[key], key)
                self.assertEqual([(x["shard"], x["from_slice"], x["checkpoints"]) for x in r["retrained"]],
                                 [(x["shard"], x["from_slice"], x["checkpoints"]) for x in report_one["retrained"]])

    def test_a_file_with_forgotten_rows_deleted_is_checked_by_shard(self):
        # Ids 3, 700, 5 forgotten, then deleted from the file: the next unlearn checks every
        # cell's rows against its hash, each shard's on one rank, which alone reads its rows.
        dirs = {}
        for np_ in (1, 3):
            dirs[np_] = self.sisa_train(1, f"gone{np_}")
            run(1, "sisa", "unlearn", "--model", dirs[np_], "--forget-ids", "3,700,5", "--quiet")
        keep = ~np.isin(self.ids, [3, 700, 5])
        gone = self.path("gone.npz")
        np.savez(gone, X=self.X[keep], y=self.y[keep], ids=self.ids[keep])
        reports = {np_: json.loads(run(np_, "sisa", "unlearn", "--model", dirs[np_], "--forget-ids",
                                       "10,11", "--data", gone, "--quiet", "--json").stdout)
                   for np_ in (1, 3)}
        self.assertEqual(checkpoints(dirs[3]), checkpoints(dirs[1]))
        self.assertEqual(manifest(dirs[3]), manifest(dirs[1]))
        self.assertEqual(reports[3]["data_sha256"], reports[1]["data_sha256"])
        # Every row of the file on exactly one rank (its shard's hashing or training rank),
        # none holding them all.
        held = reports[3]["rows_held_per_rank"]
        self.assertEqual(sum(held), int(keep.sum()), held)
        self.assertLess(max(held), int(keep.sum()), held)
        # A changed row in each of two shards: the line names the lower cell, as one process.
        X = self.X[keep].copy()
        X[100, 2] += 1
        X[900, 2] += 1
        changed = self.path("gone_changed.npz")
        np.savez(changed, X=X, y=self.y[keep], ids=self.ids[keep])
        self.assert_same_failure(["sisa", "unlearn", "--model", dirs[3], "--forget-ids", "12",
                                  "--data", changed, "--quiet"], dirs[3], "rows differ")

    def test_rows_are_read_by_shard_from_deflated_and_csv_files(self):
        # numpy.savez_compressed (inflated block by block, the rows of the rank's shards
        # kept) and CSV (parsed row by row, likewise) on 2 ranks: the one-process files, each
        # rank holding its shards' rows only.
        packed = self.path("packed.npz")
        np.savez_compressed(packed, X=self.X, y=self.y, ids=self.ids)
        table = self.path("table.csv")
        with open(table, "w") as f:
            f.write("id,label," + ",".join(f"x{j}" for j in range(self.X.shape[1])) + "\n")
            for i in range(len(self.ids)):
                f.write(f"{self.ids[i]},{self.y[i]}," + ",".join(repr(float(v)) for v in self.X[i]) + "\n")
        for name, data, extra in (("packed", packed, []), ("table", table, ["--id-column", "id"])):
            with self.subTest(data=name):
                dirs = {}
                for np_ in (1, 2):
                    dirs[np_] = self.path(f"{name}{np_}")
                    j = json.loads(run(np_, "sisa", "train", "--spec", SPEC, "--data", data, *extra,
                                       "--shards", "4", "--slices", "2", "--out", dirs[np_],
                                       "--quiet", "--json").stdout)
                self.assert_rows_held(j["rows_held_per_rank"], [0, 1, 2, 3], 2)
                self.assertEqual(checkpoints(dirs[2]), checkpoints(self.one))
                self.assertEqual(manifest(dirs[2]), manifest(dirs[1]))
                # The cells' row hashes (what a later unlearn checks a file against) are the
                # ones one process computes from the whole file.
                self.assertEqual([c["rows_sha256"] for s in manifest(dirs[2])["shards"] for c in s["slices"]],
                                 [c["rows_sha256"] for s in manifest(self.one)["shards"] for c in s["slices"]])

    def test_newton_patches_then_exact_are_the_one_process_files(self):
        # lethe unlearn --model DIR: patch j on rank j mod P, rank 0 writes; then sisa unlearn
        # without ids retrains the patched shards exactly.
        patch = ["unlearn", "--model", None, "--method", "newton", "--forget-ids", "3,700,5",
                 "--quiet", "--json"]
        dirs, reports = {}, {}
        for np_ in (1, 2, 3):
            d = dirs[np_] = os.path.join(self.dir, f"patch{np_}")
            shutil.copytree(self.one, d)
            patch[2] = d
            reports[np_] = json.loads(run(np_, *patch).stdout)
        self.assertEqual(len(reports[1]["patched"]), 3)

        def patch_files(d):
            """A patch file records the request's UTC time (its `forgotten`): its tensors'
            bytes and its metadata less that time."""
            out = {}
            for name in sorted(os.listdir(d)):
                if "-patch-" in name:
                    meta, data = safetensors(os.path.join(d, name))
                    forgotten = json.loads(meta.pop("lethe_forgotten"))
                    for r in forgotten["requests"]:
                        del r["utc"]
                    out[name] = (meta, forgotten, hashlib.sha256(data).hexdigest())
            return out

        def without_clock(x):
            """x without its timings: keys naming seconds, and the solver summaries' times
            in words ("0.01 s (setup 0.00 s)")."""
            if isinstance(x, dict):
                return {k: without_clock(v) for k, v in x.items() if "seconds" not in k}
            if isinstance(x, list):
                return [without_clock(v) for v in x]
            if isinstance(x, str):
                return re.sub(r"[0-9.]+ s \(setup [0-9.]+ s\)", "T", x)
            return x

        def manifest_without_clock(d):
            m = manifest(d)
            for shard in m["shards"]:
                if shard["patch"]:
                    del shard["patch"]["sha256"]  # covers the UTC time (above)
            return without_clock(m)

        for np_ in (2, 3):
            with self.subTest(np=np_):
                exact_files = {k: v for k, v in checkpoints(dirs[np_]).items() if "-patch-" not in k}
                self.assertEqual(exact_files, {k: v for k, v in checkpoints(dirs[1]).items()
                                               if "-patch-" not in k})
                self.assertEqual(len(patch_files(dirs[np_])), 3)
                self.assertEqual(patch_files(dirs[np_]), patch_files(dirs[1]))
                self.assertEqual(manifest_without_clock(dirs[np_]), manifest_without_clock(dirs[1]))
                for a, b in zip(reports[np_]["patched"], reports[1]["patched"]):
                    self.assertEqual(without_clock({k: v for k, v in a.items() if k != "sha256"}),
                                     without_clock({k: v for k, v in b.items() if k != "sha256"}))
                self.assertEqual(reports[np_]["constituents"], reports[1]["constituents"])
        exact = {}
        for np_ in (1, 2, 3):
            exact[np_] = json.loads(run(np_, "sisa", "unlearn", "--model", dirs[np_], "--quiet",
                                        "--json").stdout)
            self.assertEqual(exact[np_]["made_exact"], exact[1]["made_exact"])
            self.assertEqual(checkpoints(dirs[np_]), checkpoints(dirs[1]))
        self.assertEqual(len(exact[1]["made_exact"]), 3)

    def test_killed_unlearn_leaves_the_old_ensemble(self):
        # Rank 0 killed after writing its first checkpoint, or just before the commit's rename:
        # mpirun ends every rank, DIR is the old ensemble plus unreferenced files; the next
        # sisa unlearn (on 2 ranks) removes them and ends as one process does.
        one = self.sisa_train(1, "crash1")
        run(1, "sisa", "unlearn", "--model", one, "--forget-ids", "3,700,5", "--quiet")
        for stage in ("checkpoint", "commit"):
            with self.subTest(stage=stage):
                d = self.sisa_train(2, f"crash_{stage}")
                before = files(d)
                p = subprocess.run(["mpirun", "-q", "--oversubscribe", "-np", "2", "-x",
                                    f"LETHE_TEST_CRASH_AT={stage}", LETHE, "sisa", "unlearn",
                                    "--model", d, "--forget-ids", "3,700,5", "--quiet"],
                                   capture_output=True, text=True, timeout=120)
                self.assertNotEqual(p.returncode, 0)
                after = files(d)
                self.assertGreater(len(after), len(before))  # the killed run's leftovers
                self.assertEqual({k: after[k] for k in before}, before)  # nothing rewritten
                run(2, "sisa", "unlearn", "--model", d, "--forget-ids", "3,700,5", "--quiet")
                self.assertEqual(checkpoints(d), checkpoints(one))
                self.assertEqual(manifest(d), manifest(one))

    def test_more_ranks_than_shards(self):
        # 2 shards on 3 ranks: rank 2 trains nothing and joins the agreements. An MLP by Adam
        # in f32 (θ travels as doubles: exact for floats).
        adam = ["--optimizer", "adam", "--epochs", "10", "--dtype", "f32"]
        mlp = os.path.join(DIGITS, "mlp.json")
        one = self.sisa_train(1, "two1", *adam, shards="2", spec=mlp)
        three = self.sisa_train(3, "two3", *adam, shards="2", spec=mlp)
        self.assertEqual(checkpoints(three), checkpoints(one))
        self.assertEqual(manifest(three), manifest(one))

    def test_eval_compare_influence_agree_with_one_process(self):
        def outputs(np_):
            tag = f"np{np_}"
            got = {}
            for name, d in (("vote", self.one), ("mean", self.mean)):
                got["eval " + name] = run(np_, "eval", "--model", d, "--data", TEST, "--json").stdout
            got["compare"] = run(np_, "compare", "--model", self.one, "--reference", self.mean,
                                 "--train", self.train, "--test", TEST, "--forget-ids", "3,700,5",
                                 "--json").stdout
            for solver in ("cg", "direct"):
                out = self.path(f"influence_{solver}_{tag}.csv")
                extra = ["--cg-tolerance", "1e-12"] if solver == "cg" else []
                p = run(np_, "influence", "--model", self.mean, "--train", self.train, "--test",
                        TEST, "--test-ids", "100000,100003", "--solver", solver, *extra, "--out",
                        out, "--quiet", "--json")
                if np_ > 1:  # constituent s's shard's rows on rank s mod P, no more
                    r = json.loads(p.stdout)
                    self.assert_rows_held(r["rows_held_per_rank"], [0, 1, 2, 3], np_)
                    # The scores stay where they were computed: 2 tests × the rank's rows,
                    # never the 2 × 1437 table on rank 0.
                    self.assertEqual(r["scores_held_per_rank"],
                                     [2 * h for h in r["rows_held_per_rank"]])
                got["influence " + solver] = np.loadtxt(out, delimiter=",", skiprows=1)
                with open(out) as f:
                    got["influence " + solver + " text"] = f.read()
            # The whole table as .npy (rank 0 writes it by blocks of columns gathered from the
            # ranks) and the K largest |score| merged from each rank's K.
            for name, extra in (("npy", []), ("top-k", ["--top-k", "7"])):
                out = self.path(f"influence_{tag}." + ("npy" if name == "npy" else "csv"))
                p = run(np_, "influence", "--model", self.mean, "--train", self.train, "--test",
                        TEST, "--test-ids", "100000,100003", "--solver", "cg", "--cg-tolerance",
                        "1e-12", *extra, "--out", out)
                with open(out, "rb") as f:
                    got["influence " + name] = f.read()
                # Written by blocks through a temporary file, yet with every output's mode.
                got["influence " + name + " mode"] = os.stat(out).st_mode & 0o777
                # The printed table (3 most helpful and harmful per test), timings aside.
                got["influence table"] = [l for l in p.stdout.splitlines() if l.startswith("test id")]
            return got

        one = outputs(1)
        self.assertEqual(one["influence cg"].shape, (2 * 1437, 3))
        self.assertEqual(len(one["influence table"]), 2)
        mode = os.stat(self.path("influence_cg_np1.csv")).st_mode & 0o777
        self.assertEqual(one["influence npy mode"], mode)
        self.assertEqual(one["influence top-k mode"], mode)
        # The .npy holds the CSV's scores (test-major, training rows in file order), and the
        # top-k file each test's 7 largest |score| of them.
        table = np.load(io.BytesIO(one["influence npy"]))
        self.assertEqual(table.shape, (2, 1437))
        self.assertTrue(np.allclose(table.ravel(), one["influence cg"][:, 2], rtol=1e-15, atol=0))
        top = np.loadtxt(io.BytesIO(one["influence top-k"]), delimiter=",", skiprows=1)
        for j in range(2):
            want = np.sort(np.abs(table[j]))[::-1][:7]
            self.assertTrue(np.array_equal(np.abs(top[7 * j:7 * (j + 1), 2]), want))
        for np_ in (2, 3):
            many = outputs(np_)
            with self.subTest(np=np_):
                for key in ("eval vote", "eval mean", "compare", "influence cg text",
                            "influence npy", "influence top-k", "influence table"):
                    self.assertEqual(many[key], one[key], key)
                a, b = one["influence direct"], many["influence direct"]
                self.assertTrue(np.array_equal(a[:, :2], b[:, :2]))
                self.assertLessEqual(np.max(np.abs(a[:, 2] - b[:, 2])),
                                     DIRECT_RTOL * np.max(np.abs(a[:, 2])))
                # The two solvers agree with each other (a test that can fail).
                c = one["influence cg"]
                self.assertLessEqual(np.max(np.abs(a[:, 2] - c[:, 2])), 1e-8 * np.max(np.abs(a[:, 2])))

    def assert_same_failure(self, args, dir_=None, expect=None):
        """args fail on 1 and 3 ranks with the same single line, exit 1; DIR unchanged."""
        before = files(dir_) if dir_ else None
        lines = set()
        for np_ in (1, 3):
            p = run(np_, *args, check=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            self.assertEqual(p.stdout, "")
            lines.add(p.stderr)
            if dir_:
                self.assertEqual(files(dir_), before)
        self.assertEqual(len(lines), 1, lines)
        if expect:
            self.assertIn(expect, lines.pop())

    def test_bad_input_is_one_line_on_every_rank(self):
        # NaNs in the data: no DIR, no temporary directory. Each rank reads its shards' rows
        # only; rows a < b are put on ranks rank(b) < rank(a) of 3, so that the line names
        # row a (one process's) only if the ranks agree on the file's first bad row, not on
        # the lowest failing rank.
        shard_of = {i: s for s, shard in enumerate(manifest(self.one)["shards"])
                    for c in shard["slices"] for i in c["ids"]}
        rank = [shard_of[int(i)] % 3 for i in self.ids]
        a, b = next((a, b) for a in range(1000, 1400) for b in range(a + 1, 1437)
                    if rank[b] < rank[a])
        X = self.X.astype(np.float64).copy()
        X[a, 3] = X[b, 1] = np.nan
        bad = self.path("nan.npz")
        np.savez(bad, X=X, y=self.y, ids=self.ids)
        out = self.path("never")
        self.assert_same_failure(["sisa", "train", "--spec", SPEC, "--data", bad, "--shards", "4",
                                  "--out", out, "--quiet"], expect=f"nan.npz: X contains NaN or Inf at row {a}")
        self.assertFalse(os.path.exists(out))
        self.assertFalse([n for n in os.listdir(self.dir) if n.startswith("never")])
        # An unknown id; a changed training row; DIR unchanged each time.
        d = self.sisa_train(1, "errors")
        self.assert_same_failure(["sisa", "unlearn", "--model", d, "--forget-ids", "3,99999999",
                                  "--quiet"], d, "unknown id 99999999")
        X = self.X.copy()
        X[10, 5] += 1
        changed = self.path("changed.npz")
        np.savez(changed, X=X, y=self.y, ids=self.ids)
        self.assert_same_failure(["sisa", "unlearn", "--model", d, "--forget-ids", "3",
                                  "--data", changed, "--quiet"], d, "rows differ")
        self.assert_same_failure(["eval", "--model", d, "--data", bad], d, "nan.npz")
        self.assert_same_failure(["influence", "--model", d, "--train", self.train, "--test", TEST,
                                  "--test-ids", "12345678", "--out", self.path("never.csv")], d,
                                 "12345678")
        self.assert_same_failure(["self-influence", "--model", d, "--train", self.train,
                                  "--out", self.path("never.csv")], d, "SISA ensemble DIR")
        self.assertFalse(os.path.exists(self.path("never.csv")))


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
