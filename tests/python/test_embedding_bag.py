#!/usr/bin/env python3
"""embedding_bag through the lethe CLI against PyTorch (nn.EmbeddingBag) in float64.

    /usr/bin/python3 tests/python/test_embedding_bag.py --lethe PATH/TO/lethe [unittest args]

Plain unittest (no pytest). Models are built in PyTorch (nn.EmbeddingBag → nn.Linear) on
integer token-id data with padding rows, all-padding rows and repeated ids, written as
lethe safetensors, and `lethe eval`'s objective and gradient norm are compared with torch
autograd's; `lethe train` must reach a point where torch's gradient vanishes; the data
errors (integer X for a model without an embedding, float X for one with, an id out of
range) are one stderr line naming the data file. Tests skip without --lethe.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

from lethe_test_main import run_tests

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from export_torch import ExportError, export_dataset, write_safetensors  # noqa: E402

LETHE = None  # set from --lethe

NUM, DIM, CLASSES, LENGTH, N = 13, 4, 3, 6, 40
L2 = 1e-2


def run_lethe(*args, expect_ok=True):
    proc = subprocess.run([LETHE, *args],
                          capture_output=True, text=True, timeout=600)
    if expect_ok and proc.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")
    return proc


def eval_json(model, data):
    out = run_lethe("eval", "--model", model, "--data", data, "--json").stdout
    return json.JSONDecoder().raw_decode(out[out.find("{"):])[0]


def token_ids(seed, padding_idx):
    """N × LENGTH ids: row 0 all padding, row 1 one id repeated, the rest random."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, NUM, size=(N, LENGTH))
    pad = padding_idx if padding_idx is not None else 0
    X[0, :] = pad
    X[1, :] = NUM - 1
    X[2, ::2] = pad
    return X.astype(np.int64), rng.integers(0, CLASSES, size=N).astype(np.int64)


def spec(mode, padding_idx):
    bag = {"type": "embedding_bag", "weight": "0.weight", "num_embeddings": NUM, "dim": DIM,
           "mode": mode}
    if padding_idx is not None:
        bag["padding_idx"] = padding_idx
    # "input": [L] — the table's shape does not say how many ids an example has.
    return {"format": "lethe/1", "input": [LENGTH],
            "layers": [bag, {"type": "linear", "weight": "1.weight", "bias": "1.bias",
                             "out": CLASSES}],
            "loss": "cross_entropy", "l2": L2}


def torch_model(mode, padding_idx, seed=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.EmbeddingBag(NUM, DIM, mode=mode, padding_idx=padding_idx),
                         nn.Linear(DIM, CLASSES)).double()


def torch_objective(model, X, y):
    data = nn.functional.cross_entropy(model(torch.from_numpy(X)), torch.from_numpy(y))
    return data + 0.5 * L2 * sum((p ** 2).sum() for p in model.parameters())


def write_model(path, model, s):
    tensors = [(name, t.detach().numpy()) for name, t in model.state_dict().items()]
    write_safetensors(path, tensors, {"lethe": json.dumps(s)})


class EmbeddingBagAgainstTorch(unittest.TestCase):
    def setUp(self):
        if not LETHE or not os.access(LETHE, os.X_OK):
            self.skipTest("no --lethe binary")
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def test_eval_objective_and_gradient(self):
        for mode in ("mean", "sum"):
            for padding_idx in (None, 2):
                with self.subTest(mode=mode, padding_idx=padding_idx):
                    X, y = token_ids(5, padding_idx)
                    model = torch_model(mode, padding_idx)
                    with torch.no_grad():  # away from the init's zero padding row
                        model[0].weight.mul_(0.7).add_(0.1)
                    obj = torch_objective(model, X, y)
                    obj.backward()
                    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
                    data = self.path("d.npz")
                    export_dataset(data, X, y, token_ids=True)
                    write_model(self.path("m.safetensors"), model, spec(mode, padding_idx))
                    got = eval_json(self.path("m.safetensors"), data)
                    self.assertAlmostEqual(got["objective"], obj.item(), delta=1e-12 * obj.item())
                    self.assertAlmostEqual(got["grad_norm"], grad.norm().item(),
                                           delta=1e-10 * grad.norm().item())

    def test_train_reaches_torch_stationary_point(self):
        X, y = token_ids(9, 2)
        data = self.path("d.npz")
        export_dataset(data, X, y, token_ids=True)
        with open(self.path("s.json"), "w") as f:
            json.dump(spec("mean", 2), f)
        run_lethe("train", "--spec", self.path("s.json"), "--data", data, "--out",
                  self.path("t.safetensors"), "--dtype", "f64")
        from export_torch import read_safetensors
        tensors, _ = read_safetensors(self.path("t.safetensors"))
        model = torch_model("mean", 2)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
        obj = torch_objective(model, X, y)
        obj.backward()
        gnorm = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm().item()
        self.assertLess(gnorm, 1e-6, f"torch's gradient at lethe's optimum: {gnorm:.2e}")
        # The padding row gets no gradient from the data, so l2 keeps it at zero.
        self.assertTrue(np.all(tensors["0.weight"][2] == 0))

    def test_data_errors_name_the_file(self):
        X, y = token_ids(5, 2)
        ids = self.path("ids.npz")
        export_dataset(ids, X, y, token_ids=True)
        with self.assertRaises(ExportError):  # token ids must be integers
            export_dataset(self.path("no.npz"), X + 0.5, y, token_ids=True)
        floats = self.path("floats.npz")
        export_dataset(floats, X.astype(np.float64), y)
        bad = self.path("bad.npz")
        X_bad = X.copy()
        X_bad[7, 3] = NUM
        export_dataset(bad, X_bad, y, token_ids=True)
        write_model(self.path("m.safetensors"), torch_model("mean", 2), spec("mean", 2))
        linear = nn.Sequential(nn.Linear(LENGTH, CLASSES)).double()
        write_model(self.path("lin.safetensors"), linear,
                    {"format": "lethe/1", "layers": [{"type": "linear", "weight": "0.weight",
                                                      "bias": "0.bias", "out": CLASSES}],
                     "loss": "cross_entropy", "l2": L2})
        for model, data, phrase in (("m.safetensors", floats, "float"),
                                    ("lin.safetensors", ids, "integer"),
                                    ("m.safetensors", bad, "row 7")):
            with self.subTest(model=model, data=data):
                proc = run_lethe("eval", "--model", self.path(model), "--data", data,
                                 expect_ok=False)
                self.assertEqual(proc.returncode, 1, proc.stderr)
                lines = proc.stderr.strip().split("\n")
                self.assertEqual(len(lines), 1, proc.stderr)
                self.assertIn(data, lines[0])
                self.assertIn(phrase, lines[0])


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(run_tests(__name__))
