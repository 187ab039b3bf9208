#!/usr/bin/env python3
"""Every `lethe --help` tells the truth: its examples run, the documented defaults are the code's.

    /usr/bin/python3 tests/python/test_help.py --lethe PATH/TO/lethe [unittest args]

Plain unittest (numpy, no torch). The subcommands are the ones `lethe --help` lists, so a
new subcommand is checked without editing this file.

* Each subcommand's `--help` shows at least one example (the lines under "example:"), and
  each example runs as written from the repository root, exit code 0. It runs in a fresh
  temporary directory holding a copy of examples/ (the only repository files examples may
  use), so the files it writes never land in the repository.
* The committed example models are what examples/README.md says: trained to the optimum
  of their spec on examples/digits/train.npz (the second without examples/digits/forget.txt).
* The solver defaults in docs/influence.md (the defaults table, and the parenthesis after
  "**LiSSA's defaults**") are the ones `lethe influence --help` prints.

Tests are skipped, with a message, when --lethe is missing or does not name an executable
file. The last line printed is "N passed, N failed, N skipped"; the exit code is 0 iff
nothing failed.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

from lethe_test_main import run_tests

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")
INFLUENCE_DOC = os.path.join(ROOT, "docs", "influence.md")

LETHE = None  # set from --lethe in main()

# An example is a user's first run: it must be quick on the bundled data even on a loaded
# 2-core CI machine.
EXAMPLE_TIMEOUT_S = 120
# The committed models were trained to ‖∇L‖ ≤ 1e-9 (lethe train's default tolerance); eval
# recomputes the gradient, which agrees to rounding.
OPTIMUM_GRAD_NORM = 1e-8


def require_lethe():
    if not LETHE or not (os.path.isfile(LETHE) and os.access(LETHE, os.X_OK)):
        raise unittest.SkipTest(f"lethe binary not found (--lethe {LETHE!r}); build tools/lethe first")


def run(args, cwd=None, timeout=EXAMPLE_TIMEOUT_S):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def subcommands():
    """The command names `lethe --help` lists under "commands:"."""
    proc = run([LETHE, "--help"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "commands:")
    names = []
    for line in lines[start + 1:]:
        if not line.startswith("  ") or not line.strip():
            break
        names.append(line.split()[0])
    return names


def help_text(command):
    proc = run([LETHE, command, "--help"])
    assert proc.returncode == 0, f"lethe {command} --help exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def examples_of(text):
    """The example command lines: the indented lines after "example:" up to a blank line."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() in ("example:", "examples:"))
    except StopIteration:
        return []
    found = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        found.append(line.strip())
    return found


def option_defaults(text):
    """{option: default} for every "--name arg (=value)" line of a --help text."""
    return dict(re.findall(r"^\s+(?:-\w \[ )?(--[\w-]+)\s*\]?\s+arg \(=([^)]*)\)", text, re.M))


def same_value(doc, code):
    try:
        return float(doc.replace(",", "")) == float(code)
    except ValueError:
        return doc == code


class TestHelpExamples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_lethe()
        cls.commands = subcommands()

    def test_commands_listed(self):
        self.assertIn("eval", self.commands)
        self.assertIn("unlearn", self.commands)

    def test_every_example_runs(self):
        for command in self.commands:
            with self.subTest(command=command):
                found = examples_of(help_text(command))
                self.assertTrue(found, f"lethe {command} --help shows no example")
                for line in found:
                    self.check_example(command, line)

    def check_example(self, command, line):
        argv = shlex.split(line)
        self.assertEqual(argv[:2], ["lethe", command], line)
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(EXAMPLES, os.path.join(tmp, "examples"))
            proc = run([LETHE, *argv[1:]], cwd=tmp)
            self.assertEqual(proc.returncode, 0,
                             f"`{line}` (from lethe {command} --help, run in a copy of the "
                             f"repository's examples/) exited {proc.returncode}:\n{proc.stderr}")


class TestExampleModels(unittest.TestCase):
    def setUp(self):
        require_lethe()

    def check_optimum(self, model, spec, forget=None):
        digits = os.path.join(EXAMPLES, "digits")
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(digits, "train.npz")
            if forget:  # eval has no --forget: check the optimum on the kept examples
                with open(os.path.join(digits, forget)) as f:
                    ids = {int(t.split("#")[0]) for t in f if t.split("#")[0].strip()}
                with np.load(data) as d:
                    keep = np.array([i not in ids for i in d["ids"]])
                    self.assertEqual(int((~keep).sum()), len(ids))
                    kept = {name: d[name][keep] for name in d.files}
                data = os.path.join(tmp, "kept.npz")
                np.savez(data, **kept)
            proc = run([LETHE, "eval", "--model", os.path.join(digits, model), "--data", data,
                        "--json"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        got = json.loads(proc.stdout)
        self.assertLessEqual(got["grad_norm"], OPTIMUM_GRAD_NORM, got)
        proc = run([LETHE, "inspect", os.path.join(digits, model), "--json"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(os.path.join(digits, spec)) as f:
            want = json.load(f)
        self.assertEqual(json.loads(proc.stdout)["spec"], want)
        if forget:  # and it records what it was trained without
            self.assertEqual(json.loads(proc.stdout)["forgotten"]["ids"], sorted(ids))

    def test_model(self):
        self.check_optimum("model.safetensors", "softmax.json")

    def test_retrained(self):
        self.check_optimum("retrained.safetensors", "softmax.json", forget="forget.txt")


class TestSolverDefaultsDocumented(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_lethe()
        cls.code = option_defaults(help_text("influence"))
        with open(INFLUENCE_DOC, encoding="utf-8") as f:
            cls.doc = f.read()

    def test_defaults_table(self):
        table = re.findall(r"^\| `(--[\w-]+)` \| `([^`]*)` \|", self.doc, re.M)
        self.assertTrue(table, "docs/influence.md has no solver defaults table")
        documented = dict(table)
        for option, value in documented.items():
            self.assertIn(option, self.code, f"docs/influence.md documents {option}, "
                                             "which lethe influence --help does not have")
            self.assertTrue(same_value(value, self.code[option]),
                            f"docs/influence.md: {option} defaults to {value}, "
                            f"lethe influence --help says {self.code[option]}")
        solver_options = [o for o in self.code if o.startswith(("--lissa", "--cg", "--kfac"))]
        solver_options += ["--solver", "--curvature", "--damping", "--preconditioner", "--rank",
                           "--solver-seed"]
        missing = [o for o in solver_options if o in self.code and o not in documented]
        self.assertFalse(missing, f"solver options missing from docs/influence.md's table: {missing}")

    def test_lissa_defaults_prose(self):
        match = re.search(r"\*\*LiSSA's defaults\*\* \(([^)]*)\)", self.doc)
        if not match:
            self.skipTest("docs/influence.md has no '**LiSSA's defaults** (...)' sentence")
        prose = match.group(1)
        for pattern, option in ((r"depth\s+(?:at\s+most\s+)?(\d+)", "--lissa-depth"),
                                (r"`--lissa-tolerance`\s+([\d.e+-]+)", "--lissa-tolerance")):
            found = re.search(pattern, prose)
            self.assertIsNotNone(found, f"'{pattern}' not in the LiSSA defaults: {prose}")
            self.assertTrue(same_value(found.group(1), self.code[option]),
                            f"docs/influence.md says {found.group(0)}, lethe influence --help "
                            f"says {option} {self.code[option]}")
        # "full batches" is --lissa-batch 0; otherwise the prose names the batch size.
        if re.search(r"full\s+batches", prose):
            self.assertTrue(same_value("0", self.code["--lissa-batch"]),
                            "docs/influence.md says full batches, lethe influence --help says "
                            f"--lissa-batch {self.code['--lissa-batch']}")
        else:
            found = re.search(r"batches\s+of\s+(\d+)", prose)
            self.assertIsNotNone(found, f"no batch size in the LiSSA defaults: {prose}")
            self.assertTrue(same_value(found.group(1), self.code["--lissa-batch"]))


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
