#!/usr/bin/env python3
"""Every layer type's derivatives against PyTorch's autograd, and two end-to-end CNN checks.

    /usr/bin/python3 tests/python/test_layer_parity.py --lethe PATH/TO/lethe \
        --derivatives PATH/TO/lethe_derivatives [unittest args]

Parity (tests/tools/lethe_derivatives, a test-only tool that writes what the engine computes):
random nn.Sequential models in float64, built in PyTorch and exported with
tools/export_torch.py, cover every layer type and option — conv2d (stride, padding, dilation,
with and without bias, non-square kernels and images), maxpool2d (with padding; exact ties go to the first maximum, as in torch), avgpool2d
(padding counted in the divisor), global_avgpool, flatten, embedding_bag (sum and mean,
padding_idx, an all-padding row, frozen), layernorm (affine or not, frozen), batchnorm (evaluation
mode, random running statistics; 1-d and 2-d), dropout, residual (nested, around pooling),
frozen layers, every activation — under each loss (cross_entropy, logistic, mse). For each:
θ in the engine's order equals the trainable parameters in nn.Module order (docs/formats.md:
spec order, depth-first through residual bodies, weight then bias, frozen left out); the
objective (1/n) Σ lᵢ + (l2/2)‖θ‖², each lᵢ and output, ∇L, the n per-example gradients
∇lᵢ (no 1/n, no l2), their dot products with directions, H v (PyTorch: double backward,
create_graph=True) and G v = (1/n) Σ Jᵢᵀ ∇²_f lᵢ Jᵢ v + l2 v (PyTorch: J v by the double-vjp
trick, the loss Hessian applied in closed form, then Jᵀ by a vjp), all to 1e-10 relative.
The same on CUDA where lethe finds a GPU (skipped otherwise; LETHE_REQUIRE_CUDA=1 fails instead).

End to end, through the lethe command line:
- influence on a small CNN (conv2d → tanh → avgpool2d → flatten → linear, p = 310) trained by
  `lethe train` on 60 digits: `--solver direct` and `--solver cg` scores against
  (1/n) g_testᵀ H⁻¹ gᵢ with H the explicit Hessian PyTorch builds column by column;
- three Newton steps (`lethe unlearn --steps 3`) of a convex head over frozen conv features
  (conv2d frozen → relu → flatten → linear, softmax cross-entropy with l2) reach the
  retrained optimum (`lethe train --forget`) to 1e-8 relative.

Tests skip when --lethe / --derivatives are missing. Last line: "N passed, N failed, N skipped".
"""

import argparse
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

import test_unlearn  # its lethe() runner and theta() reader, shared rather than duplicated

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from export_torch import Residual, export_dataset, export_model, load_model  # noqa: E402

LETHE = None        # set from --lethe
DERIVATIVES = None  # set from --derivatives

# f64 on both sides; the two differ only in the order of their sums (~1e-15 relative, a few
# orders more where a product cancels), so 1e-10 leaves room for that and catches any wrong
# term, sign or factor.
TOL = 1e-10
L2 = 0.03


# ------------------------------------------------------------------------------ PyTorch side

def losses_of(f, y, loss):
    """lᵢ with lethe's conventions (tools/export_torch.py's module doc)."""
    if loss == "cross_entropy":
        return nn.functional.cross_entropy(f, y, reduction="none")
    if loss == "logistic":
        z = f[:, 0]
        return nn.functional.softplus(z) - y * z
    return 0.5 * ((f - y) ** 2).sum(dim=1)  # mse: ½‖f − y‖², summed over outputs


def loss_hessian_times(f, y, u, loss):
    """∇²_f lᵢ uᵢ for each row: softmax p: (diag p − p pᵀ) u; logistic: σ(1−σ) u; mse: u."""
    if loss == "cross_entropy":
        p = torch.softmax(f, dim=1)
        return p * u - p * (p * u).sum(dim=1, keepdim=True)
    if loss == "logistic":
        s = torch.sigmoid(f)
        return s * (1 - s) * u
    return u


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector, params):
    out, at = [], 0
    for p in params:
        out.append(vector[at:at + p.numel()].view_as(p))
        at += p.numel()
    return out


class BagAsProduct(nn.Module):
    """nn.EmbeddingBag as the product B W, B [n, num_embeddings] holding each row's token
    counts (over the row's non-padding count for "mean"; an all-padding row is 0): the same
    function, but twice differentiable (torch has no double backward through
    _embedding_bag_dense_backward). Shares the bag's weight, so θ's order is unchanged, and
    checks its output against nn.EmbeddingBag's own on every call."""

    def __init__(self, bag):
        super().__init__()
        self.bag = bag

    def forward(self, X):
        m = self.bag
        counts = nn.functional.one_hot(X, m.num_embeddings).to(m.weight.dtype)  # [n, L, V]
        if m.padding_idx is not None:
            counts = counts * (X != m.padding_idx).unsqueeze(-1)
        B = counts.sum(dim=1)
        if m.mode == "mean":
            B = B / B.sum(dim=1, keepdim=True).clamp(min=1)
        out = B @ m.weight
        with torch.no_grad():
            reference = m(X)
            assert torch.allclose(out, reference, rtol=1e-14, atol=1e-14), "BagAsProduct"
        return out


def torch_derivatives(net, X, y, loss, l2, V):
    """What lethe_derivatives writes, computed by autograd on the trainable parameters in
    nn.Module order (which must be lethe's θ order)."""
    if isinstance(net[0], nn.EmbeddingBag):
        net = nn.Sequential(BagAsProduct(net[0]), *net[1:])
    params = [p for p in net.parameters() if p.requires_grad]
    n = X.shape[0]
    f = net(X)
    li = losses_of(f, y, loss)
    objective = li.mean() + 0.5 * l2 * sum((p * p).sum() for p in params)
    grads = torch.autograd.grad(objective, params, create_graph=True)
    g = flat(grads)
    per_example = torch.stack([flat(torch.autograd.grad(li[i], params, retain_graph=True))
                               for i in range(n)])
    hv, gv = [], []
    for v in V:
        # H v: the gradient of ⟨∇L, v⟩ (Pearlmutter by double backward).
        hv.append(flat(torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True)))
        # J v without forward mode: w ↦ Jᵀ w is linear, so J v = ∂⟨Jᵀ w, v⟩/∂w.
        w = torch.zeros_like(f, requires_grad=True)
        jt_w = flat(torch.autograd.grad(f, params, grad_outputs=w, create_graph=True))
        jv = torch.autograd.grad(jt_w, w, grad_outputs=v)[0]
        a_jv = loss_hessian_times(f.detach(), y, jv, loss)
        jt = flat(torch.autograd.grad(f, params, grad_outputs=a_jv, retain_graph=True))
        gv.append(jt / n + l2 * v)
    return dict(theta=flat([p.detach() for p in params]), objective=objective.detach(),
                losses=li.detach(), outputs=f.detach(), grad=g.detach(),
                per_example=per_example.detach(), hv=torch.stack(hv).detach(),
                gv=torch.stack(gv), dots=(per_example @ V.T).detach())


# ------------------------------------------------------------------------------ lethe side

_NO_CUDA = []  # the tool's answer the first time --device cuda found no device (asked once)


def lethe_derivatives(model, data, V, out, device="cpu", batch_size=3):
    """Runs the tool (batch 3 < n: the batching and a partial last batch are exercised);
    returns its arrays, or None when --device cuda finds no GPU (or no CUDA build)."""
    if device == "cuda" and _NO_CUDA:
        return None  # starting the CUDA runtime only to hear it again costs ~1 s a model
    v_path = os.path.join(out, "v.npy")
    np.save(v_path, V)
    result = os.path.join(out, f"result_{device}")
    proc = subprocess.run([DERIVATIVES, "--model", model, "--data", data, "--v", v_path,
                           "--out", result, "--device", device, "--batch-size", str(batch_size)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        if device == "cuda" and "--device cuda" in proc.stderr and \
                not os.environ.get("LETHE_REQUIRE_CUDA"):  # set on GPU machines: fail, not skip
            _NO_CUDA.append(proc.stderr.strip())
            return None
        raise AssertionError(f"lethe_derivatives exited {proc.returncode}: {proc.stderr}")
    return {name[:-4]: np.load(os.path.join(result, name)) for name in os.listdir(result)}


def random_directions(p, m=2, seed=0):
    return np.random.default_rng(seed).standard_normal((m, p))


# ------------------------------------------------------------------------------ the models

def perturb_(net, seed):
    """Away from the default init: affine norms off 1 / 0, random running statistics,
    padding rows non-zero (they must still be skipped), so every term shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)) and m.weight is not None:
                m.weight.add_(0.3 * torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
                m.bias.add_(0.3 * torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(0.5 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.2 + 2 * torch.rand(m.running_var.shape, generator=g))
            if isinstance(m, nn.EmbeddingBag):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
    return net


def freeze_(module):
    for p in module.parameters():
        p.requires_grad_(False)


def cnn_options():
    """conv2d with a non-square kernel, stride, padding and dilation on a non-square image,
    a conv without bias, maxpool2d, avgpool2d with padding, flatten: [2, 7, 6] → 3."""
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),  # [3,4,4]
        nn.Tanh(),
        nn.Conv2d(3, 4, kernel_size=2, padding=1, bias=False),  # [4,5,5]
        nn.Softplus(),
        nn.MaxPool2d(kernel_size=2, stride=1),                  # [4,4,4]
        nn.AvgPool2d(kernel_size=3, stride=2, padding=1),       # [4,2,2], padding in the divisor
        nn.Flatten(),
        nn.GELU(),
        nn.Linear(16, 3))
    return net.double().eval(), (2, 7, 6), 3


def cnn_residual():
    """A frozen first conv, a residual block (conv, batchnorm2d, a nested residual, an
    avgpool that keeps the shape), maxpool2d with padding, global_avgpool, dropout."""
    torch.manual_seed(12)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(),                                  # [3,6,6]
        Residual(nn.Sequential(
            nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh(),
            Residual(nn.Sequential(nn.Conv2d(3, 3, 1, bias=False), nn.Sigmoid())),
            nn.AvgPool2d(3, stride=1, padding=1))),
        nn.MaxPool2d(3, stride=2, padding=1),                                       # [3,3,3]
        nn.Conv2d(3, 4, (2, 1)), nn.Softplus(),                                     # [4,2,3]
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),                                      # [4]
        nn.Dropout(0.2),
        nn.Linear(4, 4))
    freeze_(net[0])
    return perturb_(net.double(), 5).eval(), (1, 6, 6), 4


def mlp(outputs):
    """layernorm (affine and not), batchnorm1d, a frozen linear in the middle, nested
    residuals, dropout, identity, every activation."""
    torch.manual_seed(13)
    net = nn.Sequential(
        nn.LayerNorm(5), nn.Linear(5, 6), nn.Tanh(), nn.BatchNorm1d(6),
        nn.Linear(6, 6), nn.GELU(),
        Residual(nn.Sequential(
            nn.Linear(6, 6), nn.Sigmoid(),
            Residual(nn.Sequential(nn.LayerNorm(6, elementwise_affine=False), nn.Linear(6, 6),
                                   nn.Softplus())))),
        nn.Dropout(0.3), nn.Identity(), nn.ReLU(),
        nn.Linear(6, outputs))
    freeze_(net[4])
    return perturb_(net.double(), 6).eval()


def bag(mode, padding_idx, frozen=False, norm=False):
    """embedding_bag → tanh [→ a frozen layernorm] → linear."""
    torch.manual_seed(14)
    layers = [nn.EmbeddingBag(11, 4, mode=mode, padding_idx=padding_idx), nn.Tanh()]
    if norm:
        layers.append(nn.LayerNorm(4))
    net = nn.Sequential(*layers, nn.Linear(4, 3))
    if frozen:
        freeze_(net[0])
    if norm:
        freeze_(net[2])
    return perturb_(net.double(), 7).eval()


# ------------------------------------------------------------------------------ the tests

def rel_error(got, want):
    """max |got − want| over max |want|: one scale for the whole array."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape} != {want.shape}")
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


class LayerParity(unittest.TestCase):
    def setUp(self):
        if not DERIVATIVES or not os.access(DERIVATIVES, os.X_OK):
            self.skipTest("--derivatives (tests/tools/lethe_derivatives) not given")
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def check(self, net, X, y, loss, input_shape=None, tokens=False, nonlinear=True):
        tmp = self.tmp.name
        model, data = os.path.join(tmp, "m.safetensors"), os.path.join(tmp, "d.npz")
        export_model(net, model, loss=loss, l2=L2, input_shape=input_shape)
        export_dataset(data, X, y, tokens=tokens)
        params = [p for p in net.parameters() if p.requires_grad]
        p = sum(q.numel() for q in params)
        V = random_directions(p)
        want = torch_derivatives(net, X, y, loss, L2, torch.from_numpy(V))
        want = {k: v.numpy() for k, v in want.items()}
        for device in ("cpu", "cuda"):
            got = lethe_derivatives(model, data, V, tmp, device)
            if got is None:
                continue  # no GPU here: test_cuda says so
            # θ's order first: every other comparison depends on it, and equality is exact.
            np.testing.assert_array_equal(got["theta"], want["theta"], err_msg=f"{device}: θ order")
            errors = {k: rel_error(got[k].reshape(want[k].shape) if k == "objective" else got[k], want[k])
                      for k in ("objective", "losses", "outputs", "grad", "per_example", "dots",
                                "hv", "gv")}
            print(f"\n  {self._testMethodName} [{device}] p={p}: "
                  + ", ".join(f"{k} {e:.1e}" for k, e in errors.items()), end="")
            for k, e in errors.items():
                self.assertLessEqual(e, TOL, f"{device}: {k} differs from PyTorch by {e:.3e}")
        # The comparisons mean something: off the optimum, and (with curvature inside the
        # network) the Hessian's second-derivative terms present, so H v ≠ G v.
        self.assertGreater(np.linalg.norm(want["grad"]), 1e-3)
        if nonlinear:
            self.assertGreater(rel_error(want["hv"], want["gv"]), 1e-3)
        return want

    def test_conv_pool_options(self):
        net, shape, k = cnn_options()
        g = torch.Generator().manual_seed(1)
        X = torch.randn(7, *shape, dtype=torch.float64, generator=g)
        y = torch.randint(0, k, (7,), generator=g)
        self.check(net, X, y, "cross_entropy", input_shape=shape)

    def test_conv_residual_batchnorm_frozen(self):
        net, shape, k = cnn_residual()
        g = torch.Generator().manual_seed(2)
        X = torch.randn(7, *shape, dtype=torch.float64, generator=g)
        y = torch.randint(0, k, (7,), generator=g)
        want = self.check(net, X, y, "cross_entropy", input_shape=shape)
        self.assertEqual(want["theta"].size, sum(q.numel() for q in net.parameters()) - 3 * 9 - 3)

    def test_maxpool_ties_go_to_the_first_maximum(self):
        """Integer images and an integer-valued conv make exact ties in max-pooling windows
        between different patches (3 = 1 + 2 = 2 + 1), so which element gets the gradient
        changes the conv's gradient: lethe's rule (the first maximum in row-major window
        order, docs/formats.md) must be PyTorch's."""
        torch.manual_seed(15)
        net = nn.Sequential(nn.Conv2d(1, 2, (1, 2), bias=False), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Tanh(), nn.Linear(2 * 2 * 2, 3)).double().eval()
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor([[[[1.0, 1.0]]], [[[1.0, 2.0]]]]))
        g = torch.Generator().manual_seed(10)
        X = torch.randint(0, 3, (6, 1, 4, 5), generator=g).double()
        y = torch.randint(0, 3, (6,), generator=g)
        conv = net[0](X).detach()
        windows = conv.unfold(2, 2, 2).unfold(3, 2, 2).reshape(-1, 4)
        top = windows.max(dim=1, keepdim=True).values
        self.assertGreater(int(((windows == top).sum(dim=1) > 1).sum()), 10)  # many ties
        self.check(net, X, y, "cross_entropy", input_shape=(1, 4, 5))

    def test_mlp_norms_residual_cross_entropy(self):
        g = torch.Generator().manual_seed(3)
        X = torch.randn(8, 5, dtype=torch.float64, generator=g) * 2 + 1
        self.check(mlp(3), X, torch.randint(0, 3, (8,), generator=g), "cross_entropy")

    def test_mlp_norms_residual_logistic(self):
        g = torch.Generator().manual_seed(4)
        X = torch.randn(8, 5, dtype=torch.float64, generator=g) * 2 + 1
        y = torch.randint(0, 2, (8,), generator=g)
        y[:2] = torch.tensor([0, 1])
        self.check(mlp(1), X, y, "logistic")

    def test_mlp_norms_residual_mse(self):
        g = torch.Generator().manual_seed(5)
        X = torch.randn(8, 5, dtype=torch.float64, generator=g) * 2 + 1
        self.check(mlp(2), X, torch.randn(8, 2, dtype=torch.float64, generator=g), "mse")

    def tokens(self, padding_idx, seed):
        g = torch.Generator().manual_seed(seed)
        X = torch.randint(0, 11, (8, 5), generator=g)
        if padding_idx is not None:
            X[2] = padding_idx      # an all-padding row: zeros, whatever the mode
            X[3, :2] = padding_idx  # and a row with some
        y = torch.randint(0, 3, (8,), generator=g)
        return X, y

    def test_embedding_bag_mean_padding(self):
        X, y = self.tokens(0, 6)
        self.check(bag("mean", 0), X, y, "cross_entropy", input_shape=(5,), tokens=True)

    def test_embedding_bag_sum_padding_layernorm(self):
        X, y = self.tokens(3, 7)
        self.check(bag("sum", 3, norm=True), X, y, "cross_entropy", input_shape=(5,), tokens=True)

    def test_embedding_bag_mean_no_padding(self):
        X, y = self.tokens(None, 8)
        self.check(bag("mean", None), X, y, "cross_entropy", input_shape=(5,), tokens=True)

    def test_embedding_bag_frozen(self):
        X, y = self.tokens(0, 9)
        # θ is the head alone: linear in θ before a softmax, so H = G exactly.
        self.check(bag("sum", 0, frozen=True), X, y, "cross_entropy", input_shape=(5,),
                   tokens=True, nonlinear=False)

    def test_cuda(self):
        """Says whether the CUDA backend ran: check() compares every model above on it too
        when lethe finds a device; here it skips without one (LETHE_REQUIRE_CUDA: fails)."""
        net, shape, k = cnn_residual()
        X = torch.randn(5, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
        tmp = self.tmp.name
        model, data = os.path.join(tmp, "m.safetensors"), os.path.join(tmp, "d.npz")
        export_model(net, model, loss="cross_entropy", l2=L2, input_shape=shape)
        export_dataset(data, X, torch.arange(5) % k)
        V = random_directions(sum(q.numel() for q in net.parameters() if q.requires_grad))
        if lethe_derivatives(model, data, V, tmp, "cuda") is None:
            self.skipTest(f"no CUDA device: {_NO_CUDA[0]}")
        # With a device, check() above already ran every model on it; this one only says so.


# ------------------------------------------------------------------------------ end to end

def digits_images(count, offset=0):
    d = np.load(os.path.join(ROOT, "examples", "digits", "train.npz"))
    sl = slice(offset, offset + count)
    return d["X"][sl].reshape(-1, 1, 8, 8), d["y"][sl], d["ids"][sl]


class EndToEnd(unittest.TestCase):
    def setUp(self):
        if not LETHE or not os.access(LETHE, os.X_OK):
            self.skipTest("--lethe not given")
        test_unlearn.LETHE = LETHE  # its lethe() runs this binary
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def write_spec(self, layers, l2):
        spec = self.path("spec.json")
        with open(spec, "w") as f:
            json.dump({"format": "lethe/1", "input": [1, 8, 8], "loss": "cross_entropy",
                       "l2": l2, "layers": layers}, f)
        return spec

    def test_cnn_influence_against_explicit_hessian(self):
        X, y, ids = digits_images(60)
        train, test = self.path("train.npz"), self.path("test.npz")
        export_dataset(train, X, y, ids=ids)
        Xt, yt, idt = digits_images(3, offset=600)
        export_dataset(test, Xt, yt, ids=idt)
        # avgpool, not maxpool: a max-pooled net's objective has kinks where a window's
        # maximum changes hands, and its minimiser usually sits on one (L-BFGS stalls at
        # ‖∇L‖ ~ 1e-3 there), so it has no Hessian to solve with; pooling's derivatives are
        # LayerParity's business.
        l2 = 0.01
        spec = self.write_spec([
            {"type": "conv2d", "weight": "c.weight", "bias": "c.bias", "out": 3, "kernel": 3},
            {"type": "tanh"}, {"type": "avgpool2d", "kernel": 2}, {"type": "flatten"},
            {"type": "linear", "weight": "h.weight", "bias": "h.bias"}], l2=l2)
        model = self.path("cnn.safetensors")
        test_unlearn.lethe("train", "--spec", spec, "--data", train, "--out", model,
                           "--tolerance", "1e-11")
        # PyTorch: the explicit Hessian of the objective at lethe's θ, column by column.
        net = load_model(model)
        params = [p for p in net.parameters() if p.requires_grad]
        Xtr, ytr = torch.from_numpy(X), torch.from_numpy(y)
        n = len(y)
        li = losses_of(net(Xtr), ytr, "cross_entropy")
        objective = li.mean() + 0.5 * l2 * sum((p * p).sum() for p in params)
        g = flat(torch.autograd.grad(objective, params, create_graph=True))
        p = g.numel()
        H = torch.stack([flat(torch.autograd.grad(g[j], params, retain_graph=True))
                         for j in range(p)]).numpy()
        H = 0.5 * (H + H.T)
        G_train = np.stack([flat(torch.autograd.grad(li[i], params, retain_graph=True)).numpy()
                            for i in range(n)])
        lt = losses_of(net(torch.from_numpy(Xt)), torch.from_numpy(yt), "cross_entropy")
        G_test = np.stack([flat(torch.autograd.grad(lt[j], params, retain_graph=True)).numpy()
                           for j in range(len(yt))])
        want = G_test @ np.linalg.solve(H, G_train.T) / n  # [m, n]
        eig = np.linalg.eigvalsh(H)
        self.assertGreater(eig[0], 0)  # a strict local minimum: the solve is well posed
        self.assertLess(np.linalg.norm(g.detach().numpy()), 1e-9)
        errors = {}
        for solver, extra in (("direct", ()), ("cg", ("--cg-tolerance", "1e-12"))):
            out = self.path(f"scores_{solver}.npy")
            test_unlearn.lethe("influence", "--model", model, "--train", train, "--test", test,
                               "--out", out, "--solver", solver, *extra)
            errors[solver] = rel_error(np.load(out), want)
        print(f"\n  CNN p={p}, n={n}, H eigenvalues [{eig[0]:.3e}, {eig[-1]:.3e}]: scores vs "
              f"explicit solve: direct {errors['direct']:.2e}, cg {errors['cg']:.2e}", end="")
        # direct: rounding times cond(H) ≈ 1e2; cg to 1e-12 of ‖b‖ the same order again.
        self.assertLessEqual(errors["direct"], 1e-9)
        self.assertLessEqual(errors["cg"], 1e-8)

    def test_frozen_conv_features_newton_unlearning_matches_retraining(self):
        X, y, ids = digits_images(200)
        train = self.path("train.npz")
        export_dataset(train, X, y, ids=ids)
        spec = self.write_spec([
            {"type": "conv2d", "weight": "c.weight", "bias": "c.bias", "out": 4, "kernel": 4,
             "stride": 2, "frozen": True},
            {"type": "relu"}, {"type": "flatten"},
            {"type": "linear", "weight": "h.weight", "bias": "h.bias"}], l2=1e-2)
        forget = self.path("forget.txt")
        with open(forget, "w") as f:
            f.write("".join(f"{i}\n" for i in np.random.default_rng(4).choice(ids, 6, replace=False)))
        model, retrained, patched = (self.path(f"{k}.safetensors")
                                     for k in ("model", "retrained", "patched"))
        run = test_unlearn.lethe
        run("train", "--spec", spec, "--data", train, "--out", model, "--tolerance", "1e-12")
        run("train", "--init", model, "--data", train, "--forget", forget, "--out", retrained,
            "--tolerance", "1e-12")
        run("unlearn", "--model", model, "--train", train, "--forget", forget, "--out", patched,
            "--steps", "3", "--solve-dtype", "f64", "--cg-tolerance", "1e-12")
        t0, tr, tp = (test_unlearn.theta(x) for x in (model, retrained, patched))
        # The frozen conv never moves (it is in the file, not in θ).
        self.assertEqual(t0.size, tr.size)
        frozen = 4 * 16 + 4
        np.testing.assert_array_equal(tp[:frozen], t0[:frozen])
        np.testing.assert_array_equal(tr[:frozen], t0[:frozen])
        moved = np.linalg.norm(t0 - tr) / np.linalg.norm(tr)
        err = np.linalg.norm(tp - tr) / np.linalg.norm(tr)
        print(f"\n  frozen conv features, head p={tr.size - frozen}: ‖θ₀−θ_r‖/‖θ_r‖ = {moved:.3e}; "
              f"three Newton steps: ‖θ−θ_r‖/‖θ_r‖ = {err:.3e}", end="")
        self.assertGreater(moved, 1e-4)
        self.assertLessEqual(err, 1e-8)


def main():
    global DERIVATIVES
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--derivatives")
    args, rest = parser.parse_known_args()
    DERIVATIVES = os.path.abspath(args.derivatives) if args.derivatives else None
    sys.argv = [sys.argv[0], *rest]  # the rest (--lethe, test names) for run_tests
    return run_tests(__name__)


if __name__ == "__main__":
    sys.exit(main())
