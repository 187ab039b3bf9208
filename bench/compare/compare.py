#!/usr/bin/env python3
"""Side-by-side timings: lethe against what users run today, in one run, same machine and threads.

    /usr/bin/python3 bench/compare/compare.py --lethe build/tools/lethe [--n 10000] [--threads 2]
        [--data synthetic|digits784] [--no-unlearn] [--no-influence] [--no-torch-retrain]
        [--ks 1,0.01,0.1]

1. influence with CG for m test examples on a 10-class softmax regression over n × 784
   data (bench/compare/common.py): `lethe influence --solver cg`, plain (`--preconditioner
   none`, the same algorithm as the PyTorch side) and with its default K-FAC preconditioner,
   against the same computation written in
   PyTorch the way torch-influence does it (Hessian-vector products by double backward over the
   training batch, one CG solve per test example, per-example training gradients by autograd
   in a loop), at the same tolerance; the scores are compared too.
2. unlearning against retraining for k = 1 and 1% of n: `lethe unlearn` (one Newton step, CG)
   against `lethe train --forget` from scratch (same optimiser and tolerance as the original
   training) and against PyTorch L-BFGS retraining from scratch, with each result's relative
   parameter error to lethe's retrained optimum.
Prints a table; ratios are measured in this run only (this machine is shared and noisy).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import make as make_data, run, theta_of  # noqa: E402


def torch_objective(W, b, X, y, l2):
    logits = X @ W.T + b
    return torch.nn.functional.cross_entropy(logits, y) + 0.5 * l2 * (W.pow(2).sum() + b.pow(2).sum())


def torch_cg_influence(W, b, X, y, Xt, yt, l2, tol, max_iter=1000):
    """torch-influence style: HVPs by double backward over the training batch, one CG solve
    per test example, then per-example training gradients by autograd in a loop (one loop
    serving all test examples, which is generous to this side)."""
    params = [W, b]
    loss = torch_objective(W, b, X, y, l2)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])

    def hvp(v):
        out = torch.autograd.grad(flat_grad @ v, params, retain_graph=True)
        return torch.cat([o.reshape(-1) for o in out])

    n = X.shape[0]
    solutions = []
    for j in range(Xt.shape[0]):
        lt = torch.nn.functional.cross_entropy(Xt[j:j + 1] @ W.T + b, yt[j:j + 1])
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(lt, params)]).detach()
        x = torch.zeros_like(g)
        r = g.clone()
        p = r.clone()
        rr = r @ r
        for _ in range(max_iter):
            if rr.sqrt() <= tol * g.norm():
                break
            Ap = hvp(p)
            a = rr / (p @ Ap)
            x += a * p
            r -= a * Ap
            rr_new = r @ r
            p = r + (rr_new / rr) * p
            rr = rr_new
        solutions.append(x)
    S = torch.stack(solutions)  # m × p
    scores = np.zeros((Xt.shape[0], n))
    for i in range(n):
        li = torch.nn.functional.cross_entropy(X[i:i + 1] @ W.T + b, y[i:i + 1])
        gi = torch.cat([t.reshape(-1) for t in torch.autograd.grad(li, params)])
        scores[:, i] = (S @ gi).detach().numpy() / n
    return scores


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lethe", required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--m", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--data", default="synthetic", help="synthetic or digits784")
    ap.add_argument("--no-influence", action="store_true", help="skip part 1 (influence)")
    ap.add_argument("--no-torch-retrain", action="store_true",
                    help="part 2 without PyTorch's L-BFGS retraining (minutes per k)")
    ap.add_argument("--ks", default="1,0.01",
                    help="forget-set sizes: integers are counts, fractions are of n")
    ap.add_argument("--no-unlearn", action="store_true",
                    help="influence only (PyTorch's L-BFGS retraining takes ~15 min per k on digits784)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    L = [args.lethe]
    common = ["--threads", str(args.threads), "--quiet"]
    d, classes, l2 = 784, 10, 1e-3
    tmp = tempfile.mkdtemp()
    X, y = make_data(args.data, args.n, 0)
    Xt, yt = make_data(args.data, args.m, 1)
    train, test = os.path.join(tmp, "train.npz"), os.path.join(tmp, "test.npz")
    np.savez(train, X=X, y=y.astype(np.int64), ids=np.arange(args.n, dtype=np.int64))
    np.savez(test, X=Xt, y=yt.astype(np.int64), ids=np.arange(100000, 100000 + args.m, dtype=np.int64))
    spec = os.path.join(tmp, "spec.json")
    with open(spec, "w") as f:
        json.dump({"format": "lethe/1", "layers": [{"type": "linear", "weight": "0.weight",
                   "bias": "0.bias", "out": classes}], "loss": "cross_entropy", "l2": l2}, f)
    model = os.path.join(tmp, "model.safetensors")
    t_train, _ = run(L + ["train", "--spec", spec, "--data", train, "--out", model] + common)
    print(f"softmax regression on {args.data} {args.n}×{d} → {classes}, l2 {l2}, {args.threads} threads; "
          f"lethe train from scratch: {t_train:.2f} s")

    # 1. influence, CG, m test examples: lethe's plain CG (the same algorithm as the PyTorch
    # side) and its default, K-FAC-preconditioned CG (same tolerance, same answers).
    lethe_runs = {}
    for pc in [] if args.no_influence else ["none", "kfac"]:
        scores_npy = os.path.join(tmp, f"scores_{pc}.npy")
        t_run, _ = run(L + ["influence", "--model", model, "--train", train, "--test", test,
                            "--solver", "cg", "--preconditioner", pc, "--cg-tolerance", "1e-8",
                            "--out", scores_npy] + common)
        lethe_runs[pc] = (t_run, np.load(scores_npy))
    Xtr, ytr = torch.tensor(X), torch.tensor(y)
    if not args.no_influence:
        influence_vs_torch(args, model, X, Xt, yt, Xtr, ytr, lethe_runs, classes, d, l2)
    if args.no_unlearn:
        return
    unlearn_vs_retrain(args, L, spec, train, model, tmp, Xtr, ytr, classes, d, l2, common)


def influence_vs_torch(args, model, X, Xt, yt, Xtr, ytr, lethe_runs, classes, d, l2):
    th = theta_of(model)
    W = torch.tensor(th[:classes * d].reshape(classes, d), requires_grad=True)
    b = torch.tensor(th[classes * d:], requires_grad=True)
    t = time.perf_counter()
    ref = torch_cg_influence(W, b, Xtr, ytr, torch.tensor(Xt), torch.tensor(yt), l2, 1e-8)
    t_cg = time.perf_counter() - t
    print(f"\ninfluence, cg to 1e-8, m = {args.m}: PyTorch (torch-influence style) {t_cg:.2f} s")
    for pc, (t_run, scores) in lethe_runs.items():
        err = np.max(np.abs(ref - scores)) / np.max(np.abs(ref))
        print(f"  lethe --preconditioner {pc:<4} {t_run:8.2f} s  → {t_cg / t_run:5.1f}× faster; "
              f"max score difference {err:.2e} (relative)")


def unlearn_vs_retrain(args, L, spec, train, model, tmp, Xtr, ytr, classes, d, l2, common):
    # 2. unlearning vs retraining
    ids = np.arange(args.n)
    rng = np.random.default_rng(2)
    print(f"\n{'k':>6} {'lethe unlearn':>14} {'rel. error':>11} {'lethe retrain':>14} {'speedup':>8} "
          f"{'torch L-BFGS':>13} {'speedup':>8}")
    for k in [int(v) if float(v) >= 1 else max(1, round(float(v) * args.n)) for v in args.ks.split(",")]:
        forget = os.path.join(tmp, f"forget{k}.txt")
        chosen = rng.choice(ids, k, replace=False)
        with open(forget, "w") as f:
            f.write("".join(f"{i}\n" for i in chosen))
        retrained, patched = os.path.join(tmp, "re.safetensors"), os.path.join(tmp, "pa.safetensors")
        t_re, _ = run(L + ["train", "--spec", spec, "--data", train, "--forget", forget, "--out", retrained] + common)
        t_un, _ = run(L + ["unlearn", "--model", model, "--train", train, "--forget", forget,
                           "--solver", "cg", "--out", patched] + common)
        t0, tr, tp = theta_of(model), theta_of(retrained), theta_of(patched)
        rel = np.linalg.norm(tp - tr) / np.linalg.norm(t0 - tr)
        if args.no_torch_retrain:
            print(f"{k:>6} {t_un:>12.2f} s {rel:>11.2e} {t_re:>12.2f} s {t_re / t_un:>7.1f}×")
            continue
        keep = np.setdiff1d(ids, chosen)
        Wt = torch.zeros(classes, d, requires_grad=True)
        bt = torch.zeros(classes, requires_grad=True)
        # Capped at 5,000 iterations (ill-conditioned data would otherwise run for many
        # minutes): a capped time is a lower bound on PyTorch's, so the ratio is conservative.
        opt = torch.optim.LBFGS([Wt, bt], lr=1, max_iter=5000, tolerance_grad=1e-9,
                                tolerance_change=0, history_size=20, line_search_fn="strong_wolfe")
        Xk, yk = Xtr[keep], ytr[keep]

        def closure():
            opt.zero_grad()
            loss = torch_objective(Wt, bt, Xk, yk, l2)
            loss.backward()
            return loss
        t = time.perf_counter()
        opt.step(closure)
        t_torch = time.perf_counter() - t
        g = torch.autograd.grad(torch_objective(Wt, bt, Xk, yk, l2), [Wt, bt])
        g_max = max(float(x.abs().max()) for x in g)
        iters = opt.state[opt._params[0]]["n_iter"]
        print(f"{k:>6} {t_un:>12.2f} s {rel:>11.2e} {t_re:>12.2f} s {t_re / t_un:>7.1f}× "
              f"{t_torch:>11.2f} s {t_torch / t_un:>7.1f}×   (PyTorch: {iters} iterations, "
              f"max|∇| {g_max:.1e})")
    print("\nrel. error = ‖θ_patched − θ_retrained‖ / ‖θ_original − θ_retrained‖ (one Newton step)")


if __name__ == "__main__":
    main()
