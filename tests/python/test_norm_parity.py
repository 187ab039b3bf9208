#!/usr/bin/env python3
"""lethe's layernorm, batchnorm (evaluation mode) and dropout against PyTorch's modules.

    /usr/bin/python3 tests/python/test_norm_parity.py --lethe PATH/TO/lethe [unittest args]

A random nn.Sequential of LayerNorm, Linear, Tanh, BatchNorm1d (random running statistics),
Dropout and LayerNorm without affine parameters, in eval mode and f64, is written as a lethe
model (safetensors with the spec embedded, the running statistics as tensors the spec names)
and evaluated by `lethe eval --json`: the mean loss and the gradient norm of the objective
(1/n) Σ lossᵢ + (l2/2) ‖θ‖² must match PyTorch's, θ being the trainable parameters only
(the running statistics are not parameters). The same with the first LayerNorm frozen
("frozen": true; requires_grad False in PyTorch: out of θ and of the l2 term).

Tests skip when --lethe is missing. The last line printed is "N passed, N failed, N skipped".
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
from export_torch import export_dataset, write_safetensors  # noqa: E402

LETHE = None  # set from --lethe

# f64 throughout; the sums differ only in order: ~1e-15 relative, so 1e-10 catches any
# wrong term while leaving room for the gradient's cancellation.
TOL = 1e-10
L2 = 0.01


def make_net(d, hidden, classes, seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.Tanh(), nn.BatchNorm1d(hidden),
                        nn.Dropout(0.3), nn.LayerNorm(hidden, elementwise_affine=False),
                        nn.Linear(hidden, classes)).double()
    with torch.no_grad():  # away from the initial 1 / 0 and the default statistics
        for m in (net[0], net[3]):
            m.weight.add_(0.3 * torch.randn_like(m.weight))
            m.bias.add_(0.3 * torch.randn_like(m.bias))
        net[3].running_mean.copy_(0.5 * torch.randn(hidden))
        net[3].running_var.copy_(0.2 + torch.rand(hidden) * 2)
    return net.eval()


def spec_and_tensors(net, frozen_first):
    layers = [{"type": "layernorm", "weight": "0.weight", "bias": "0.bias"},
              {"type": "linear", "weight": "1.weight", "bias": "1.bias"},
              {"type": "tanh"},
              {"type": "batchnorm", "weight": "3.weight", "bias": "3.bias",
               "running_mean": "3.running_mean", "running_var": "3.running_var", "eps": net[3].eps},
              {"type": "dropout", "p": 0.3},
              {"type": "layernorm"},
              {"type": "linear", "weight": "6.weight", "bias": "6.bias"}]
    if frozen_first:
        layers[0]["frozen"] = True
    spec = {"format": "lethe/1", "layers": layers, "loss": "cross_entropy", "l2": L2}
    sd = net.state_dict()
    names = ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias", "3.running_mean",
             "3.running_var", "6.weight", "6.bias"]
    return spec, [(k, sd[k].numpy()) for k in names]


def lethe_eval(model, data):
    proc = subprocess.run([LETHE, "eval", "--model", model, "--data", data, "--json"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"lethe eval exited {proc.returncode}: {proc.stderr}")
    out = proc.stdout
    return json.JSONDecoder().raw_decode(out[out.find("{"):])[0]


class NormParity(unittest.TestCase):
    def setUp(self):
        if not LETHE or not os.access(LETHE, os.X_OK):
            self.skipTest("--lethe not given")

    def check(self, frozen_first):
        n, d, hidden, classes = 40, 7, 6, 3
        g = torch.Generator().manual_seed(1)
        X = torch.randn(n, d, dtype=torch.float64, generator=g) * 2 + 1
        y = torch.randint(0, classes, (n,), generator=g)
        y[0] = classes - 1
        net = make_net(d, hidden, classes, seed=3)
        if frozen_first:
            net[0].weight.requires_grad_(False)
            net[0].bias.requires_grad_(False)
        spec, tensors = spec_and_tensors(net, frozen_first)
        params = [p for p in net.parameters() if p.requires_grad]
        f = net(X)
        loss = nn.functional.cross_entropy(f, y)
        objective = loss + 0.5 * L2 * sum((p * p).sum() for p in params)
        grads = torch.autograd.grad(objective, params)
        grad_norm = torch.sqrt(sum((gr * gr).sum() for gr in grads)).item()
        with tempfile.TemporaryDirectory() as tmp:
            model, data = os.path.join(tmp, "m.safetensors"), os.path.join(tmp, "d.npz")
            write_safetensors(model, tensors, {"lethe": json.dumps(spec)})
            export_dataset(data, X, y)
            got = lethe_eval(model, data)
        self.assertLess(abs(got["loss"] - loss.item()), TOL * max(1.0, loss.item()), got)
        self.assertLess(abs(got["objective"] - objective.item()), TOL * max(1.0, objective.item()),
                        got)
        self.assertLess(abs(got["grad_norm"] - grad_norm), TOL * max(1.0, grad_norm),
                        (got["grad_norm"], grad_norm))
        self.assertGreater(grad_norm, 1e-3)  # not at an optimum: the comparison means something

    def test_layernorm_batchnorm_dropout(self):
        self.check(frozen_first=False)

    def test_frozen_layernorm(self):
        self.check(frozen_first=True)


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
