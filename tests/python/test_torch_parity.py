#!/usr/bin/env python3
"""PyTorch parity tests for lethe: the exporter, `lethe eval` and `lethe train`.

    /usr/bin/python3 tests/python/test_torch_parity.py --lethe PATH/TO/lethe [unittest args]

Plain unittest (no pytest). Tests that need the lethe binary are skipped, with a
message, when --lethe is missing or does not name an executable file; the exporter tests
always run. The last line printed is "N passed, N failed, N skipped"; the exit code is 0
iff nothing failed.

The reference values are computed by torch autograd in float64 on the same files lethe
reads, so the tolerances below measure lethe's arithmetic, not data conversion.
"""

import contextlib
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import types
import unittest

from lethe_test_main import run_tests

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")
EXPORTER = os.path.join(ROOT, "tools", "export_torch.py")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import export_torch  # noqa: E402
from export_torch import ExportError, export_dataset, export_model, load_model  # noqa: E402

LETHE = None  # set from --lethe in main()

ACTIVATIONS = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU, "softplus": nn.Softplus, "identity": nn.Identity,
}


# ------------------------------------------------------------------------------ helpers

def read_safetensors_raw(path):
    """A minimal safetensors reader, independent of tools/export_torch.py.

    Returns (header_len, {name: (dtype, shape, raw bytes)} in offset order, metadata)
    and asserts the format rules: header within the file and JSON, every entry's byte
    count matching shape × dtype size, tensors tiling the data buffer exactly.
    """
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 + n <= len(raw), "header length beyond end of file"
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    sizes = {"F64": 8, "F32": 4}
    entries = sorted((tuple(v["data_offsets"]), k, v) for k, v in header.items())
    cursor = 0
    tensors = {}
    for (begin, end), name, v in entries:
        assert begin == cursor, f"{name}: hole or overlap at {cursor}"
        assert end - begin == math.prod(v["shape"]) * sizes[v["dtype"]], f"{name}: size mismatch"
        tensors[name] = (v["dtype"], list(v["shape"]), data[begin:end])
        cursor = end
    assert cursor == len(data), "bytes after the last tensor"
    return n, tensors, metadata


def require_lethe():
    if not LETHE or not (os.path.isfile(LETHE) and os.access(LETHE, os.X_OK)):
        raise unittest.SkipTest(f"lethe binary not found (--lethe {LETHE!r}); build tools/lethe first")


def run_lethe(*args, timeout=600):
    proc = subprocess.run([LETHE, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout


def lethe_eval(model_path, data_path):
    out = run_lethe("eval", "--model", model_path, "--data", data_path, "--json")
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        # Tolerate log lines before the JSON object; the object itself is the contract.
        start = out.find("{")
        if start < 0:
            raise AssertionError(f"lethe eval printed no JSON object:\n{out}") from None
        return json.JSONDecoder().raw_decode(out[start:])[0]


def load_npz(path):
    with np.load(path) as d:
        return torch.from_numpy(d["X"]).to(torch.float64), torch.from_numpy(d["y"])


def forward_exact(model, X):
    """model(X), but with the exact softplus log(1 + eˣ) lethe uses instead of torch's
    thresholded one (which returns x itself for x > 20)."""
    h = X.reshape(X.shape[0], -1)
    for m in model:
        h = torch.logaddexp(h, torch.zeros((), dtype=h.dtype)) if isinstance(m, nn.Softplus) else m(h)
    return h


def mean_loss(f, y, loss):
    """Mean per-example loss with lethe's conventions (see docs/formats.md)."""
    if loss == "cross_entropy":
        return nn.functional.cross_entropy(f, y)
    if loss == "logistic":
        return nn.functional.binary_cross_entropy_with_logits(f[:, 0], y.to(f.dtype))
    if loss == "mse":
        return 0.5 * ((f - y.reshape(f.shape)) ** 2).sum(dim=1).mean()
    raise ValueError(loss)


def accuracy(f, y, loss):
    if loss == "cross_entropy":
        correct = int((f.argmax(dim=1) == y).sum())
    elif loss == "logistic":
        correct = int(((f[:, 0] > 0).long() == y).sum())
    else:
        return None
    return correct / len(y)


def objective(model, X, y, loss, l2):
    """(mean loss, objective) as autograd-tracked scalars."""
    data_loss = mean_loss(forward_exact(model, X), y, loss)
    penalty = sum((p ** 2).sum() for p in model.parameters())
    return data_loss, data_loss + 0.5 * l2 * penalty


def train_adam(model, X, y, loss, l2, steps, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        _, obj = objective(model, X, y, loss, l2)
        obj.backward()
        opt.step()
    return model


def spec_order_vector(model, spec):
    """θ in lethe's parameter order: per linear layer, weight row-major then bias."""
    parts = []
    for layer, module in zip(spec["layers"], model):
        if layer["type"] == "linear":
            parts.append(module.weight.detach().reshape(-1))
            if module.bias is not None:
                parts.append(module.bias.detach().reshape(-1))
    return torch.cat(parts)


def rel(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a)


# -------------------------------------------------------------------- exporter tests

def make_model(act, bias, dtype, flatten):
    torch.manual_seed(7)
    layers = [nn.Flatten()] if flatten else []
    layers += [nn.Linear(5, 4, bias=bias), ACTIVATIONS[act](), nn.Linear(4, 3, bias=True)]
    return nn.Sequential(*layers).to(dtype)


class TestExporterRoundtrip(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def check_roundtrip(self, act, bias, dtype):
        flatten = act == "relu"  # a leading Flatten is accepted and dropped
        model = make_model(act, bias, dtype, flatten)
        out = self.path("m.safetensors")
        spec = export_model(model, out, loss="cross_entropy", l2=0.25)

        off = 1 if flatten else 0
        first = {"type": "linear", "weight": f"{off}.weight", "out": 4}
        if bias:
            first["bias"] = f"{off}.bias"
        expected = {"format": "lethe/1",
                    "layers": [first, {"type": act},
                               {"type": "linear", "weight": f"{off + 2}.weight",
                                "bias": f"{off + 2}.bias", "out": 3}],
                    "loss": "cross_entropy", "l2": 0.25}
        self.assertEqual(spec, expected)

        n, tensors, metadata = read_safetensors_raw(out)
        self.assertEqual(n % 8, 0, "header must be padded to a multiple of 8")
        self.assertEqual(json.loads(metadata["lethe"]), expected)
        state = model.state_dict()
        self.assertEqual(list(tensors), list(state), "tensors must be stored in parameter order")
        st_dtype = {torch.float64: "F64", torch.float32: "F32"}[dtype]
        for name, (st, shape, blob) in tensors.items():
            self.assertEqual(st, st_dtype, name)
            self.assertEqual(shape, list(state[name].shape), name)
            want = state[name].numpy()
            self.assertEqual(blob, want.astype(want.dtype.newbyteorder("<")).tobytes(), name)

        # load_model numbers modules by spec layer, so names match unless a Flatten
        # was dropped; compare in parameter order.
        back = load_model(out)
        loaded = back.state_dict()
        if not flatten:
            self.assertEqual(list(loaded), list(state))
        self.assertEqual(len(loaded), len(state))
        for t, (name, want) in zip(loaded.values(), state.items()):
            self.assertEqual(t.dtype, dtype)
            self.assertTrue(torch.equal(t, want), name)
        x = torch.randn(6, 5, dtype=dtype)
        self.assertTrue(torch.equal(back(x), model(x)))

    def test_refusals(self):
        bad = {
            "gelu tanh": nn.Sequential(nn.Linear(3, 2), nn.GELU(approximate="tanh")),
            "softplus beta": nn.Sequential(nn.Linear(3, 2), nn.Softplus(beta=2)),
            # (dropout, normalisation, conv2d, pooling, nested Sequentials: see
            # test_export_layers.py, which covers every layer type and its refusals)
            "dropout2d": nn.Sequential(nn.Linear(3, 2), nn.Dropout2d()),
            "groupnorm": nn.Sequential(nn.Linear(3, 2), nn.GroupNorm(1, 2)),
            "conv1d": nn.Sequential(nn.Conv1d(1, 1, 3)),
            "no parameters": nn.Sequential(nn.ReLU()),
            "float16": nn.Sequential(nn.Linear(3, 2)).half(),
        }
        for what, model in bad.items():
            with self.assertRaises(ExportError, msg=what):
                export_model(model, self.path("bad.safetensors"), loss="mse")
        with self.assertRaises(ExportError):
            export_model(nn.Linear(3, 2), self.path("bad.safetensors"), loss="mse")
        with self.assertRaises(ExportError):
            export_model(nn.Sequential(nn.Linear(3, 2)), self.path("bad.safetensors"), loss="hinge")
        with self.assertRaises(ExportError):
            export_model(nn.Sequential(nn.Linear(3, 2)), self.path("bad.safetensors"), loss="mse", l2=-1)

    def test_dtype_conversion(self):
        model = make_model("tanh", True, torch.float64, False)
        export_model(model, self.path("m32.safetensors"), loss="mse", dtype="f32")
        _, tensors, _ = read_safetensors_raw(self.path("m32.safetensors"))
        self.assertEqual({st for st, _, _ in tensors.values()}, {"F32"})
        back = load_model(self.path("m32.safetensors"))
        self.assertEqual(back[0].weight.dtype, torch.float32)
        self.assertTrue(torch.equal(back[0].weight, model[0].weight.float()))

    def test_dataset(self):
        X = np.arange(12, dtype=np.int32).reshape(4, 3)
        export_dataset(self.path("a.npz"), X, np.array([0, 1, 1, 0], dtype=np.int32), ids=[5, 6, 7, 8])
        with np.load(self.path("a.npz")) as d:
            self.assertEqual(d["X"].dtype, np.float64)
            self.assertEqual(d["y"].dtype, np.int64)
            self.assertEqual(d["ids"].dtype, np.int64)
            self.assertTrue(np.array_equal(d["X"], X))
        export_dataset(self.path("b.npz"), torch.zeros(4, 2, 2, dtype=torch.float32),
                       torch.ones(4, 2, dtype=torch.float64))
        with np.load(self.path("b.npz")) as d:
            self.assertEqual(d["X"].dtype, np.float32)
            self.assertEqual(d["y"].shape, (4, 2))
            self.assertNotIn("ids", d)
        # Byte-for-byte reproducible (fixed zip timestamps).
        export_dataset(self.path("c.npz"), X, np.array([0, 1, 1, 0]), ids=[5, 6, 7, 8])
        with open(self.path("a.npz"), "rb") as a, open(self.path("c.npz"), "rb") as c:
            self.assertEqual(a.read(), c.read())
        for args in [(X, [0, 1, 2]), (X, [0, 1, 1, 0], [1, 1, 2, 3]), (X[0], [0]),
                     (np.full((4, 3), np.nan), [0, 1, 1, 0])]:
            with self.assertRaises(ExportError):
                export_dataset(self.path("bad.npz"), *args)

    def test_cli(self):
        proc = subprocess.run([sys.executable, EXPORTER, "--help"], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        model = make_model("sigmoid", True, torch.float64, False)
        torch.save(model, self.path("m.pt"))
        proc = subprocess.run([sys.executable, EXPORTER, "model", self.path("m.pt"),
                               self.path("m.safetensors"), "--loss", "logistic", "--l2", "0.5"],
                              capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        back, spec = load_model(self.path("m.safetensors"), return_spec=True)
        self.assertEqual((spec["loss"], spec["l2"]), ("logistic", 0.5))
        self.assertTrue(torch.equal(back[2].weight, model[2].weight))
        proc = subprocess.run([sys.executable, EXPORTER, "inspect", self.path("m.safetensors")],
                              capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("2.weight", proc.stdout)


for _act in ACTIVATIONS:
    for _bias in (True, False):
        for _dtype, _dn in ((torch.float32, "f32"), (torch.float64, "f64")):
            def _test(self, act=_act, bias=_bias, dtype=_dtype):
                self.check_roundtrip(act, bias, dtype)
            setattr(TestExporterRoundtrip,
                    f"test_roundtrip_{_act}_{'bias' if _bias else 'nobias'}_{_dn}", _test)


# ------------------------------------------------------------------ eval parity tests

def synthetic_regression(k):
    """A smooth nonlinear target on 5 features, k outputs ([n] when k is None)."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(300, 5, generator=g, dtype=torch.float64)
    Y = torch.stack([torch.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2],
                     torch.tanh(X[:, 3] - X[:, 4]) + 0.1 * X[:, 0] ** 2], dim=1)
    Y = Y + 0.05 * torch.randn(Y.shape, generator=g, dtype=torch.float64)
    return X, (Y[:, 0] if k is None else Y[:, :k])


# name: (data, loss, l2, hidden, activation, first-layer bias, Adam steps, lr)
EVAL_CASES = {}
for _act in ACTIVATIONS:
    EVAL_CASES[f"digits_ce_{_act}"] = ("digits", "cross_entropy", 1e-3, 16, _act, True, 300, 1e-2)
EVAL_CASES["digits_ce_relu_nobias"] = ("digits", "cross_entropy", 1e-3, 16, "relu", False, 300, 1e-2)
EVAL_CASES["digits_ce_softmax"] = ("digits", "cross_entropy", 1e-3, None, None, True, 300, 1e-2)
EVAL_CASES["cancer_logistic_linear"] = ("breast_cancer", "logistic", 1e-2, None, None, True, 300, 1e-2)
EVAL_CASES["cancer_logistic_tanh"] = ("breast_cancer", "logistic", 1e-2, 8, "tanh", True, 300, 1e-2)
EVAL_CASES["cancer_logistic_sigmoid_l2zero"] = ("breast_cancer", "logistic", 0.0, 8, "sigmoid", True, 300, 1e-2)
EVAL_CASES["regress_mse_gelu_k2"] = ("regress2", "mse", 1e-3, 16, "gelu", True, 400, 1e-2)
EVAL_CASES["regress_mse_softplus_k1"] = ("regress1", "mse", 1e-3, 16, "softplus", True, 400, 1e-2)
EVAL_CASES["regress_mse_identity_k2"] = ("regress2", "mse", 0.0, 16, "identity", False, 400, 1e-2)


class TestEvalParity(unittest.TestCase):
    def setUp(self):
        require_lethe()
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def dataset(self, name):
        """(X, y, npz path) of a data set lethe and torch both read."""
        if name in ("digits", "breast_cancer"):
            path = os.path.join(EXAMPLES, name, "train.npz")
            X, y = load_npz(path)
            return X, y, path
        X, y = synthetic_regression(2 if name == "regress2" else None)
        path = os.path.join(self.tmp.name, f"{name}.npz")
        export_dataset(path, X, y)
        return X, y, path

    def check_eval(self, data, loss, l2, hidden, act, bias, steps, lr):
        X, y, data_path = self.dataset(data)
        n_out = {"cross_entropy": 10, "logistic": 1}.get(loss, 1 if y.ndim == 1 else y.shape[1])
        torch.manual_seed(11)
        if hidden is None:
            model = nn.Sequential(nn.Linear(X.shape[1], n_out, bias=bias))
        else:
            model = nn.Sequential(nn.Linear(X.shape[1], hidden, bias=bias), ACTIVATIONS[act](),
                                  nn.Linear(hidden, n_out))
        model = train_adam(model.double(), X, y, loss, l2, steps, lr)

        model.zero_grad()
        data_loss, obj = objective(model, X, y, loss, l2)
        obj.backward()
        grad_norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
        with torch.no_grad():
            acc = accuracy(forward_exact(model, X), y, loss)

        model_path = os.path.join(self.tmp.name, "model.safetensors")
        export_model(model, model_path, loss=loss, l2=l2)
        got = lethe_eval(model_path, data_path)

        ctx = f"lethe={got} torch=loss {float(data_loss)!r} objective {float(obj)!r} " \
              f"accuracy {acc!r} grad_norm {grad_norm!r}"
        self.assertEqual(got["n"], len(y), ctx)
        self.assertLessEqual(rel(got["loss"], float(data_loss)), 1e-10, ctx)
        self.assertLessEqual(rel(got["objective"], float(obj)), 1e-10, ctx)
        # ‖∇L‖ to 1e-8 relative; near a stationary point the gradient itself is rounding
        # noise (~1e-16 per term), so allow an absolute 1e-12 as well.
        self.assertLessEqual(abs(got["grad_norm"] - grad_norm), 1e-8 * grad_norm + 1e-12, ctx)
        if acc is not None:
            self.assertEqual(got["accuracy"], acc, ctx)

    def test_inspect(self):
        model = nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 2)).double()
        path = os.path.join(self.tmp.name, "m.safetensors")
        export_model(model, path, loss="cross_entropy", l2=1e-3)
        run_lethe("inspect", path)


for _name, _case in EVAL_CASES.items():
    def _test(self, case=_case):
        self.check_eval(*case)
    setattr(TestEvalParity, f"test_eval_{_name}", _test)


# ----------------------------------------------------------------- train parity test

def softmax_reference(X, y, l2, n_out):
    """The minimiser of the convex softmax-regression objective in f64: torch L-BFGS
    (strong Wolfe) from zero, then Newton steps.

    L-BFGS alone stalls near max|∇| ≈ 5e-10 on digits: its line search needs objective
    decreases (≈ ‖∇‖²/λ_max) that fall below the f64 resolution of the objective. With
    λ_min = l2 = 1e-3 that leaves up to ‖∇‖/λ_min ≈ 1e-6 relative error in θ, the whole
    tolerance, so the reference is polished with Newton steps, which need no line search
    and converge quadratically down to the rounding level of the gradient itself.
    """
    n_in = X.shape[1]
    model = nn.Sequential(nn.Linear(n_in, n_out)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=2000, history_size=20,
                            tolerance_grad=1e-12, tolerance_change=1e-30,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        _, obj = objective(model, X, y, "cross_entropy", l2)
        obj.backward()
        return obj

    opt.step(closure)

    def flat_objective(v):  # v = θ in lethe's order: W row-major, then b
        W, b = v[:n_out * n_in].reshape(n_out, n_in), v[n_out * n_in:]
        return nn.functional.cross_entropy(X @ W.T + b, y) + 0.5 * l2 * (v ** 2).sum()

    theta = torch.cat([model[0].weight.detach().reshape(-1), model[0].bias.detach()])
    for _ in range(2):
        g = torch.autograd.functional.jacobian(flat_objective, theta)
        H = torch.autograd.functional.hessian(flat_objective, theta, vectorize=True)
        theta = theta - torch.linalg.solve(H, g)
    gmax = float(torch.autograd.functional.jacobian(flat_objective, theta).abs().max())
    with torch.no_grad():
        model[0].weight.copy_(theta[:n_out * n_in].reshape(n_out, n_in))
        model[0].bias.copy_(theta[n_out * n_in:])
    return model, gmax


class TestTrainParity(unittest.TestCase):
    def setUp(self):
        require_lethe()
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_softmax_digits(self):
        spec_path = os.path.join(EXAMPLES, "digits", "softmax.json")
        data_path = os.path.join(EXAMPLES, "digits", "train.npz")
        with open(spec_path) as f:
            spec = json.load(f)
        l2 = spec["l2"]
        X, y = load_npz(data_path)

        out = os.path.join(self.tmp.name, "softmax.safetensors")
        run_lethe("train", "--spec", spec_path, "--data", data_path, "--out", out, "--dtype", "f64")
        lethe_model, lethe_spec = load_model(out, return_spec=True)
        self.assertEqual(lethe_spec["loss"], "cross_entropy")
        self.assertEqual(lethe_spec["l2"], l2)
        self.assertEqual(lethe_model[0].weight.dtype, torch.float64)

        ref, gmax = softmax_reference(X, y, l2, 10)
        self.assertLessEqual(gmax, 1e-12, f"torch reference did not converge: max|grad| {gmax:.2e}")

        theta_lethe = spec_order_vector(lethe_model, lethe_spec)
        theta_torch = spec_order_vector(ref, spec)
        diff = float((theta_lethe - theta_torch).norm() / theta_torch.norm())
        with torch.no_grad():
            obj_torch = float(objective(ref, X, y, "cross_entropy", l2)[1])
            obj_at_lethe = float(objective(lethe_model, X, y, "cross_entropy", l2)[1])
        obj_lethe = lethe_eval(out, data_path)["objective"]
        ctx = f"|dtheta|/|theta|={diff:.3e} objective lethe {obj_lethe!r} torch(theta_lethe) " \
              f"{obj_at_lethe!r} torch(theta_torch) {obj_torch!r} torch max|grad| {gmax:.2e}"
        print(f"\n    {ctx}", end=" ... ", flush=True)  # the margin is worth seeing in CTest logs
        self.assertLessEqual(diff, 1e-6, ctx)
        self.assertLessEqual(rel(obj_lethe, obj_torch), 1e-12, ctx)
        self.assertLessEqual(rel(obj_at_lethe, obj_torch), 1e-12, ctx)


# -------------------------------------------- models trained on another objective

def run_exporter(*args):
    """export_torch.main(args) in this process (importing torch in a subprocess takes
    seconds on a loaded machine): (exit code, stderr). An exception escaping main() fails
    the test, as a traceback would."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = export_torch.main(list(args))
    return code, err.getvalue()


class TestOtherObjectives(unittest.TestCase):
    """A model whose output or objective is not lethe's is refused or exported exactly."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def test_final_normalisation_refused(self):
        out = self.path("m.safetensors")
        refused = [
            (nn.Sequential(nn.Linear(3, 1), nn.Sigmoid()), "logistic", "model[:-1]"),
            (nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Sigmoid()),
             "cross_entropy", "model[:-1]"),
            (nn.Sequential(nn.Linear(3, 4), nn.LogSoftmax(dim=1)), "cross_entropy", "model[:-1]"),
            (nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=1)), "cross_entropy", "model[:-1]"),
            (nn.Sequential(nn.Linear(3, 1), nn.Sigmoid(), nn.Identity()), "logistic",
             "without layer 1"),
        ]
        for model, loss, fix in refused:
            with self.assertRaises(ExportError, msg=f"{model} {loss}") as cm:
                export_model(model, out, loss=loss)
            self.assertIn(fix, str(cm.exception))
            self.assertIn("logits", str(cm.exception))
            self.assertFalse(os.path.exists(out))
        # mse applies nothing to the output: a final sigmoid is part of the model.
        export_model(nn.Sequential(nn.Linear(3, 1), nn.Sigmoid()), out, loss="mse")
        # A sigmoid that really sits under the loss's own can be exported on request.
        spec = export_model(nn.Sequential(nn.Linear(3, 1), nn.Sigmoid()), out, loss="logistic",
                            allow_output_activation=True)
        self.assertEqual(spec["layers"][-1], {"type": "sigmoid"})

    def test_cli_final_sigmoid_one_line(self):
        torch.save(nn.Sequential(nn.Linear(3, 1), nn.Sigmoid()).double(), self.path("m.pt"))
        code, err = run_exporter("model", self.path("m.pt"), self.path("m.safetensors"),
                                 "--loss", "logistic")
        self.assertEqual(code, 1, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("BCEWithLogitsLoss", err)
        self.assertFalse(os.path.exists(self.path("m.safetensors")))
        code, err = run_exporter("model", self.path("m.pt"), self.path("m.safetensors"),
                                 "--loss", "logistic", "--allow-output-activation")
        self.assertEqual(code, 0, err)

    def test_cli_unloadable_files_one_line(self):
        # torch.save(model) pickles a reference to the class; a class from the training
        # script (its __main__, or a module not importable here) cannot be found on loading.
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 2)

        class MySequential(nn.Sequential):
            pass

        main_module = sys.modules["__main__"]
        script = types.ModuleType("my_training_script")
        sys.modules["my_training_script"] = script
        try:
            for cls, module in ((Net, main_module), (MySequential, script)):
                cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
                setattr(module, cls.__name__, cls)
            torch.save(Net(), self.path("net.pt"))
            torch.save(MySequential(nn.Linear(3, 2)), self.path("seq.pt"))
        finally:
            del sys.modules["my_training_script"]
            delattr(main_module, "Net")
        torch.save({"epoch": 3, "model": nn.Linear(3, 2).state_dict()}, self.path("ckpt.pt"))
        with open(self.path("junk.pt"), "wb") as f:
            f.write(b"not a torch file at all")
        with open(self.path("bad.json"), "w") as f:
            f.write("{oops")
        torch.save(nn.Sequential(nn.Linear(3, 2)).state_dict(), self.path("sd.pt"))
        cases = [
            (["net.pt"], "Net"),
            (["seq.pt"], "my_training_script"),
            (["ckpt.pt"], "checkpoint"),
            (["junk.pt"], "torch.load"),
            (["missing.pt"], "missing.pt"),
            (["sd.pt", "--spec", self.path("bad.json")], "not valid JSON"),
        ]
        for args, phrase in cases:
            code, err = run_exporter("model", self.path(args[0]), self.path("out.safetensors"),
                                     "--loss", "mse", *args[1:])
            ctx = f"{args}: {err}"
            self.assertEqual(code, 1, ctx)
            self.assertEqual(len(err.splitlines()), 1, ctx)
            self.assertTrue(err.startswith("export_torch.py: error: "), ctx)
            self.assertIn(phrase, err, ctx)
            self.assertFalse(os.path.exists(self.path("out.safetensors")), ctx)
        self.assertIn("state_dict", run_exporter("model", self.path("net.pt"), "o", "--loss",
                                                 "mse")[1])

    def test_bce_trained_model_exported_as_logits(self):
        """Sequential(Linear, Sigmoid) trained with BCELoss = model[:-1] under lethe's logistic."""
        require_lethe()
        data_path = os.path.join(EXAMPLES, "breast_cancer", "train.npz")
        X, y = load_npz(data_path)
        torch.manual_seed(5)
        model = nn.Sequential(nn.Linear(X.shape[1], 1), nn.Sigmoid()).double()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(200):
            opt.zero_grad()
            bce = nn.functional.binary_cross_entropy(model(X)[:, 0], y.double())
            bce.backward()
            opt.step()
        with torch.no_grad():
            p = model(X)[:, 0]
            bce = float(nn.functional.binary_cross_entropy(p, y.double()))
            acc = float(((p > 0.5).long() == y).double().mean())
        with self.assertRaises(ExportError):
            export_model(model, self.path("whole.safetensors"), loss="logistic")
        export_model(model[:-1], self.path("logits.safetensors"), loss="logistic")
        got = lethe_eval(self.path("logits.safetensors"), data_path)
        ctx = f"lethe {got} torch BCELoss {bce!r} accuracy {acc!r}"
        self.assertEqual(got["accuracy"], acc, ctx)
        self.assertLessEqual(rel(got["loss"], bce), 1e-9, ctx)
        # What the refusal prevents: under logistic the whole model's output σ(z) > 0 is
        # read as a logit, so every example is predicted 1.
        export_model(model, self.path("whole.safetensors"), loss="logistic",
                     allow_output_activation=True)
        twice = lethe_eval(self.path("whole.safetensors"), data_path)
        self.assertEqual(twice["accuracy"], float(y.double().mean()), f"{twice} {ctx}")
        self.assertGreater(acc, 0.95, ctx)

    def test_mse_loss_weight_decay_is_l2_k_wd_over_2(self):
        """The optimum of nn.MSELoss() + weight_decay wd is lethe's mse optimum at l2 = k·wd/2."""
        require_lethe()
        X, Y = synthetic_regression(2)
        Y = torch.cat([Y, Y[:, :1] ** 2], dim=1)  # k = 3, so that k·wd/2 ≠ wd
        n, k = Y.shape
        wd = 1e-2
        # Closed form: the gradient (2/(nk)) Xaᵀ(Xa Θ − Y) + wd Θ vanishes (Xa = [X, 1]).
        Xa = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], dim=1)
        theta = torch.linalg.solve(Xa.T @ Xa + (n * k * wd / 2) * torch.eye(Xa.shape[1],
                                                                           dtype=X.dtype), Xa.T @ Y)
        model = nn.Sequential(nn.Linear(X.shape[1], k)).double()
        with torch.no_grad():
            model[0].weight.copy_(theta[:-1].T)
            model[0].bias.copy_(theta[-1])
        model.zero_grad()
        mse = nn.MSELoss()(model(X), Y) + 0.5 * wd * sum((q ** 2).sum() for q in model.parameters())
        mse.backward()
        torch_grad = math.sqrt(sum(float((q.grad ** 2).sum()) for q in model.parameters()))
        self.assertLess(torch_grad, 1e-12, "the closed form is not MSELoss's optimum")
        data_path = self.path("regress.npz")
        export_dataset(data_path, X, Y)
        norms = {}
        for name, l2 in (("k_wd_over_2", k * wd / 2), ("wd", wd)):
            export_model(model, self.path(f"{name}.safetensors"), loss="mse", l2=l2)
            norms[name] = lethe_eval(self.path(f"{name}.safetensors"), data_path)["grad_norm"]
        self.assertLess(norms["k_wd_over_2"], 1e-12, norms)
        self.assertGreater(norms["wd"], 1e-4, norms)


# ----------------------------------------------------------------------------- main

def main():
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    return run_tests(__name__)


if __name__ == "__main__":
    sys.exit(main())
