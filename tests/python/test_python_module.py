"""`import lethe` (python/, docs/python.md) against the lethe CLI on the same files.

    PYTHONPATH=build/python LETHE_BIN=build/tools/lethe /usr/bin/python3 -m pytest tests/python/test_python_module.py

pytest (Debian's python3-pytest); ctest runs it so (tests/CMakeLists.txt) and skips it when
the module was not built. Every function's numbers are compared with the CLI's for exact
equality (the module calls the same engine functions with the same options); data from
numpy in every dtype and layout the module takes; lethe.Error; models from torch in memory
against exported files; a patched model evaluated in PyTorch; Ctrl-C and the GIL.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

import lethe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from export_torch import export_model  # noqa: E402

LETHE = os.environ.get("LETHE_BIN", os.path.join(ROOT, "build", "tools", "lethe"))
DIGITS = os.path.join(ROOT, "examples", "digits")
MODEL = os.path.join(DIGITS, "model.safetensors")
TRAIN = os.path.join(DIGITS, "train.npz")
TEST = os.path.join(DIGITS, "test.npz")
SPEC = os.path.join(DIGITS, "softmax.json")


def cli(*args, ok=True):
    proc = subprocess.run([LETHE, *args], capture_output=True, text=True, timeout=600)
    if ok and proc.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
    return proc


def cli_json(*args):
    return json.loads(cli(*args, "--json").stdout)


def forget_txt():
    """examples/digits/forget.txt's ids (one a line, '#' comments)."""
    lines = open(os.path.join(DIGITS, "forget.txt")).read().splitlines()
    return [int(line) for line in lines if line.strip() and not line.startswith("#")]


def arrays(path):
    z = np.load(path)
    return z["X"], z["y"], z["ids"]


@pytest.fixture(scope="module")
def model():
    return lethe.Model(MODEL)


@pytest.fixture(scope="module")
def train():
    return arrays(TRAIN)


@pytest.fixture(scope="module")
def test():
    return arrays(TEST)


# ------------------------------------------------------------- every function = the CLI

def test_evaluate_equals_cli(model, train):
    want = cli_json("eval", "--model", MODEL, "--data", TRAIN)
    assert lethe.evaluate(model, TRAIN) == want
    assert lethe.evaluate(model, train) == want
    want32 = cli_json("eval", "--model", MODEL, "--data", TRAIN, "--dtype", "f32")
    assert lethe.evaluate(model, train, dtype="f32") == want32
    assert want32["objective"] != want["objective"]  # the dtype reached the engine


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_influence_equals_cli(tmp_path, model, train, test, solver):
    out = str(tmp_path / "scores.npy")
    ids = "100003,100015,100200"
    j = cli_json("influence", "--model", MODEL, "--train", TRAIN, "--test", TEST, "--test-ids", ids,
                 "--solver", solver, "--out", out)
    r = lethe.influence(model, train, test, test_ids=[100003, 100015, 100200], solver=solver)
    assert r["scores"].shape == (3, len(train[0]))
    assert np.array_equal(r["scores"], np.load(out))
    assert r["solver"]["iterations"] == j["solver"]["iterations"]
    assert r["solver"].get("relative_residual") == j["solver"].get("relative_residual")
    assert r["grad_norm"] == j["grad_norm"] and r["settings"] == j["settings"]
    assert list(r["test_ids"]) == [100003, 100015, 100200]
    assert np.array_equal(r["train_ids"], train[2])


def test_self_influence_equals_cli(tmp_path, model, train):
    out = str(tmp_path / "self.npy")
    cli("self-influence", "--model", MODEL, "--train", TRAIN, "--out", out)
    r = lethe.self_influence(model, train)
    assert np.array_equal(r["scores"], np.load(out))
    assert (r["scores"] > 0).all()


def test_unlearn_equals_cli(tmp_path, model, train):
    patched_path, report_path = str(tmp_path / "p.safetensors"), str(tmp_path / "r.json")
    forget = forget_txt()
    cli("unlearn", "--model", MODEL, "--train", TRAIN, "--forget-ids", ",".join(map(str, forget)),
        "--steps", "2", "--out", patched_path, "--report", report_path)
    patched, record = lethe.unlearn(model, train, forget, steps=2)
    want = json.load(open(report_path))
    assert np.array_equal(patched.theta, lethe.Model(patched_path).theta)
    for key in ("n", "k", "forget_ids", "method", "solver", "damping", "solve_dtype",
                "input_grad_norm", "kept_grad_norm_before", "kept_grad_norm_after", "delta_norm"):
        assert record[key] == want[key], key
    assert [s["solve"]["iterations"] for s in record["steps"]] == \
        [s["solve"]["iterations"] for s in want["steps"]]
    assert record["input_model"]["sha256"] == want["input_model"]["sha256"]
    assert patched.forgotten_ids == sorted(forget)
    # The patched model is a model like any other: saved, it is the CLI's file's twin.
    again = str(tmp_path / "again.safetensors")
    patched.save(again)
    assert lethe.evaluate(lethe.Model(again), TRAIN) == cli_json("eval", "--model", patched_path,
                                                                 "--data", TRAIN)
    # and later calls leave its forgotten ids out, saying so
    with pytest.warns(lethe.LetheWarning, match="has forgotten 14 id"):
        r = lethe.self_influence(patched, train)
    assert len(r["scores"]) == len(train[0]) - len(forget)


def test_train_equals_cli(tmp_path, train):
    out = str(tmp_path / "m.safetensors")
    j = cli_json("train", "--spec", SPEC, "--data", TRAIN, "--forget-ids", "5,7", "--out", out)
    spec = json.load(open(SPEC))
    m, s = lethe.train(spec, train, forget_ids=[5, 7])
    assert np.array_equal(m.theta, lethe.Model(out).theta)
    for key in ("iterations", "evaluations", "objective", "grad_norm", "converged", "n"):
        assert s[key] == j[key], key
    assert m.forgotten_ids == [5, 7]
    m2, _ = lethe.train(SPEC, TRAIN, forget_ids=[5, 7])  # a spec file and a data file
    assert np.array_equal(m2.theta, m.theta)


def test_compare_equals_cli(train, test):
    retrained = os.path.join(DIGITS, "retrained.safetensors")
    forget = os.path.join(DIGITS, "forget.txt")
    want = cli_json("compare", "--model", MODEL, "--reference", retrained, "--train", TRAIN,
                    "--test", TEST, "--forget", forget)
    ids = forget_txt()
    got = lethe.compare(lethe.Model(MODEL), lethe.Model(retrained), train, test, forget_ids=ids)
    assert got == want


def test_option_defaults_are_the_clis():
    """Every keyword's default is the CLI option's, as `lethe COMMAND --help` prints it."""
    for function, command in [("influence", "influence"), ("self_influence", "self-influence"),
                              ("unlearn", "unlearn"), ("train", "train"), ("evaluate", "eval")]:
        help_text = cli(command, "--help").stdout
        for name, default in lethe.option_defaults(function).items():
            flag = "--" + name.replace("_", "-")
            line = re.search(r"^\s+" + re.escape(flag) + r"( arg \(=([^)]*)\)| arg)?\s", help_text, re.M)
            assert line, (command, flag)
            assert line.group(2) == default, (command, flag, default)


# ------------------------------------------------------------------ dtypes and layouts

def test_zero_copy_and_dtypes(model, train):
    X, y, ids = train
    want = lethe.evaluate(model, TRAIN)
    d = lethe.Data(X, y, ids)
    assert d.zero_copy and d._x_address == X.ctypes.data  # numpy's own memory
    X32 = X.astype(np.float32)
    d32 = lethe.Data(X32, y, ids)
    assert d32.zero_copy and d32._x_address == X32.ctypes.data
    # float32 X from numpy = float32 X from a file, exactly
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lethe_py_{os.getpid()}_x32.npz")
    np.savez(path, X=X32, y=y, ids=ids)
    try:
        assert lethe.evaluate(model, d32) == cli_json("eval", "--model", MODEL, "--data", path)
    finally:
        os.unlink(path)
    # labels of every integer width (and unsigned) read the same
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        assert lethe.evaluate(model, (X, y.astype(dtype), ids)) == want, dtype
    # ids as int32
    assert lethe.evaluate(model, (X, y, ids.astype(np.int32))) == want


def test_non_contiguous_copied_not_misread(model, train):
    X, y, ids = train
    want = lethe.evaluate(model, TRAIN)
    fortran = np.asfortranarray(X)
    d = lethe.Data(fortran, y, ids)
    assert not d.zero_copy
    assert lethe.evaluate(model, d) == want
    wide = np.zeros((X.shape[0], 2 * X.shape[1]))
    wide[:, ::2] = X
    strided = wide[:, ::2]  # every other column: strides of 16 bytes
    assert not strided.flags.c_contiguous
    assert lethe.evaluate(model, (strided, y, ids)) == want
    reversed_rows = X[::-1]
    r = lethe.evaluate(model, (reversed_rows, y[::-1], ids[::-1]))
    assert r["loss"] == pytest.approx(want["loss"], rel=1e-13)
    swapped = X.astype(X.dtype.newbyteorder(">"))  # big-endian
    assert lethe.evaluate(model, (swapped, y, ids)) == want
    # torch tensors (CPU) are read through numpy
    assert lethe.evaluate(model, (torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(ids))) == want


# -------------------------------------------------------------------------- errors

def cli_error(*args):
    proc = cli(*args, ok=False)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    return line.split(": ", 1)[1]  # after "lethe COMMAND: "


def test_errors(model, train, tmp_path):
    X, y, ids = train
    assert issubclass(lethe.Error, ValueError)
    bad = X.copy()
    bad[3, 5] = np.nan
    with pytest.raises(lethe.Error, match=r"^train: X contains NaN or Inf at row 3$"):
        lethe.self_influence(model, (bad, y, ids))
    with pytest.raises(lethe.Error, match="label 10 of id"):
        lethe.evaluate(model, (X, np.where(np.arange(len(y)) == 4, 10, y), ids))
    with pytest.raises(lethe.Error, match="X has 63 features per example but the model's first layer takes 64"):
        lethe.evaluate(model, (X[:, :63], y, ids))
    with pytest.raises(lethe.Error, match="duplicate id"):
        lethe.evaluate(model, (X, y, np.zeros_like(ids)))
    with pytest.raises(lethe.Error, match="float32 or float64"):
        lethe.evaluate(model, (X.astype(np.float16), y, ids))
    with pytest.raises(TypeError, match="unrecognised option|unrecognized option"):
        lethe.influence(model, train, train, no_such_option=1)
    # the same one line as the CLI
    want = cli_error("influence", "--model", MODEL, "--train", TRAIN, "--test", TEST,
                     "--solver", "nope", "--out", str(tmp_path / "s.csv"))
    with pytest.raises(lethe.Error) as e:
        lethe.influence(model, TRAIN, TEST, solver="nope")
    assert str(e.value) == want
    want = cli_error("eval", "--model", str(tmp_path / "missing.safetensors"), "--data", TRAIN)
    with pytest.raises(lethe.Error) as e:
        lethe.Model(str(tmp_path / "missing.safetensors"))
    assert str(e.value) == want
    want = cli_error("unlearn", "--model", MODEL, "--train", TRAIN, "--forget-ids", "123456789",
                     "--out", str(tmp_path / "p.safetensors"))
    with pytest.raises(lethe.Error) as e:
        lethe.unlearn(model, TRAIN, [123456789])
    assert str(e.value) == want.replace("--forget-ids", "forget_ids")


# ------------------------------------------------------------------------------ torch

def torch_mlp(hidden=16):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.Tanh(),
                               torch.nn.Linear(hidden, 10)).double()


def test_from_torch_equals_exported(tmp_path, train):
    module = torch_mlp(4)  # p = 310: the direct solver forms its curvature in p products
    path = str(tmp_path / "mlp.safetensors")
    export_model(module, path, loss="cross_entropy", l2=1e-3)
    in_memory = lethe.Model.from_torch(module, loss="cross_entropy", l2=1e-3)
    exported = lethe.Model(path)
    assert np.array_equal(in_memory.theta, exported.theta)
    assert in_memory.spec == exported.spec
    assert lethe.evaluate(in_memory, train) == lethe.evaluate(exported, train)
    options = dict(curvature="gauss-newton", damping=0.01)  # positive definite at any θ
    r1 = lethe.self_influence(in_memory, train, **options)
    r2 = lethe.self_influence(exported, train, **options)
    assert np.array_equal(r1["scores"], r2["scores"])
    with pytest.raises(lethe.ExportError, match=r"LSTM\) is not supported"):
        lethe.Model.from_torch(torch.nn.Sequential(torch.nn.LSTM(4, 4)), loss="mse")
    with pytest.raises(lethe.Error) as e:  # what the engine refuses, as it would in a file
        lethe.Model._from_arrays(json.dumps({"format": "lethe/1", "layers": [
            {"type": "linear", "weight": "w", "bias": "b", "out": 2}], "loss": "mse"}), [])
    assert str(e.value).startswith("<torch module>") and "\n" not in str(e.value)


def test_patched_model_in_torch(train):
    """Train in lethe, unlearn, copy into a torch module and evaluate there: torch's
    objective (CrossEntropyLoss + l2/2 ‖θ‖²) and accuracy are lethe's."""
    X, y, ids = train
    module = torch_mlp()
    model, _ = lethe.train(lethe.Model.from_torch(module, loss="cross_entropy", l2=1e-2), train,
                           max_iterations=50)
    patched, record = lethe.unlearn(model, train, ids[:20].tolist(), damping=1e-3)
    assert record["delta_norm"] > 0
    keep = ~np.isin(ids, ids[:20])
    want = lethe.evaluate(patched, (X[keep], y[keep], ids[keep]))
    for m in (patched.to_torch(torch_mlp()), patched.to_torch()):
        with torch.no_grad():
            out = m(torch.from_numpy(X[keep]))
            loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y[keep])).item()
            reg = 0.5 * 1e-2 * sum((p ** 2).sum().item() for p in m.parameters())
            accuracy = (out.argmax(1).numpy() == y[keep]).mean()
        assert loss == pytest.approx(want["loss"], rel=1e-12)
        assert loss + reg == pytest.approx(want["objective"], rel=1e-12)
        assert accuracy == want["accuracy"]
    sd = patched.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert sd["0.weight"].dtype == torch.float64
    with pytest.raises(ValueError, match="has shape"):
        patched.to_torch(torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Tanh(),
                                             torch.nn.Linear(8, 10)).double())


# ------------------------------------------------------- progress, Ctrl-C and the GIL

def long_solve(model, train, **kw):
    # self-influence by CG: one solve per training example, minutes of work
    return lethe.self_influence(model, train, solver="cg", **kw)


def test_progress_callback(model, train):
    calls = []
    lethe.self_influence(model, train, progress=lambda *a: calls.append(a))
    assert calls and all(isinstance(p, str) and isinstance(d, int) for p, d, _ in calls)
    assert ("self-influence examples", len(train[0]), len(train[0])) in calls


def test_callback_exception_stops_the_solve(model, train):
    class Stop(Exception):
        pass

    def stop(*_):
        raise Stop()
    start = time.monotonic()
    with pytest.raises(Stop):
        long_solve(model, train, progress=stop)
    assert time.monotonic() - start < 30


def test_ctrl_c_interrupts(model, train):
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        long_solve(model, train)
    assert time.monotonic() - start < 30
    lethe.evaluate(model, train)  # the module still works afterwards


def test_gil_released(model, train):
    ticks = 0
    done = threading.Event()

    def work():
        try:
            lethe.self_influence(model, train)  # the direct solver: about a second
        finally:
            done.set()
    t = threading.Thread(target=work)
    start = time.monotonic()
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    elapsed = time.monotonic() - start
    # With the GIL held for the whole solve this thread would not run at all.
    assert elapsed > 0.2 and ticks > 0.2 * elapsed / 0.001 * 0.2, (ticks, elapsed)
