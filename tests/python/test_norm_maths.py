#!/usr/bin/env python3
"""The normalisation layers' formulas (docs/maths.md) against PyTorch autograd, in f64.

    /usr/bin/python3 tests/python/test_norm_maths.py [--lethe PATH] [unittest args]

The derivatives engine/layers/layernorm.h and batchnorm.h implement, written here in
torch as the C++ computes them, checked against F.layer_norm / F.batch_norm (evaluation
mode) and their first and second derivatives (double backward), under a nonlinear scalar
loss phi(y) so that δ = ∂phi/∂y and R{δ} = ∇²phi R{y} are generic:

* forward, and backward δ_in, ∇γ, ∇β;
* R{y} against a Jacobian-vector product;
* the exact R-backward (R{δ_in}, R{∇γ}, R{∇β}) against the Hessian-vector product of
  phi(layer(x, γ, β)) over (x, γ, β) along (R{x}, v_γ, v_β);
* the Gauss-Newton R-backward against Jᵀ ∇²phi J v.

This checks the maths, not the binary (the C++ layers are checked against finite
differences in tests/engine/layers/); --lethe is accepted and unused.
"""

import sys
import unittest

from lethe_test_main import run_tests

import torch

DT = torch.float64
EPS = 1e-5
# Same formulas in another order, f64: a few ulp of O(1) values.
TOL = 1e-12


def mean(t):
    return t.mean(1, keepdim=True)


def phi_of(a):
    """A nonlinear test loss: phi(y) = Σ a ⊙ sin(y) + 0.1 Σ y₀ y (couples the features)."""
    return lambda y: (torch.sin(y) * a).sum() + 0.1 * (y.flatten(1)[:, :1] * y.flatten(1)).sum()


def delta_and_rdelta(phi, y, ry):
    yv = y.detach().requires_grad_()
    delta = torch.autograd.grad(phi(yv), yv, create_graph=True)[0]
    rdelta = torch.autograd.grad(delta, yv, grad_outputs=ry)[0]
    return delta.detach(), rdelta


def hvp(f, phi, args, dirs):
    """The Hessian-vector product of phi(f(*args)) along dirs, and Jᵀ∇²phi J dirs."""
    xs = [a.clone().requires_grad_() for a in args]
    grads = torch.autograd.grad(phi(f(*xs)), xs, create_graph=True)
    dot = sum((g * d).sum() for g, d in zip(grads, dirs))
    exact = torch.autograd.grad(dot, xs)
    y, jv = torch.autograd.functional.jvp(f, tuple(args), tuple(dirs))
    _, hjv = delta_and_rdelta(phi, y, jv)
    _, gn = torch.autograd.functional.vjp(f, tuple(args), hjv)
    return grads, exact, gn


class Close(unittest.TestCase):
    def assertClose(self, got, want, what):
        err = (got - want).abs().max().item() / max(1.0, want.abs().max().item())
        self.assertLessEqual(err, TOL, f"{what}: relative error {err}")


class LayerNormMaths(Close):
    def test_formulas(self):
        g0 = torch.Generator().manual_seed(0)
        n, d = 5, 7
        rnd = lambda *s: torch.randn(*s, dtype=DT, generator=g0)
        x, gam, bet = rnd(n, d) * 2 + 0.5, rnd(d), rnd(d)
        r, vg, vb = rnd(n, d), rnd(d), rnd(d)
        phi = phi_of(rnd(n, d))
        f = lambda x_, g_, b_: torch.nn.functional.layer_norm(x_, (d,), g_, b_, EPS)

        # forward (biased variance, as PyTorch)
        s = (mean((x - mean(x)) ** 2) + EPS).rsqrt()
        xh = s * (x - mean(x))
        y = gam * xh + bet
        self.assertClose(y, f(x, gam, bet), "forward")
        # R forward
        rho = mean(xh * r)
        rxh = s * (r - mean(r) - xh * rho)
        ry = gam * rxh + vg * xh + vb
        self.assertClose(ry, torch.autograd.functional.jvp(f, (x, gam, bet), (r, vg, vb))[1],
                         "R{y}")
        delta, rdelta = delta_and_rdelta(phi, y, ry)

        def sM(h):  # s M h = s (h − ⟨h⟩ − x̂ ⟨h ⊙ x̂⟩) = (∂x̂/∂x)ᵀ h
            return s * (h - mean(h) - xh * mean(h * xh))

        g = gam * delta
        din = sM(g)
        grads, exact, gn = hvp(f, phi, (x, gam, bet), (r, vg, vb))
        self.assertClose(din, grads[0], "δ_in")
        self.assertClose((delta * xh).sum(0), grads[1], "∇γ")
        self.assertClose(delta.sum(0), grads[2], "∇β")
        # exact R backward
        rdin = (sM(gam * rdelta + vg * delta) - s * rho * din - s * mean(g * xh) * rxh
                - s * xh * mean(g * rxh))
        self.assertClose(rdin, exact[0], "R{δ_in}")
        self.assertClose((rdelta * xh + delta * rxh).sum(0), exact[1], "R{∇γ}")
        self.assertClose(rdelta.sum(0), exact[2], "R{∇β}")
        # Gauss-Newton
        self.assertClose(sM(gam * rdelta), gn[0], "GN R{δ_in}")
        self.assertClose((rdelta * xh).sum(0), gn[1], "GN R{∇γ}")
        self.assertClose(rdelta.sum(0), gn[2], "GN R{∇β}")
        # the exact terms matter here (the check could fail)
        self.assertGreater((rdin - sM(gam * rdelta)).abs().max().item(), 1e-3)


class BatchNormMaths(Close):
    def check(self, shape):
        g0 = torch.Generator().manual_seed(1)
        rnd = lambda *s: torch.randn(*s, dtype=DT, generator=g0)
        C = shape[1]
        ex = (1, C) + (1,) * (len(shape) - 2)  # a per-feature / per-channel factor's view
        x, rm, rv = rnd(*shape), rnd(C), torch.rand(C, dtype=DT, generator=g0) + 0.1
        w, b, r, vw, vb = rnd(C), rnd(C), rnd(*shape), rnd(C), rnd(C)
        phi = phi_of(rnd(*shape))
        f = lambda x_, w_, b_: torch.nn.functional.batch_norm(x_, rm, rv, w_, b_, False, 0.0, EPS)
        per = lambda t: t.sum(dim=[i for i in range(t.dim()) if i != 1])  # Σ examples, positions

        s = (rv + EPS).rsqrt().view(ex)
        xh = (x - rm.view(ex)) * s
        y = w.view(ex) * xh + b.view(ex)
        self.assertClose(y, f(x, w, b), "forward")
        ry = w.view(ex) * s * r + vw.view(ex) * xh + vb.view(ex)
        self.assertClose(ry, torch.autograd.functional.jvp(f, (x, w, b), (r, vw, vb))[1], "R{y}")
        delta, rdelta = delta_and_rdelta(phi, y, ry)
        grads, exact, gn = hvp(f, phi, (x, w, b), (r, vw, vb))
        self.assertClose(delta * w.view(ex) * s, grads[0], "δ_in")
        self.assertClose(per(delta * xh), grads[1], "∇γ")
        self.assertClose(per(delta), grads[2], "∇β")
        self.assertClose(rdelta * w.view(ex) * s + delta * vw.view(ex) * s, exact[0], "R{δ_in}")
        self.assertClose(per(rdelta * xh + delta * s * r), exact[1], "R{∇γ}")
        self.assertClose(per(rdelta), exact[2], "R{∇β}")
        self.assertClose(rdelta * w.view(ex) * s, gn[0], "GN R{δ_in}")
        self.assertClose(per(rdelta * xh), gn[1], "GN R{∇γ}")
        self.assertClose(per(rdelta), gn[2], "GN R{∇β}")

    def test_vectors(self):
        self.check((5, 7))

    def test_channels(self):
        self.check((4, 3, 5, 2))


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
