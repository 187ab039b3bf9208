#!/usr/bin/env python3
"""Side-by-side timings: lethe against what users run today, in one run, same machine and threads.

    /usr/bin/python3 bench/compare/compare.py --lethe build/tools/lethe [--n 10000] [--threads 2]
        [--data synthetic|digits784] [--no-unlearn] [--no-influence] [--no-torch-retrain]
        [--ks 1,0.01,0.1] [--tol 1e-8] [--rounds 3] [--torch-rounds 1] [--model trained.safetensors]
        [--lethe-solvers direct,kfac,none] [--torch expert,loop]

1. influence of all n training examples on m test examples, softmax regression on n × 784
   data (bench/compare/common.py), every CG at the same relative tolerance --tol: lethe's
   default direct solver (exact: the Hessian from 45 weighted Gram matrices, one Cholesky),
   its K-FAC-preconditioned CG (`kfac`) and plain CG (`none`), against two PyTorch versions:
   `expert`, written as an expert would (per-example gradients by functorch vmap(grad) at
   once, the gradient graph built once and every Hessian-vector product taken from it, scipy
   CG per test example), and `loop`, the way torch-influence does it (the same HVPs, a hand
   CG, per-example training gradients by autograd in a Python loop). Wall and CPU seconds
   (all threads: the robust measure on a shared machine) and the scores' agreement.
2. unlearning against retraining for k = 1 and 1% of n: `lethe unlearn` (one Newton step, CG)
   against `lethe train --forget` from scratch (same optimiser and tolerance as the original
   training) and against PyTorch L-BFGS retraining from scratch, with each result's relative
   parameter error to lethe's retrained optimum.
Prints a table; ratios are measured in this run only (this machine is shared and noisy).
"""
import argparse
import json
import os
import resource
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


def torch_expert_influence(W, b, X, y, Xt, yt, l2, tol, max_iter=1000):
    """What an expert writes today: per-example training gradients by functorch's vmap(grad),
    all n at once (no Python loop); the gradient graph built once (create_graph) and every
    Hessian-vector product taken from it by autograd.grad of ∇L·v (retain_graph); one scipy CG
    per test example at relative tolerance `tol` (‖r‖ ≤ tol·‖b‖, atol = 0); scores as one
    product of the m solutions with the n × p per-example gradients."""
    import scipy.sparse.linalg as sla
    from functorch import grad, vmap

    params = [W, b]
    loss = torch_objective(W, b, X, y, l2)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])
    p = flat_grad.numel()

    def hvp(v):
        v = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
        out = torch.autograd.grad(flat_grad @ v, params, retain_graph=True)
        return torch.cat([o.reshape(-1) for o in out]).numpy()

    H = sla.LinearOperator((p, p), matvec=hvp, dtype=np.float64)

    def example_loss(W_, b_, x, t):
        return torch.nn.functional.cross_entropy((x @ W_.T + b_)[None], t[None])

    per_example = vmap(grad(example_loss, argnums=(0, 1)), in_dims=(None, None, 0, 0))
    Wd, bd = W.detach(), b.detach()
    gW, gb = per_example(Wd, bd, Xt, yt)  # test gradients the same way
    G_test = torch.cat([gW.reshape(len(yt), -1), gb], 1).numpy()
    solutions = []
    for j in range(G_test.shape[0]):
        x, info = sla.cg(H, G_test[j], tol=tol, atol=0.0, maxiter=max_iter)
        if info != 0:
            print(f"  (scipy cg for test example {j}: info {info}, not converged)")
        solutions.append(x)
    S = torch.from_numpy(np.stack(solutions))  # m × p
    gW, gb = per_example(Wd, bd, X, y)  # n × C × d and n × C
    G = torch.cat([gW.reshape(X.shape[0], -1), gb], 1)  # n × p
    return (S @ G.T).numpy() / X.shape[0]


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
    ap.add_argument("--model", help="a model lethe trained on these data before (skips training)")
    ap.add_argument("--tol", type=float, default=1e-8,
                    help="relative CG tolerance of every influence solve (lethe cg and PyTorch)")
    ap.add_argument("--rounds", type=int, default=1, help="influence: rounds (medians reported)")
    ap.add_argument("--torch-rounds", type=int, default=1000,
                    help="influence: at most this many of the rounds run the PyTorch baselines")
    ap.add_argument("--lethe-solvers", default="direct,kfac,none",
                    help="influence: lethe runs among direct, kfac (cg), none (plain cg)")
    ap.add_argument("--torch", default="expert,loop",
                    help="influence: PyTorch baselines among expert (vmap(grad), scipy CG) and loop "
                         "(torch-influence style; ~8 min at 1e-8 on digits784 n = 10,000)")
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
    if args.model:  # trained before on the same data (they are deterministic in --data, --n)
        model = args.model
        print(f"softmax regression on {args.data} {args.n}×{d} → {classes}, l2 {l2}, "
              f"{args.threads} threads; model {model}")
    else:
        model = os.path.join(tmp, "model.safetensors")
        t_train, _ = run(L + ["train", "--spec", spec, "--data", train, "--out", model] + common)
        print(f"softmax regression on {args.data} {args.n}×{d} → {classes}, l2 {l2}, {args.threads} "
              f"threads; lethe train from scratch: {t_train:.2f} s")

    Xtr, ytr = torch.tensor(X), torch.tensor(y)
    if not args.no_influence:
        influence_vs_torch(args, L, common, model, train, test, tmp, X, Xt, yt, Xtr, ytr, classes, d,
                           l2)
    if args.no_unlearn:
        return
    unlearn_vs_retrain(args, L, spec, train, model, tmp, Xtr, ytr, classes, d, l2, common)


def influence_vs_torch(args, L, common, model, train, test, tmp, X, Xt, yt, Xtr, ytr, classes, d,
                       l2):
    """1. influence of all n training examples on m test examples, every method at the same
    relative tolerance args.tol (the direct solver is exact), `args.rounds` rounds in turn;
    medians and the spread (min–max) are printed, ratios are of the medians."""
    tol = args.tol
    lethe = {"direct": ["--solver", "direct"],
             "kfac": ["--solver", "cg", "--preconditioner", "kfac", "--cg-tolerance", str(tol)],
             "none": ["--solver", "cg", "--preconditioner", "none", "--cg-tolerance", str(tol)]}
    names = [f"lethe {k}" for k in args.lethe_solvers.split(",") if k]
    names += [f"torch {k}" for k in args.torch.split(",") if k]
    th = theta_of(model)
    W = torch.tensor(th[:classes * d].reshape(classes, d), requires_grad=True)
    b = torch.tensor(th[classes * d:], requires_grad=True)
    Xtt, ytt = torch.tensor(Xt), torch.tensor(yt)
    times = {k: [] for k in names}
    cpu = {k: [] for k in names}  # CPU seconds (all threads): robust where the machine is shared
    scores = {}
    for round_ in range(args.rounds):
        for name in names:
            kind, what = name.split()
            if kind == "torch" and round_ >= args.torch_rounds:
                continue
            if kind == "lethe":
                out = os.path.join(tmp, f"scores_{what}.npy")
                c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t_run, _ = run(L + ["influence", "--model", model, "--train", train, "--test", test,
                                    "--out", out] + lethe[what] + common)
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                c_run = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
                scores[name] = np.load(out)
            else:
                f = torch_expert_influence if what == "expert" else torch_cg_influence
                t, c = time.perf_counter(), time.process_time()
                scores[name] = f(W, b, Xtr, ytr, Xtt, ytt, l2, tol)
                t_run, c_run = time.perf_counter() - t, time.process_time() - c
            times[name].append(t_run)
            cpu[name].append(c_run)
            print(f"    {name}: {t_run:.2f} s wall, {c_run:.2f} s CPU", flush=True)
    ref_name = "lethe direct" if "lethe direct" in scores else names[0]
    ref = scores[ref_name]
    med = {k: float(np.median(v)) for k, v in times.items()}
    med_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    print(f"\ninfluence of n = {args.n} training examples on m = {args.m} test examples, "
          f"CG relative tolerance {tol:g} (direct: exact), median of {args.rounds} round(s) "
          f"(PyTorch: {min(args.rounds, args.torch_rounds)}):")
    label = {"lethe direct": "lethe --solver direct (the default)",
             "lethe kfac": "lethe --solver cg (K-FAC preconditioned)",
             "lethe none": "lethe --solver cg --preconditioner none",
             "torch expert": "PyTorch expert (vmap(grad), graph reused, scipy CG)",
             "torch loop": "PyTorch torch-influence style (autograd loop)"}
    torch_names = [k for k in names if k.startswith("torch")]
    for k in names:
        spread = f"[{min(times[k]):.2f}–{max(times[k]):.2f}]" if len(times[k]) > 1 else ""
        ratios = "  ".join(f"{med[t] / med[k]:6.1f}× ({med_cpu[t] / med_cpu[k]:.1f}× CPU) vs "
                           f"{t.split()[1]}" for t in torch_names if t != k)
        err = np.max(np.abs(scores[k] - ref)) / np.max(np.abs(ref))
        print(f"  {label[k]:<54} {med[k]:8.2f} s {spread:<16} CPU {med_cpu[k]:8.2f} s  {ratios}   "
              f"scores vs {ref_name}: {err:.1e}")


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
