#!/usr/bin/env python3
"""Bad input gets a clear error and loses nothing: the lethe CLI on hostile inputs.

    /usr/bin/python3 tests/python/test_cli_errors.py --lethe PATH/TO/lethe [unittest args]

Plain unittest (no pytest; needs numpy). Every case runs the real lethe binary in a fresh
temporary directory holding good copies of the digits example (train.npz, softmax.json,
forget.txt, a valid model.safetensors) plus the bad file under test, and asserts that

  (a) the exit code is non-zero (1 for bad input, 2 for bad command-line usage);
  (b) stderr is exactly one line, "lethe COMMAND: ...", naming the offending file (or
      option) and containing a phrase specific to the problem; stdout is empty;
  (c) nothing was created in the directory (no output, no temporary file);
  (d) every file there is unchanged: same bytes, same inode, same mtime.

Positive controls run the same commands on good inputs (they succeed and do write their
output), check that `lethe train` is deterministic, and that `lethe train --forget-ids`
really retrains without those ids. Tests are skipped, with a message, when --lethe is
missing or does not name an executable file. The last line printed is
"N passed, N failed, N skipped"; the exit code is 0 iff nothing failed.
"""

import contextlib
import hashlib
import io
import json
import os
import resource
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from lethe_test_main import run_tests
import zipfile
import zlib

try:
    import numpy as np
except ImportError:
    # CMake may have found another python3 first (pyenv, a venv); Debian's has numpy.
    if (os.access("/usr/bin/python3", os.X_OK) and not os.environ.get("LETHE_TEST_REEXEC")
            and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3")):
        os.environ["LETHE_TEST_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3", os.path.abspath(__file__), *sys.argv[1:]])
    raise

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "examples", "digits")

LETHE = None  # set from --lethe in main()

# Every lethe run in this file is single-threaded: the examples are tiny, and on a loaded
# machine a thread pool only slows them down.
THREADS = ("--threads", "1")
GIGABYTES_SECONDS = 5.0          # hostile size claims must fail at least this fast
ADDRESS_SPACE_LIMIT = 4 << 30    # ... and within this much address space (RLIMIT_AS)
# Set by CMake for -DLETHE_SANITIZE builds: AddressSanitizer reserves terabytes of address
# space for its shadow memory and runs several times slower, so the address-space and
# time limits above (and the peak-memory measurements) are skipped there, with a note.
SANITIZED = bool(os.environ.get("LETHE_SANITIZED"))


# ------------------------------------------------------------------------------ helpers

def require_lethe():
    if not LETHE or not (os.path.isfile(LETHE) and os.access(LETHE, os.X_OK)):
        raise unittest.SkipTest(f"lethe binary not found (--lethe {LETHE!r}); build tools/lethe first")


def run_lethe(args, cwd, address_space=None, timeout=120):
    """Runs lethe ARGS in cwd; returns (returncode, stdout, stderr, seconds)."""
    def limit():
        if address_space:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    start = time.monotonic()
    proc = subprocess.run([LETHE, *args], cwd=cwd, capture_output=True, timeout=timeout,
                          preexec_fn=limit if address_space else None)
    seconds = time.monotonic() - start
    return (proc.returncode, proc.stdout.decode("utf-8", "backslashreplace"),
            proc.stderr.decode("utf-8", "backslashreplace"), seconds)


def file_digest(path, size):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= (64 << 20):
            h.update(f.read())
        else:  # large sparse test files: the ends are enough (size, inode, mtime checked too)
            h.update(f.read(1 << 20))
            f.seek(size - (1 << 20))
            h.update(f.read())
    return h.hexdigest()


def snapshot(root):
    """{relative path: (kind, inode, size, mtime_ns, content digest or link target)}."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                kind, content = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, content = "dir", None
            else:
                kind, content = "file", file_digest(path, st.st_size)
            snap[os.path.relpath(path, root)] = (kind, st.st_ino, st.st_size, st.st_mtime_ns, content)
    return snap


# --- safetensors, written by hand so that every rule can be broken on purpose

SOFTMAX_SPEC = {"format": "lethe/1",
                "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 10}],
                "loss": "cross_entropy", "l2": 0.001}
DTYPE_SIZE = {"F64": 8, "F32": 4, "I64": 8}


def safetensors_bytes(header, data, header_len=None):
    """8-byte little-endian header length, the JSON header (str, dict or bytes), the data."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode("utf-8")
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header) if header_len is None else header_len) + header + data


def model_header(tensors, spec=SOFTMAX_SPEC):
    """tensors: [(name, dtype, shape)] packed back to back -> (header dict, data size)."""
    header = {}
    if spec is not None:
        header["__metadata__"] = {"format": "pt",
                                  "lethe": spec if isinstance(spec, str) else json.dumps(spec)}
    offset = 0
    for name, dtype, shape in tensors:
        n = int(np.prod(shape, dtype=np.int64)) * DTYPE_SIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    return header, offset


def softmax_model_bytes(seed=3, bias_shape=(10,), weight_dtype="F64", bias_dtype="F64",
                        spec=SOFTMAX_SPEC, values=None):
    """A valid (by default) F64 softmax-regression model for the 64-feature digits data."""
    header, size = model_header([("0.weight", weight_dtype, (10, 64)),
                                 ("0.bias", bias_dtype, bias_shape)], spec)
    if values is None:
        values = np.random.default_rng(seed).uniform(-0.1, 0.1, size // 8)
    return safetensors_bytes(header, np.asarray(values, dtype="<f8").tobytes()[:size])


# --- npz

def load_train():
    with np.load(os.path.join(DIGITS, "train.npz")) as z:
        return z["X"].copy(), z["y"].copy(), z["ids"].copy()


def npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def zip_bytes(members):
    """A deflated zip64 archive of [(name, data, declared uncompressed size or None)],
    written by hand so that the declared size can lie."""
    out = bytearray()
    central = bytearray()
    for name, data, declared in members:
        name = name.encode()
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = comp.compress(data) + comp.flush()
        usize = len(data) if declared is None else declared
        crc = zlib.crc32(data)
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc,
                           0xFFFFFFFF, 0xFFFFFFFF, len(name), 20)
        out += name + struct.pack("<HHQQ", 1, 16, usize, len(packed)) + packed
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, crc,
                               0xFFFFFFFF, 0xFFFFFFFF, len(name), 28, 0, 0, 0, 0o644 << 16,
                               0xFFFFFFFF)
        central += name + struct.pack("<HHQQQ", 1, 24, usize, len(packed), offset)
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                       len(central), cd_offset, 0)
    return bytes(out)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------- the base

class CliCase(unittest.TestCase):
    """Fresh directories of good inputs, and the failure / success assertions."""

    def setUp(self):
        require_lethe()
        self._tmp = tempfile.TemporaryDirectory(prefix="lethe_cli_errors_")
        self.addCleanup(self._tmp.cleanup)
        self._n = 0

    def fresh(self):
        """A new directory with train.npz, softmax.json, forget.txt and model.safetensors."""
        self._n += 1
        d = os.path.join(self._tmp.name, f"case{self._n:03d}")
        os.mkdir(d)
        for name in ("train.npz", "softmax.json", "forget.txt"):
            shutil.copy2(os.path.join(DIGITS, name), os.path.join(d, name))
        write(os.path.join(d, "model.safetensors"), softmax_model_bytes())
        return d

    @contextlib.contextmanager
    def case(self, label, **files):
        """subTest(label) in a fresh directory, with extra files {name: bytes or str}."""
        with self.subTest(label):
            d = self.fresh()
            for name, content in files.items():
                name = name.replace("__", ".")
                write(os.path.join(d, name), content.encode() if isinstance(content, str) else content)
            yield d

    def fails(self, d, args, names, phrases, code=1, gigabytes=False, max_seconds=None):
        """Runs lethe ARGS in d and asserts the error contract (a)-(d), see the module doc.
        code None: any non-zero exit code. gigabytes: the input claims gigabytes; lethe
        must refuse it within GIGABYTES_SECONDS and ADDRESS_SPACE_LIMIT."""
        before = snapshot(d)
        if gigabytes and SANITIZED:
            print(f"  note: no address-space or time limit under a sanitizer: lethe {args[0]}")
        rc, out, err, seconds = run_lethe(
            [*args], d, address_space=ADDRESS_SPACE_LIMIT if gigabytes and not SANITIZED else None)
        what = f"lethe {' '.join(args)}\n  exit {rc}, {seconds:.2f} s\n  stdout: {out!r}\n  stderr: {err!r}"
        if code is None:
            self.assertNotEqual(rc, 0, what)
        else:
            self.assertEqual(rc, code, what)
        self.assertTrue(err.endswith("\n") and err.count("\n") == 1,
                        f"stderr is not exactly one line\n{what}")
        line = err.rstrip("\n")
        self.assertRegex(line, r"^lethe( [a-z]+)?: ", f"stderr does not start with 'lethe COMMAND: '\n{what}")
        for name in names:
            self.assertIn(name, line, f"the error does not name {name!r}\n{what}")
        for phrase in phrases:
            self.assertIn(phrase, line, f"the error does not say {phrase!r}\n{what}")
        self.assertEqual(out, "", f"stdout is not empty\n{what}")
        after = snapshot(d)
        created = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        self.assertEqual(created, [], f"files were created\n{what}")
        self.assertEqual(removed, [], f"files were removed\n{what}")
        changed = sorted(k for k in before if before[k] != after[k])
        self.assertEqual(changed, [], f"input files changed (bytes, inode or mtime)\n{what}")
        if gigabytes:
            max_seconds = GIGABYTES_SECONDS
        if max_seconds is not None and not SANITIZED:
            self.assertLess(seconds, max_seconds, f"not fast\n{what}")
        return line

    def succeeds(self, d, args):
        """Runs lethe ARGS in d, asserts exit 0 and that no input changed; returns stdout."""
        before = snapshot(d)
        rc, out, err, _ = run_lethe([*args], d)
        self.assertEqual(rc, 0, f"lethe {' '.join(args)} failed\nstdout: {out}\nstderr: {err}")
        after = snapshot(d)
        changed = sorted(k for k in before if before[k] != after.get(k))
        self.assertEqual(changed, [], f"lethe {' '.join(args)} changed its inputs")
        leftovers = [k for k in after if ".tmp." in k]
        self.assertEqual(leftovers, [], "temporary files left behind")
        return out

    def model_commands(self, model, out="out.safetensors"):
        """Every command that reads a model: inspect, eval, train --init."""
        return [("inspect", model),
                ("eval", "--model", model, "--data", "train.npz", *THREADS),
                ("train", "--init", model, "--data", "train.npz", "--out", out, *THREADS)]

    def data_commands(self, data, out="out.safetensors"):
        """Every command that reads data: train --spec, eval --model."""
        return [("train", "--spec", "softmax.json", "--data", data, "--out", out, *THREADS),
                ("eval", "--model", "model.safetensors", "--data", data, *THREADS)]


QUICK_TRAIN = ("--max-iterations", "3", "--no-polish", "--quiet")  # controls: exit 0 fast


# ------------------------------------------------------------------------------ models

class TestModelFiles(CliCase):

    def test_control_good_model(self):
        d = self.fresh()
        out = self.succeeds(d, ["inspect", "model.safetensors"])
        self.assertIn("650 parameters", out)
        out = self.succeeds(d, ["eval", "--model", "model.safetensors", "--data", "train.npz",
                                "--json", *THREADS])
        self.assertEqual(json.loads(out)["n"], 1437)
        self.succeeds(d, ["train", "--init", "model.safetensors", "--data", "train.npz",
                          "--out", "out.safetensors", *THREADS, *QUICK_TRAIN])
        self.assertTrue(os.path.isfile(os.path.join(d, "out.safetensors")))
        # The same spec on the side, and a model without an embedded spec plus --spec.
        write(os.path.join(d, "bare.safetensors"), softmax_model_bytes(spec=None))
        self.succeeds(d, ["inspect", "bare.safetensors", "--spec", "softmax.json"])

    def test_missing_model(self):
        for args in self.model_commands("nope.safetensors"):
            with self.case(args[0]) as d:
                self.fails(d, args, ["nope.safetensors"], ["cannot open", "No such file"])
        with self.case("directory") as d:
            os.mkdir(os.path.join(d, "dir.safetensors"))
            self.fails(d, ["inspect", "dir.safetensors"], ["dir.safetensors"], ["cannot open"])

    def check_bad_model(self, label, content, phrases, gigabytes=False, name="bad.safetensors"):
        for args in self.model_commands(name):
            with self.case(f"{label}: {args[0]}") as d:
                write(os.path.join(d, name), content)
                self.fails(d, args, [name], phrases, gigabytes=gigabytes)

    def test_truncated(self):
        good = softmax_model_bytes()
        self.check_bad_model("in the data", good[:len(good) - 100], ["past the end of the data buffer"])
        self.check_bad_model("in the header", good[:100], ["exceeds file size 100"])
        self.check_bad_model("in the length", good[:5], ["file too short"])
        self.check_bad_model("empty", b"", ["file too short"])

    def test_corrupt(self):
        garbage = np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8).tobytes()
        self.check_bad_model("garbage", garbage, ["exceeds file size 4000"])
        self.check_bad_model("garbage header", struct.pack("<Q", 64) + garbage,
                             ["header is not valid JSON"])
        self.check_bad_model("header not an object", safetensors_bytes("[1, 2]", b""),
                             ["header must be a JSON object"])
        header, size = model_header([("0.weight", "F64", (10, 64)), ("0.bias", "F64", (10,))])
        text = json.dumps(header)
        dup = text[:-1] + ', "0.bias": ' + json.dumps(header["0.bias"]) + "}"
        self.check_bad_model("duplicate key", safetensors_bytes(dup, bytes(size)),
                             ['duplicate key "0.bias"'])
        self.check_bad_model("bad embedded spec",
                             softmax_model_bytes(spec='{"format": "lethe/1", "layers": ['),
                             ["embedded spec", "not valid JSON"])
        self.check_bad_model("no spec", softmax_model_bytes(spec=None), ["no architecture spec"])
        values = np.zeros(650)
        values[17] = np.nan
        self.check_bad_model("NaN parameter", softmax_model_bytes(values=values),
                             ["parameters contain NaN or Inf"])

    def test_header_length_past_end(self):
        good = softmax_model_bytes()
        bad = struct.pack("<Q", len(good)) + good[8:]
        self.check_bad_model("length = file size", bad, [f"header length {len(good)} exceeds file size"])

    def test_header_claims_gigabytes(self):
        # 8e9 bytes of header in a 16-byte file.
        self.check_bad_model("8e9 header", struct.pack("<Q", 8_000_000_000) + b"{}      ",
                             ["header length 8000000000 exceeds file size 16"], gigabytes=True)
        # A 10^12-element tensor in a file of a few hundred bytes.
        header = {"0.weight": {"dtype": "F64", "shape": [1000000, 1000000],
                               "data_offsets": [0, 8 * 10**12]}}
        self.check_bad_model("8e12 tensor", safetensors_bytes(header, b"\0" * 8),
                             ["past the end of the data buffer"], gigabytes=True)
        # Over the 100 MB header limit, in a (sparse) file large enough to hold it.
        with self.case("200 MB header, inspect") as d:
            path = os.path.join(d, "huge.safetensors")
            with open(path, "wb") as f:
                f.write(struct.pack("<Q", 200_000_000) + b"{}")
                f.truncate(200_000_016)
            self.fails(d, ["inspect", "huge.safetensors"], ["huge.safetensors"],
                       ["header length 200000000 exceeds the limit"], gigabytes=True)

    def test_overlapping_tensors(self):
        header, size = model_header([("0.weight", "F64", (10, 64)), ("0.bias", "F64", (10,))])
        header["0.bias"]["data_offsets"] = [5040, 5120]
        self.check_bad_model("overlap", safetensors_bytes(header, bytes(5120)),
                             ["tensor '0.bias' overlaps tensor '0.weight'"])

    def test_hole_between_tensors(self):
        header, size = model_header([("0.weight", "F64", (10, 64)), ("0.bias", "F64", (10,))])
        header["0.bias"]["data_offsets"] = [5128, 5208]
        self.check_bad_model("hole", safetensors_bytes(header, bytes(5208)),
                             ["hole in the data buffer", "[5120, 5128)"])
        self.check_bad_model("trailing bytes", softmax_model_bytes() + bytes(8),
                             ["8 trailing bytes after the last tensor"])

    def test_dtype_shape_mismatch(self):
        header, size = model_header([("0.weight", "F64", (10, 64)), ("0.bias", "F64", (10,))])
        header["0.bias"]["shape"] = [11]  # 88 bytes, but the offsets hold 80
        self.check_bad_model("bytes vs shape", safetensors_bytes(header, bytes(size)),
                             ["tensor '0.bias'", "hold 80 bytes but F64 [11] needs 88"])
        header["0.bias"]["shape"] = [10]
        header["0.bias"]["dtype"] = "F32"  # 40 bytes, but the offsets hold 80
        self.check_bad_model("bytes vs dtype", safetensors_bytes(header, bytes(size)),
                             ["tensor '0.bias'", "hold 80 bytes but F32 [10] needs 40"])
        self.check_bad_model("bias shape vs spec", softmax_model_bytes(bias_shape=(9,)),
                             ['tensor "0.bias" has shape [9], expected [10]'])
        self.check_bad_model("mixed dtypes", softmax_model_bytes(bias_dtype="F32"),
                             ["tensors mix dtypes F64 and F32"])
        self.check_bad_model("integer parameters",
                             softmax_model_bytes(weight_dtype="I64", bias_dtype="I64"),
                             ['tensor "0.weight" has dtype I64'])
        header, size = model_header([("0.weight", "F64", (10, 64)), ("0.bias", "F64", (10,)),
                                     ("extra", "F64", (3,))])
        self.check_bad_model("tensor not in the spec", safetensors_bytes(header, bytes(size)),
                             ['tensor "extra" is not used by the spec'])

    def test_layer_widths_do_not_chain(self):
        spec = {"format": "lethe/1", "loss": "cross_entropy",
                "layers": [{"type": "linear", "weight": "a", "bias": "ab"}, {"type": "tanh"},
                           {"type": "linear", "weight": "b"}]}
        header, size = model_header([("a", "F64", (32, 64)), ("ab", "F64", (32,)),
                                     ("b", "F64", (10, 16))], spec)
        self.check_bad_model("32 -> 16", safetensors_bytes(header, bytes(size)),
                             ["layer 2 (linear): takes 16 inputs but the previous layer has 32 outputs"])
        spec = dict(SOFTMAX_SPEC, layers=[dict(SOFTMAX_SPEC["layers"][0], out=7)])
        self.check_bad_model("spec out vs weight", softmax_model_bytes(spec=spec),
                             ['spec says "out": 7 but the width is 10'])


# ------------------------------------------------------------------------------- specs

class TestSpecs(CliCase):

    def spec_commands(self, spec):
        """A sidecar spec is read by train --spec, inspect --spec, eval --spec."""
        return [("train", "--spec", spec, "--data", "train.npz", "--out", "out.safetensors", *THREADS),
                ("inspect", "model.safetensors", "--spec", spec),
                ("eval", "--model", "model.safetensors", "--spec", spec, "--data", "train.npz", *THREADS)]

    def check_bad_spec(self, label, spec, phrases, name="bad.json"):
        text = spec if isinstance(spec, str) else json.dumps(spec, indent=2)
        for args in self.spec_commands(name):
            with self.case(f"{label}: {args[0]}") as d:
                write(os.path.join(d, name), text.encode())
                self.fails(d, args, [name], phrases)

    def edited(self, edit):
        spec = json.loads(json.dumps(SOFTMAX_SPEC))
        edit(spec)
        return spec

    def test_control_good_spec(self):
        d = self.fresh()
        write(os.path.join(d, "good.json"), json.dumps(SOFTMAX_SPEC, indent=2).encode())
        for args in self.spec_commands("good.json"):
            self.succeeds(d, [*args, *(QUICK_TRAIN if args[0] == "train" else ())])
        self.assertTrue(os.path.isfile(os.path.join(d, "out.safetensors")))

    def test_bad_json(self):
        self.check_bad_spec("truncated", '{"format": "lethe/1",\n "layers": [\n', ["not valid JSON"])
        self.check_bad_spec("garbage", "\x01\x02 not json at all", ["not valid JSON"])
        self.check_bad_spec("raw newline in a string", '{"format": "lethe/1\n"}', ["not valid JSON"])
        self.check_bad_spec("empty", "", ["not valid JSON"])
        self.check_bad_spec("not an object", "[1, 2, 3]", ["must be a JSON object"])
        for args in self.spec_commands("nope.json"):
            with self.case(f"missing: {args[0]}") as d:
                self.fails(d, args, ["nope.json"], ["cannot open", "No such file"])

    def test_unknown_layer_type(self):
        self.check_bad_spec("softmax layer",
                            self.edited(lambda s: s["layers"].append({"type": "softmax"})),
                            ['layer 1: unknown layer type "softmax"'])

    def test_unknown_loss(self):
        self.check_bad_spec("hinge", self.edited(lambda s: s.update(loss="hinge")),
                            ['unknown loss "hinge"'])

    def test_unknown_key(self):
        self.check_bad_spec("top level", self.edited(lambda s: s.update(lr=0.1)),
                            ['unknown key "lr"'])
        self.check_bad_spec("in a layer",
                            self.edited(lambda s: s["layers"][0].update(activation="relu")),
                            ['layer 0 (linear): unknown key "activation"'])
        self.check_bad_spec("in an activation",
                            self.edited(lambda s: s["layers"].insert(0, {"type": "relu", "inplace": True})),
                            ['layer 0 (relu): unknown key "inplace"'])

    def test_other_bad_values(self):
        self.check_bad_spec("format", self.edited(lambda s: s.update(format="lethe/2")),
                            ['"format" must be "lethe/1"'])
        self.check_bad_spec("negative l2", self.edited(lambda s: s.update(l2=-1)),
                            ['"l2" = -1: must be >= 0'])
        self.check_bad_spec("no layers", self.edited(lambda s: s.update(layers=[])),
                            ['"layers" must be a non-empty array'])
        self.check_bad_spec("tensor used twice",
                            self.edited(lambda s: s["layers"][0].update(bias="0.weight")),
                            ['tensor "0.weight" is used twice'])

    def test_spec_names_missing_tensor(self):
        spec = self.edited(lambda s: s["layers"][0].update(weight="fc.weight"))
        for args in self.spec_commands("renamed.json")[1:]:  # the model lacks the tensor
            with self.case(args[0]) as d:
                write(os.path.join(d, "renamed.json"), json.dumps(spec).encode())
                self.fails(d, args, ["model.safetensors"],
                           ['the spec names tensor "fc.weight" but the file has no such tensor'])


# -------------------------------------------------------------------------------- data

class TestData(CliCase):

    def check_bad_data(self, label, content, phrases, name="bad.npz", commands=None,
                       gigabytes=False):
        for args in commands or self.data_commands(name):
            with self.case(f"{label}: {args[0]}") as d:
                write(os.path.join(d, name), content)
                self.fails(d, args, [name], phrases, gigabytes=gigabytes)

    @staticmethod
    def npz(**arrays):
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def test_control_good_data(self):
        X, y, ids = load_train()
        d = self.fresh()
        write(os.path.join(d, "good.npz"), self.npz(X=X, y=y, ids=ids))
        members = [(k + ".npy", npy_bytes(v), None) for k, v in (("X", X), ("y", y), ("ids", ids))]
        write(os.path.join(d, "handmade.npz"), zip_bytes(members))
        for data in ("good.npz", "handmade.npz"):
            for args in self.data_commands(data, out=f"out-{data}.safetensors"):
                self.succeeds(d, [*args, *(QUICK_TRAIN if args[0] == "train" else ())])
            self.assertTrue(os.path.isfile(os.path.join(d, f"out-{data}.safetensors")))

    def test_missing_npz(self):
        for args in self.data_commands("nope.npz"):
            with self.case(args[0]) as d:
                self.fails(d, args, ["nope.npz"], ["cannot open", "No such file"])

    def test_truncated_npz(self):
        with open(os.path.join(DIGITS, "train.npz"), "rb") as f:
            good = f.read()
        self.check_bad_npz_variants(good)

    def check_bad_npz_variants(self, good):
        self.check_bad_data("cut in half", good[:len(good) // 2], ["not a zip archive"])
        self.check_bad_data("cut short", good[:10], ["not a zip archive (10 bytes)"])
        self.check_bad_data("empty", b"", ["not a zip archive (0 bytes)"])

    def test_corrupt_npz(self):
        with open(os.path.join(DIGITS, "train.npz"), "rb") as f:
            good = bytearray(f.read())
        garbage = np.random.default_rng(9).integers(0, 256, 5000, dtype=np.uint8).tobytes()
        self.check_bad_data("garbage", garbage, ["not a zip archive"])
        damaged = bytearray(good)
        damaged[2000:2400] = bytes(400)  # inside X.npy's deflate stream
        self.check_bad_data("damaged member", bytes(damaged), ["member 'X.npy'"])
        X, y, ids = load_train()
        self.check_bad_data("no X", self.npz(y=y, ids=ids), ["missing array 'X'"])
        self.check_bad_data("pickled object", self.npz(X=X, y=y, ids=ids.astype(object)),
                            ["object arrays (pickles) are not supported"])

    def test_npz_claims_gigabytes(self):
        X, y, ids = load_train()
        # The zip says X.npy inflates to 8 GB; it holds 740 kB.
        members = [("X.npy", npy_bytes(X), 8_000_000_000), ("y.npy", npy_bytes(y), None)]
        self.check_bad_data("zip size", zip_bytes(members),
                            ["member 'X.npy'", "declared uncompressed size 8000000000"],
                            gigabytes=True)
        # The npy header says X is [125000000, 64]; the member is small.
        header = npy_bytes(X)
        fake = header.replace(b"(1437, 64)", b"(125000000, 64)", 1)
        self.assertNotEqual(fake, header)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("X.npy", fake)
            zf.writestr("y.npy", npy_bytes(y))
        self.check_bad_data("npy shape", buf.getvalue(), ["member 'X.npy'", "npy header implies"],
                            gigabytes=True)

    def test_x_width_differs_from_model(self):
        X, y, ids = load_train()
        narrow = self.npz(X=X[:, :32], y=y, ids=ids)
        commands = [("eval", "--model", "model.safetensors", "--data", "bad.npz", *THREADS),
                    ("train", "--init", "model.safetensors", "--data", "bad.npz",
                     "--out", "out.safetensors", *THREADS)]
        self.check_bad_data("32 features", narrow,
                            ["X has 32 features per example but the model's first layer takes 64"],
                            commands=commands)

    def test_nan_inf_in_x(self):
        X, y, ids = load_train()
        for label, value, row in (("NaN", np.nan, 5), ("Inf", np.inf, 7), ("-Inf", -np.inf, 1436)):
            bad = X.copy()
            bad[row, 3] = value
            self.check_bad_data(label, self.npz(X=bad, y=y, ids=ids),
                                [f"X contains NaN or Inf at row {row}"])
        bad = X.astype(np.float32)
        bad[2, 0] = np.nan
        self.check_bad_data("NaN float32", self.npz(X=bad, y=y, ids=ids),
                            ["X contains NaN or Inf at row 2"])

    def test_labels_out_of_range(self):
        X, y, ids = load_train()
        high = y.copy()
        high[3] = 10
        self.check_bad_data("label 10 for 10 classes", self.npz(X=X, y=high, ids=ids),
                            ["label 10 of id 3 is out of range [0, 10)"],
                            commands=[("eval", "--model", "model.safetensors", "--data", "bad.npz",
                                       *THREADS),
                                      ("train", "--init", "model.safetensors", "--data", "bad.npz",
                                       "--out", "out.safetensors", *THREADS)])
        negative = y.copy()
        negative[3] = -1
        self.check_bad_data("label -1", self.npz(X=X, y=negative, ids=ids),
                            ["label -1 of id 3 is out of range"])
        # A spec whose last layer has 5 outputs cannot hold labels 0..9.
        with self.case("out 5 for labels up to 9") as d:
            spec = dict(SOFTMAX_SPEC, layers=[dict(SOFTMAX_SPEC["layers"][0], out=5)])
            write(os.path.join(d, "five.json"), json.dumps(spec).encode())
            self.fails(d, ["train", "--spec", "five.json", "--data", "train.npz",
                           "--out", "out.safetensors", *THREADS],
                       ["train.npz"], ["is out of range [0, 5)"])

    def test_duplicate_ids(self):
        X, y, ids = load_train()
        dup = ids.copy()
        dup[10] = dup[3]
        self.check_bad_data("ids", self.npz(X=X, y=y, ids=dup), ["duplicate id 3 (rows 3 and 10)"])

    def test_inconsistent_members(self):
        X, y, ids = load_train()
        self.check_bad_data("y rows", self.npz(X=X, y=y[:-1], ids=ids),
                            ["y has 1436 rows but X has 1437"])
        self.check_bad_data("ids rows", self.npz(X=X, y=y, ids=ids[:-1]),
                            ["ids must have shape [1437]"])


# ------------------------------------------------------------------------- forget sets

class TestForgetSets(CliCase):

    def train_forget(self, *forget):
        return ("train", "--spec", "softmax.json", "--data", "train.npz", "--out", "out.safetensors",
                *forget, *THREADS)

    def test_control_good_forget_set(self):
        d = self.fresh()
        self.succeeds(d, [*self.train_forget("--forget", "forget.txt"), *QUICK_TRAIN])
        self.assertTrue(os.path.isfile(os.path.join(d, "out.safetensors")))

    def test_unknown_forget_id(self):
        with self.case("file", **{"f__txt": "# ids\n3\n99999\n"}) as d:
            self.fails(d, self.train_forget("--forget", "f.txt"), ["f.txt"],
                       ["unknown id 99999", "not in train.npz"])
        with self.case("list") as d:
            self.fails(d, self.train_forget("--forget-ids", "3,99999"), ["--forget-ids"],
                       ["unknown id 99999", "not in train.npz"])

    def test_empty_forget_set(self):
        with self.case("comments only", **{"f__txt": "# nothing to forget\n\n   # really\n"}) as d:
            self.fails(d, self.train_forget("--forget", "f.txt"), ["f.txt"], ["empty forget set"])
        with self.case("empty file", **{"f__txt": ""}) as d:
            self.fails(d, self.train_forget("--forget", "f.txt"), ["f.txt"], ["empty forget set"])
        with self.case("empty list") as d:
            self.fails(d, self.train_forget("--forget-ids", ""), ["--forget-ids"], ["empty forget set"])

    def test_bad_forget_entries(self):
        with self.case("duplicate in file", **{"f__txt": "3\n17\n3\n"}) as d:
            self.fails(d, self.train_forget("--forget", "f.txt"), ["f.txt"],
                       ["f.txt:3: duplicate id 3 (first on line 1)"])
        with self.case("not a number", **{"f__txt": "3\nseventeen\n"}) as d:
            self.fails(d, self.train_forget("--forget", "f.txt"), ["f.txt"],
                       ["f.txt:2: not an integer id: 'seventeen'"])
        with self.case("duplicate in list") as d:
            self.fails(d, self.train_forget("--forget-ids", "3,3"), ["--forget-ids"], ["duplicate id 3"])
        with self.case("empty item") as d:
            self.fails(d, self.train_forget("--forget-ids", "1,,2"), ["--forget-ids"], ["empty item"])
        with self.case("both") as d:
            self.fails(d, self.train_forget("--forget", "forget.txt", "--forget-ids", "3"),
                       ["--forget", "--forget-ids"], ["not both"], code=None)
        with self.case("missing file") as d:
            self.fails(d, self.train_forget("--forget", "nope.txt"), ["nope.txt"], ["cannot open"])
        X, y, ids = load_train()
        with self.case("everything") as d:
            buf = io.BytesIO()
            np.savez(buf, X=X[:3], y=y[:3], ids=ids[:3])
            write(os.path.join(d, "three.npz"), buf.getvalue())
            self.fails(d, ["train", "--spec", "softmax.json", "--data", "three.npz",
                           "--out", "out.safetensors", "--forget-ids", "0,1,2", *THREADS],
                       ["--forget-ids"], ["forgets every example"])


# ----------------------------------------------------------------- outputs and options

class TestOutputsAndOptions(CliCase):

    def test_out_names_an_input(self):
        cases = [
            ("data", ["train", "--spec", "softmax.json", "--data", "train.npz", "--out", "train.npz"],
             "train.npz"),
            ("data, other spelling", ["train", "--spec", "softmax.json", "--data", "train.npz",
                                      "--out", "./sub/../train.npz"], "train.npz"),
            ("init model", ["train", "--init", "model.safetensors", "--data", "train.npz",
                            "--out", "model.safetensors"], "model.safetensors"),
            ("spec", ["train", "--spec", "softmax.json", "--data", "train.npz", "--out", "softmax.json"],
             "softmax.json"),
            ("forget file", ["train", "--spec", "softmax.json", "--data", "train.npz",
                             "--forget", "forget.txt", "--out", "forget.txt"], "forget.txt"),
            ("hard link to the data", ["train", "--spec", "softmax.json", "--data", "train.npz",
                                       "--out", "hard.safetensors"], "train.npz"),
            ("symlink to the init model", ["train", "--init", "model.safetensors", "--data",
                                           "train.npz", "--out", "link.safetensors"],
             "model.safetensors"),
        ]
        for label, args, name in cases:
            with self.case(label) as d:
                os.mkdir(os.path.join(d, "sub"))
                os.link(os.path.join(d, "train.npz"), os.path.join(d, "hard.safetensors"))
                os.symlink("model.safetensors", os.path.join(d, "link.safetensors"))
                self.fails(d, [*args, *THREADS], [name], ["refusing to overwrite input file"])

    def test_failed_run_keeps_existing_output(self):
        with self.case("bad spec", **{"bad__json": '{"format": "lethe/1", "loss": "hinge"'}) as d:
            write(os.path.join(d, "out.safetensors"), b"previous model, must survive")
            self.fails(d, ["train", "--spec", "bad.json", "--data", "train.npz",
                           "--out", "out.safetensors", *THREADS], ["bad.json"], ["not valid JSON"])

    def test_unknown_option(self):
        commands = [("train", "--spec", "softmax.json", "--data", "train.npz", "--out",
                     "out.safetensors", "--bogus"),
                    ("eval", "--model", "model.safetensors", "--data", "train.npz", "--bogus"),
                    ("inspect", "model.safetensors", "--bogus")]
        for args in commands:
            with self.case(args[0]) as d:
                self.fails(d, args, ["--bogus"], ["unrecognised option"], code=2)

    def test_bad_usage(self):
        with self.case("missing value") as d:
            self.fails(d, ["train", "--spec", "softmax.json", "--data", "train.npz", "--out"],
                       ["--out"], ["required argument", "missing"], code=2)
        with self.case("not a number") as d:
            self.fails(d, ["train", "--spec", "softmax.json", "--data", "train.npz",
                           "--out", "out.safetensors", "--threads", "abc"],
                       ["--threads", "abc"], ["is invalid"], code=2)
        with self.case("unknown command") as d:
            self.fails(d, ["bogus"], ["bogus"], ["unknown command"], code=2)
        with self.case("two models") as d:  # boost's message does not name the extra argument
            self.fails(d, ["inspect", "model.safetensors", "other.safetensors"],
                       [], ["too many positional options"], code=2)

    def test_bad_option_values(self):
        def train(*extra, data="train.npz", threads=THREADS):
            return ["train", "--spec", "softmax.json", "--data", data, "--out", "out.safetensors",
                    *threads, *extra]
        cases = [(train("--dtype", "f16"), "--dtype", "unknown"),
                 (train("--optimizer", "sgd"), "--optimizer", "unknown"),
                 (train("--threads", "-1", threads=()), "--threads", "must be >= 0"),
                 (train("--chunk-size", "0"), "--chunk-size", "must be >= 1"),
                 (["eval", "--model", "model.safetensors", "--data", "train.npz", "--chunk-size",
                   "-5", *THREADS], "--chunk-size", "must be >= 1"),
                 (train("--tolerance", "0"), "--tolerance", "must be > 0"),
                 (train("--optimizer", "adam", "--batch-size", "0"), "--batch-size", "must be >= 1"),
                 (train(data="train.txt"), "train.txt", "unsupported dataset format"),
                 (["influence", "--model", "model.safetensors", "--train", "train.npz", "--test",
                   "train.npz", "--solver", "cg", "--preconditioner", "jacobi", "--out",
                   "scores.csv", *THREADS], "--preconditioner", "unknown"),
                 (["influence", "--model", "model.safetensors", "--train", "train.npz", "--test",
                   "train.npz", "--solver", "cg", "--kfac-examples", "0", "--out",
                   "scores.csv", *THREADS], "--kfac-examples", "must be >= 1"),
                 (["unlearn", "--model", "model.safetensors", "--train", "train.npz",
                   "--forget-ids", "1", "--solve-dtype", "f16", "--out", "p.safetensors",
                   *THREADS], "--solve-dtype", "unknown"),
                 (["unlearn", "--model", "model.safetensors", "--train", "train.npz",
                   "--forget-ids", "1", "--dtype", "f32", "--solve-dtype", "f64", "--out",
                   "p.safetensors", *THREADS], "--solve-dtype", "needs --dtype f64")]
        for args, name, phrase in cases:
            with self.case(" ".join(args[1:])) as d:
                self.fails(d, args, [name], [phrase], code=None)
        with self.case("missing --data") as d:
            self.fails(d, ["train", "--spec", "softmax.json", "--out", "out.safetensors"],
                       ["--data"], ["is required"], code=None)
        with self.case("missing --spec and --init") as d:
            self.fails(d, ["train", "--data", "train.npz", "--out", "out.safetensors"],
                       ["--spec"], ["is required"], code=None)

    def test_out_cannot_be_written(self):
        # Refused before any work (no training first): fast, and no progress lines.
        for label, out, phrase in (("no such directory", "nodir/out.safetensors", "nodir"),
                                   ("directory is a file", "softmax.json/out.safetensors",
                                    "not a directory"),
                                   ("out is a directory", "sub", "Is a directory")):
            with self.case(label) as d:
                os.mkdir(os.path.join(d, "sub"))
                self.fails(d, ["train", "--spec", "softmax.json", "--data", "train.npz",
                               "--out", out, *THREADS],
                           [out], ["cannot write", phrase], max_seconds=GIGABYTES_SECONDS)


# -------------------------------------------------------------------- positive controls

class TestTrainControls(CliCase):

    def train(self, d, out, *extra):
        self.succeeds(d, ["train", "--spec", "softmax.json", "--data", "train.npz", "--out", out,
                          "--quiet", *THREADS, *extra])
        with open(os.path.join(d, out), "rb") as f:
            return f.read()

    def eval_json(self, d, model, data):
        return json.loads(self.succeeds(d, ["eval", "--model", model, "--data", data, "--json",
                                            *THREADS]))

    def test_train_writes_output_and_nothing_else(self):
        d = self.fresh()
        before = set(os.listdir(d))
        self.train(d, "out.safetensors")
        self.assertEqual(set(os.listdir(d)) - before, {"out.safetensors"})
        out = self.succeeds(d, ["inspect", "out.safetensors"])
        self.assertIn("650 parameters", out)

    def test_train_is_deterministic(self):
        d = self.fresh()
        a = self.train(d, "a.safetensors")
        b = self.train(d, "b.safetensors")
        self.assertEqual(a, b, "two runs with the default seed differ")
        c = self.train(d, "c.safetensors", "--seed", "7")
        e = self.train(d, "e.safetensors", "--seed", "7")
        self.assertEqual(c, e, "two runs with --seed 7 differ")
        # A non-convex model, stopped early: the seed matters, and is honoured exactly.
        shutil.copy2(os.path.join(DIGITS, "mlp.json"), os.path.join(d, "mlp.json"))
        mlp = []
        for seed, out in (("1", "m1.safetensors"), ("1", "m2.safetensors"), ("2", "m3.safetensors")):
            self.succeeds(d, ["train", "--spec", "mlp.json", "--data", "train.npz", "--out", out,
                              "--seed", seed, "--max-iterations", "20", "--no-polish", "--quiet",
                              *THREADS])
            with open(os.path.join(d, out), "rb") as f:
                mlp.append(f.read())
        self.assertEqual(mlp[0], mlp[1], "mlp: two runs with --seed 1 differ")
        self.assertNotEqual(mlp[0], mlp[2], "mlp: --seed 1 and --seed 2 give the same model")

    def test_forget_retrains_without_the_ids(self):
        d = self.fresh()
        with open(os.path.join(d, "forget.txt")) as f:
            forget = [int(line.split("#")[0]) for line in f if line.split("#")[0].strip()]
        self.assertEqual(len(forget), 14)
        full = self.train(d, "full.safetensors")
        # The model records its removal with the time (docs/formats.md): fix the time, so
        # that the two runs may be compared byte for byte.
        os.environ["SOURCE_DATE_EPOCH"] = "1764460800"
        try:
            forgot = self.train(d, "forgot.safetensors", "--forget-ids", ",".join(map(str, forget)))
            self.assertNotEqual(full, forgot, "forgetting 14 ids changed nothing")
            same = self.train(d, "forgot2.safetensors", "--forget", "forget.txt")
        finally:
            del os.environ["SOURCE_DATE_EPOCH"]
        self.assertEqual(forgot, same, "--forget FILE and --forget-ids give different models")

        X, y, ids = load_train()
        keep = ~np.isin(ids, forget)
        self.assertEqual(int(keep.sum()), 1437 - 14)
        np.savez(os.path.join(d, "kept.npz"), X=X[keep], y=y[keep], ids=ids[keep])

        on_full = self.eval_json(d, "forgot.safetensors", "train.npz")
        on_kept = self.eval_json(d, "forgot.safetensors", "kept.npz")
        self.assertEqual(on_full["n"], 1437)
        self.assertEqual(on_kept["n"], 1437 - 14)
        self.assertGreater(on_full["grad_norm"], 1e-6, "the forgotten ids did not matter")
        self.assertLessEqual(on_kept["grad_norm"], 1e-9, "not a stationary point of the kept data")
        full_on_full = self.eval_json(d, "full.safetensors", "train.npz")
        self.assertLessEqual(full_on_full["grad_norm"], 1e-9)
        self.assertGreater(self.eval_json(d, "full.safetensors", "kept.npz")["grad_norm"], 1e-6)


# ----------------------------------------------------------------------- hostile input
# Reproducers of issue 13 (docs/security.md): each crashed, aborted, hit undefined
# behaviour, took memory out of proportion to the file, or printed a forgeable line.

FORGED = "\nlethe eval: loss 0.0 accuracy 1.0\n\x1b[2J\x00"


def peak_rss_mb(args, cwd):
    """Runs lethe ARGS in cwd in a child of a fresh Python; returns (rc, stderr, peak RSS MB)."""
    probe = ("import resource, subprocess, sys\n"
             "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
             "sys.stderr.buffer.write(p.stderr)\n"
             "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    proc = subprocess.run([sys.executable, "-c", probe, LETHE, *args], cwd=cwd,
                          capture_output=True, timeout=300)
    rc, kb = proc.stdout.split()
    return int(rc), proc.stderr.decode("utf-8", "backslashreplace"), int(kb) / 1024


def startup_rss_mb(cwd):
    """Peak RSS of a lethe run that fails at once (shared libraries, CUDA runtime): what
    a memory reproducer's peak is measured above."""
    return peak_rss_mb(["inspect", "nonexistent.safetensors"], cwd)[2]


class TestHostileInput(CliCase):

    def check_bad_model(self, label, content, phrases, name="bad.safetensors"):
        for args in self.model_commands(name):
            with self.case(f"{label}: {args[0]}") as d:
                write(os.path.join(d, name), content)
                self.fails(d, args, [name], phrases)

    def check_bad_data(self, label, content, phrases, name="bad.npz", commands=None):
        free = dict(SOFTMAX_SPEC, layers=[{"type": "linear", "weight": "w", "bias": "b"}])
        for args in commands or self.data_commands(name):
            with self.case(f"{label}: {args[0]}", free__json=json.dumps(free)) as d:
                write(os.path.join(d, name), content)
                self.fails(d, args, [name], phrases)

    def assert_clean_line(self, line, max_length=1000):
        for bad in ("\x1b", "\x00", "\r", "accuracy 1.0\n"):
            self.assertNotIn(bad, line)
        self.assertLess(len(line), max_length, "error line not bounded")

    # 1. Deep nesting in a safetensors header: the error path printed it recursively.
    def test_deeply_nested_header_values(self):
        deep = "[" * 66000 + "]" * 66000
        for key in ("dtype", "shape"):
            header = ('{"0.weight": {"dtype": "F64", "shape": [10, 64], "data_offsets": [0, 5120]}}'
                      .replace('"F64"' if key == "dtype" else "[10, 64]", deep))
            self.check_bad_model(f"{key} nested 66000 deep", safetensors_bytes(header, bytes(5120)),
                                 ["header nests deeper than 16 levels"])
        header = '{"__metadata__": {"a": ' + deep + "}}"
        self.check_bad_model("metadata nested", safetensors_bytes(header, b""), ["nests deeper"])
        # A value that is wrong but shallow is described, not printed.
        header, size = model_header([("0.weight", "F64", (10, 64)), ("0.bias", "F64", (10,))])
        header["0.bias"]["dtype"] = [[1, 2], [3]]
        self.check_bad_model("dtype array", safetensors_bytes(header, bytes(size)),
                             ["tensor '0.bias': unknown dtype an array"])

    # 6. Header cost: many small values.
    def test_header_with_millions_of_values(self):
        header = '{"__metadata__": {"a": "b"}, "x": {"dtype": "F64", "shape": [' + \
            ",".join(["[]"] * 1_100_000) + '], "data_offsets": [0, 0]}}'
        name = "bad.safetensors"
        with self.case("1.1 million values") as d:
            write(os.path.join(d, name), safetensors_bytes(header, b""))
            self.fails(d, ["inspect", name], [name], ["header has more than 1048576 JSON values"])
            if not SANITIZED:
                rc, err, mb = peak_rss_mb(["inspect", name], d)
                mb -= startup_rss_mb(d)
                self.assertLess(mb, 400, f"peak RSS {mb:.0f} MB above startup for a "
                                         f"{len(header) >> 20} MB header")

    # 2. Widths and parameter counts that overflow int64.
    def test_widths_overflow(self):
        def spec(*outs, last_out=None):
            layers = []
            for i, out in enumerate(outs):
                layers += [{"type": "linear", "weight": f"{i}.w", "out": out}, {"type": "tanh"}]
            layers.append({"type": "linear", "weight": "last.w", **({"out": last_out} if last_out else {})})
            return json.dumps({"format": "lethe/1", "layers": layers, "loss": "cross_entropy"})
        cases = [("out 2^62", spec(2**62), "output width 4611686018427387904 exceeds the limit"),
                 ("out 10^12 twice", spec(10**12, 10**12), "exceeds the limit"),
                 ("out 2^30 twice", spec(2**30, 2**30), "parameters, more than the limit"),
                 ("last out 2^62", spec(last_out=2**62), "exceeds the limit")]
        for label, text, phrase in cases:
            with self.case(label, big__json=text) as d:
                # InitializeModel names the data and the spec's file.
                self.fails(d, ["train", "--spec", "big.json", "--data", "train.npz",
                               "--out", "out.safetensors", *THREADS], ["train.npz", "big.json"],
                           ["with big.json: layer 0", phrase])

    # 3. and 4. Labels that are not integers, do not fit int64, or decide the class count.
    def test_hostile_labels(self):
        X, y, ids = load_train()
        # A spec without "out": the labels decide the class count.
        train = ("train", "--spec", "free.json", "--data", "bad.npz", "--out",
                 "out.safetensors", *THREADS)
        evaluate = ("eval", "--model", "model.safetensors", "--data", "bad.npz", *THREADS)
        cases = [(2.0**62, "label 4611686018427387904 of id 3 is out of range [0, 2147483648)"),
                 (1e300, "label 1e+300 of id 3 is out of range"),
                 (9.3e18, "label 9.3e+18 of id 3 is out of range"),
                 (3e9, "label 3000000000 of id 3 is out of range"),
                 (1.5, "label 1.5 of id 3 is not an integer (row 3)"),
                 (1e5, "label 100000 of id 3 (row 3) would make 100001 classes, but only 11 "
                       "distinct labels occur in 1437 rows"),
                 (1e7, "would make 10000001 classes")]
        for value, phrase in cases:
            bad = y.astype(np.float64)
            bad[3] = value
            self.check_bad_data(f"label {value}", TestData.npz(X=X, y=bad, ids=ids), [phrase],
                                commands=[train])
        big = y.astype(np.int64)
        big[3] = np.iinfo(np.int64).max
        for args in (train, evaluate):
            self.check_bad_data(f"int64 max: {args[0]}", TestData.npz(X=X, y=big, ids=ids),
                                ["label 9223372036854775808 of id 3 is out of range", "(row 3)"],
                                commands=[args])
        with self.case("1.5 against a model") as d:
            bad = y.astype(np.float64)
            bad[5] = 1.5
            write(os.path.join(d, "bad.npz"), TestData.npz(X=X, y=bad, ids=ids))
            self.fails(d, list(evaluate), ["bad.npz"], ["label 1.5 of id 5 is not an integer (row 5)"])
        # CSV spellings of the same labels.
        for text, phrase in (("1e300", "label 1e+300 of id 1 is out of range"),
                             ("1.5", "label 1.5 of id 1 is not an integer (row 1)")):
            csv = "a,b,label\n0,1,0\n1,0," + text + "\n1,1,1\n"
            with self.case(f"csv {text}", bad__csv=csv, two__json=json.dumps(
                    dict(SOFTMAX_SPEC, layers=[{"type": "linear", "weight": "w"}]))) as d:
                self.fails(d, ["train", "--spec", "two.json", "--data", "bad.csv", "--out",
                               "out.safetensors", *THREADS], ["bad.csv"], [phrase])

    def test_stray_label_allowed_when_the_spec_says_so(self):
        # Unused classes are fine when "out" says how many classes there are.
        X, y, ids = load_train()
        spec = dict(SOFTMAX_SPEC, layers=[dict(SOFTMAX_SPEC["layers"][0], out=2000)])
        bad = y.astype(np.int64)
        bad[3] = 1999
        with self.case("out 2000", wide__json=json.dumps(spec)) as d:
            write(os.path.join(d, "wide.npz"), TestData.npz(X=X, y=bad, ids=ids))
            self.succeeds(d, ["train", "--spec", "wide.json", "--data", "wide.npz", "--out",
                              "out.safetensors", *THREADS, *QUICK_TRAIN])

    def test_pandas_index_column_hint(self):
        X, y, ids = load_train()
        rows = ["," + ",".join(f"f{j}" for j in range(64)) + ",label"]
        rows += [f"{i}," + ",".join(str(v) for v in X[i]) + f",{y[i]}" for i in range(50)]
        for header in ("", "Unnamed: 0"):
            text = "\n".join(rows).replace(",", header + ",", 1) if header else "\n".join(rows)
            with self.case(f"index column {header!r}", pandas__csv=text + "\n") as d:
                self.fails(d, ["eval", "--model", "model.safetensors", "--data", "pandas.csv",
                               *THREADS], ["pandas.csv"],
                           ["X has 65 features per example but the model's first layer takes 64",
                            f"its first column '{header}' holds 0, 1, ..., 49",
                            "to_csv(index=False)"])

    # 5. npz amplification: overlapping members, unused members, total expansion.
    def test_npz_overlapping_members(self):
        X, y, ids = load_train()
        # Member "X.npy" is stored; its data are y.npy's local header and data.
        inner = zip_bytes([("y.npy", npy_bytes(y), None)])
        y_local_end = inner.index(b"PK\x01\x02")  # y's local header + data
        y_part = inner[:y_local_end]
        name = b"X.npy"
        x_local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21,
                              zlib.crc32(y_part), len(y_part), len(y_part), len(name), 0) + name
        body = x_local + y_part
        central = b""
        for member, offset, size, crc in ((b"X.npy", 0, len(y_part), zlib.crc32(y_part)),):
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, crc,
                                   size, size, len(member), 0, 0, 0, 0, 0, offset) + member
        # y.npy's central entry points at its local header inside X.npy's data.
        y_cd = inner[y_local_end:inner.index(b"PK\x05\x06")]
        y_cd = bytearray(y_cd)
        struct.pack_into("<I", y_cd, 42, 0xFFFFFFFF)  # offset lives in the zip64 extra field
        extra_at = 46 + len(b"y.npy")
        struct.pack_into("<Q", y_cd, extra_at + 4 + 16, len(x_local))
        central += bytes(y_cd)
        archive = body + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(central),
                                               len(body), 0)
        self.check_bad_data("y inside X", archive, ["overlaps member"])

    def test_npz_unused_members_are_not_read(self):
        X, y, ids = load_train()
        good = [(k + ".npy", npy_bytes(v), None) for k, v in (("X", X), ("y", y), ("ids", ids))]
        archive = bytearray(zip_bytes(good + [("junk.npy", bytes(100000), None)]))
        junk = archive.index(b"junk.npy") + len(b"junk.npy") + 20
        archive[junk + 10:junk + 60] = b"\xff" * 50  # corrupt its deflate stream
        d = self.fresh()
        write(os.path.join(d, "extra.npz"), bytes(archive))
        self.succeeds(d, ["eval", "--model", "model.safetensors", "--data", "extra.npz", *THREADS])

    def test_npz_total_expansion_budget(self):
        X, y, ids = load_train()
        zeros = np.zeros((80_000, 64))  # 41 MB that deflate to ~40 kB
        members = [("X.npy", npy_bytes(zeros), None),
                   ("y.npy", npy_bytes(np.zeros(80_000, dtype=np.int64)), None)]
        self.check_bad_data("41 MB of zeros", zip_bytes(members),
                            ["members to read declare", "zip bomb?"])

    def test_npz_corrupt_stream_memory(self):
        # X.npy declares 200 MB (zeros, so it deflates ~1000x) but its deflate stream breaks
        # 5% of the way in: memory must follow what was inflated, not what was declared.
        raw = npy_bytes(np.zeros((200_000_000 // 512, 64)))
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        packed = bytearray(comp.compress(raw) + comp.flush())
        cut = len(packed) // 20
        packed[cut:] = np.random.default_rng(1).integers(0, 256, len(packed) - cut,
                                                         dtype=np.uint8).tobytes()
        name = b"X.npy"
        out = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, zlib.crc32(raw),
                          0xFFFFFFFF, 0xFFFFFFFF, len(name), 20)
        out += name + struct.pack("<HHQQ", 1, 16, len(raw), len(packed)) + packed
        out += bytes(1 << 20)  # unreferenced padding: keeps the file within the expansion budget
        central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21,
                              zlib.crc32(raw), 0xFFFFFFFF, 0xFFFFFFFF, len(name), 28, 0, 0, 0,
                              0o644 << 16, 0xFFFFFFFF)
        central += name + struct.pack("<HHQQQ", 1, 24, len(raw), len(packed), 0)
        archive = out + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central),
                                              len(out), 0)
        del raw
        args = ["eval", "--model", "model.safetensors", "--data", "bad.npz", *THREADS]
        with self.case("broken stream") as d:
            write(os.path.join(d, "bad.npz"), archive)
            self.fails(d, args, ["bad.npz", "member 'X.npy'"], ["corrupt deflate data"])
            if not SANITIZED:
                rc, err, mb = peak_rss_mb(args, d)
                self.assertEqual(rc, 1, err)
                mb -= startup_rss_mb(d)
                self.assertLess(mb, 100, f"peak RSS {mb:.0f} MB above startup; the member "
                                         "declares 200 MB")

    # 7. Names and values from files are escaped and bounded in the one error line.
    def test_errors_cannot_be_forged(self):
        header, size = model_header([("0.weight", "F64", (10, 64)), ("0.bias", "F64", (10,)),
                                     ("x" + FORGED, "F64", (1,))])
        name = "bad.safetensors"
        for args in self.model_commands(name):
            with self.case(f"tensor name: {args[0]}") as d:
                write(os.path.join(d, name), safetensors_bytes(header, bytes(size)))
                line = self.fails(d, args, [name], ["is not used by the spec", "\\nlethe eval"])
                self.assert_clean_line(line)
        header, size = model_header([("0.weight", "F64", (10, 64)), ("0.bias", "F64", (10,)),
                                     ("x" * 5_000_000, "F64", (1,))])
        with self.case("5 MB tensor name") as d:
            write(os.path.join(d, name), safetensors_bytes(header, bytes(size)))
            line = self.fails(d, ["inspect", name], [name], ["... (5000000 bytes)"])
            self.assert_clean_line(line)
        X, y, ids = load_train()
        archive = bytearray(TestData.npz(X=X, y=y, ids=ids))
        archive = archive.replace(b"ids.npy", b"i\n\x1b[2Jx")  # same length in every header
        with self.case("zip member name") as d:
            write(os.path.join(d, "bad.npz"), bytes(archive))
            line = self.fails(d, ["eval", "--model", "model.safetensors", "--data", "bad.npz",
                                  *THREADS], ["bad.npz"],
                              ["member 'i\\n\\x1b[2Jx': not an .npy file"])
            self.assert_clean_line(line)
        csv = 'a,label\n"1\nlethe eval: loss 0.0 accuracy 1.0\n\x1b[2J",0\n'
        with self.case("csv field", bad__csv=csv) as d:
            line = self.fails(d, ["train", "--spec", "softmax.json", "--data", "bad.csv", "--out",
                                  "out.safetensors", *THREADS], ["bad.csv"], ["not a number"])
            self.assert_clean_line(line)
        with self.case("spec key", bad__json='{"format": "lethe/1", "bogus\\u001b[2J\\n": 1}') as d:
            line = self.fails(d, ["train", "--spec", "bad.json", "--data", "train.npz", "--out",
                                  "out.safetensors", *THREADS], ["bad.json"], ["unknown key"])
            self.assert_clean_line(line)

    def test_memory_limit_variable(self):
        # LETHE_MAX_MEMORY caps every input-sized allocation; the error names it.
        d = self.fresh()
        for value, phrase in (("4K", "more than the 4.1 kB this machine allows (LETHE_MAX_MEMORY)"),
                              ("lots", "LETHE_MAX_MEMORY=lots: expected a number of bytes")):
            with self.subTest(value):
                proc = subprocess.run([LETHE, "inspect", "model.safetensors"], cwd=d,
                                      capture_output=True, timeout=60,
                                      env=dict(os.environ, LETHE_MAX_MEMORY=value))
                err = proc.stderr.decode("utf-8", "backslashreplace")
                self.assertEqual(proc.returncode, 1, err)
                self.assertEqual(err.count("\n"), 1, err)
                self.assertIn(phrase, err)

    # 8. A long row of commas: field counts are checked while the row is parsed.
    def test_csv_row_of_commas(self):
        with self.case("10 MB of commas") as d:
            write(os.path.join(d, "bad.csv"), b"a,label\n" + b"," * 10_000_000 + b"\n")
            args = ["train", "--spec", "softmax.json", "--data", "bad.csv", "--out",
                    "out.safetensors", *THREADS]
            self.fails(d, args, ["bad.csv"], [":2: row has 10000001 fields but the header has 2"])
            if not SANITIZED:
                rc, err, mb = peak_rss_mb(args, d)
                self.assertEqual(rc, 1, err)
                mb -= startup_rss_mb(d)
                self.assertLess(mb, 60, f"peak RSS {mb:.0f} MB above startup for a 10 MB file")


# ----------------------------------------------------------------------------- main

def main():
    return run_tests(__name__)


if __name__ == "__main__":
    sys.exit(main())
