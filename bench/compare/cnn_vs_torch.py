#!/usr/bin/env python3
"""lethe against PyTorch on a CNN and a text model, side by side in one run, same threads.

    /usr/bin/python3 bench/compare/cnn_vs_torch.py --build build [--threads 2] [--n 10000]
        [--dtypes f64,f32] [--reps 3] [--no-influence] [--tol 1e-6]

1. Gradient and Hessian-vector product of the mean loss (+ l2), over all n examples:
   - lenet: conv 1→16 k5, relu, maxpool 2, conv 16→32 k5, relu, maxpool 2, flatten, linear
     512→120, relu, linear 120→84, relu, linear 84→10 (85,822 parameters), on n random
     28 × 28 images in [0, 1] with random labels (the cost does not depend on the values);
   - text: examples/text/bag.json (embedding_bag 2002×16 mean, padding 0 → linear 16→8) on
     examples/text/train.npz, with a PyTorch-initialised model.
   lethe: bench/bench_model.cc (the engine timed directly, Google Benchmark; see there for
   Gradient / HvpCold / HvpCached). PyTorch: autograd; HVP cold = forward, gradient with
   create_graph, then the gradient of ∇L·v (double backward); HVP cached = only the last step,
   from a graph built once (what CG does). Median of --reps for PyTorch.
   GFLOP/s count only the products' flops (2·m·n·k each: the conv layers' im2col GEMMs and
   the linear layers, from the shapes); they are set against the backend's GEMM rate
   (1024³, measured in the same run), and the conv products alone are timed by
   bench/bench_conv.cc at this model's shapes (batch 2048, the objective's batch).
2. Influence of all training examples on m = 10 test examples on the digits CNN
   (examples/digits/cnn.json, trained by lethe here), CG at the same relative tolerance on
   both sides: `lethe influence --solver cg` against PyTorch written the expert's way
   (per-example gradients by functorch vmap(grad), the gradient graph built once, scipy CG
   per test example, scores as one product). Scores compared.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)
from common import run  # noqa: E402
from export_torch import export_dataset, export_model, load_model  # noqa: E402

L2 = 1e-3
DTYPES = {"f64": torch.float64, "f32": torch.float32}


def lenet():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(512, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def text_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.EmbeddingBag(2002, 16, mode="mean", padding_idx=0), nn.Linear(16, 8))


class EmbeddingBagMean(nn.Module):
    """nn.EmbeddingBag(mode="mean", padding_idx=0) as F.embedding and a masked mean: the same
    function (an all-padding row gives zeros), but twice differentiable. torch 1.13 has no
    double backward through EmbeddingBag (`_embedding_bag_dense_backward`), so the HVP is
    timed on this form; its weight is the bag's."""

    def __init__(self, bag):
        super().__init__()
        self.weight = bag.weight

    def forward(self, X):
        mask = (X != 0).unsqueeze(-1).to(self.weight.dtype)
        rows = nn.functional.embedding(X, self.weight) * mask
        return rows.sum(1) / mask.sum(1).clamp(min=1)


def twice_differentiable(model):
    return nn.Sequential(*[EmbeddingBagMean(m) if isinstance(m, nn.EmbeddingBag) else m
                           for m in model])


def product_flops(model, in_shape, n):
    """Matrix-product flops of one gradient and one HVP over n examples, and those of the conv
    layers alone, from the shapes: a conv layer is a GEMM of (n·P) × K by K × out (P output
    positions, K = C·kh·kw), a linear one n × in by in × out. Gradient: forward, ∇W, δ_in
    (none below the first layer with parameters); HVP (cold): forward, δ_in, R-forward,
    R-backward as in bench/bench_problems.h (3 products for the first layer, 8 above)."""
    x = torch.zeros((1,) + tuple(in_shape), dtype=next(model.parameters()).dtype)
    grad = hvp = conv = 0.0
    first = True
    for m in model:
        y = m(x)
        f = 0.0
        if isinstance(m, nn.Conv2d):
            P, K = y.shape[2] * y.shape[3], m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            f = 2.0 * n * P * K * m.out_channels
            conv += f * (2 if first else 3)
        elif isinstance(m, nn.Linear):
            f = 2.0 * n * m.in_features * m.out_features
        if f:
            grad += f * (2 if first else 3)
            hvp += f * (3 if first else 8)
            first = False
        x = y
    return grad, hvp, conv


def torch_objective(model, X, y):
    params = list(model.parameters())
    loss = nn.functional.cross_entropy(model(X), y)
    return loss + 0.5 * L2 * sum(p.pow(2).sum() for p in params), params


def time_torch(model, X, y, reps):
    """Median (wall, CPU) seconds of: gradient, HVP cold, HVP from a graph built once; and
    ‖∇L‖. CPU: the process's, all threads (time.process_time)."""
    def grad():
        obj, params = torch_objective(model, X, y)
        return torch.autograd.grad(obj, params)

    v = [p.detach().clone() for p in model.parameters()]  # v = θ, as bench_model.cc

    def hvp_cold():
        obj, params = torch_objective(model, X, y)
        g = torch.autograd.grad(obj, params, create_graph=True)
        return torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), params)

    obj, params = torch_objective(model, X, y)
    g_graph = torch.autograd.grad(obj, params, create_graph=True)

    def hvp_cached():
        return torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g_graph, v)), params,
                                   retain_graph=True)

    out = {}
    for name, f in (("Gradient", grad), ("HvpCold", hvp_cold), ("HvpCached", hvp_cached)):
        f()  # warm-up (allocator, oneDNN primitives)
        ts, cs = [], []
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            f()
            ts.append(time.perf_counter() - t)
            cs.append(time.process_time() - c)
        out[name] = (float(np.median(ts)), float(np.median(cs)))
    gnorm = float(torch.sqrt(sum((gi.double() ** 2).sum() for gi in grad())))
    return out, gnorm


def gemm_rate_torch(dtype, threads, reps=3):
    A = torch.randn(1024, 1024, dtype=dtype)
    B = torch.randn(1024, 1024, dtype=dtype)
    A @ B
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        A @ B
        ts.append(time.perf_counter() - t)
    return 2 * 1024 ** 3 / min(ts) / 1e9


def run_bench(binary, args, threads, extra=(), reuse=False):
    """Google Benchmark's results (kept in $TMPDIR/<binary>.json; reuse: read them from there
    instead of running, e.g. after a failure further on)."""
    kept = os.path.join(tempfile.gettempdir(), os.path.basename(binary) + ".json")
    if reuse and os.path.exists(kept):
        with open(kept) as f:
            return Results(json.load(f)["benchmarks"])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r = subprocess.run([binary, "--benchmark_format=json"] + list(extra) + list(args),
                       capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"failed: {binary}\n{r.stderr}")
    with open(kept, "w") as f:
        f.write(r.stdout)
    return Results(b for b in json.loads(r.stdout)["benchmarks"])


class Results(dict):
    """Google Benchmark results by name; a name's suffixes (/real_time, /process_time) may be
    left off."""
    def __init__(self, benchmarks):
        super().__init__((b["name"], b) for b in benchmarks)

    def __getitem__(self, prefix):
        for name, b in self.items():
            if name == prefix or name.startswith(prefix + "/"):
                return b
        raise KeyError(prefix)


def seconds(b, key="real_time"):
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
    return b[key] * scale


def grad_and_hvp(args, tmp):
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    X = rng.random((args.n, 1, 28, 28))
    y = rng.integers(0, 10, args.n)
    problems = {}
    path = os.path.join(tmp, "lenet.safetensors")
    export_model(lenet().double(), path, "cross_entropy", L2, input_shape=(1, 28, 28))
    export_dataset(os.path.join(tmp, "images.npz"), X, y, compress=False)
    problems["lenet"] = (path, os.path.join(tmp, "images.npz"), X, y, (1, 28, 28))
    text = np.load(os.path.join(ROOT, "examples", "text", "train.npz"))
    path = os.path.join(tmp, "text.safetensors")
    export_model(text_model().double(), path, "cross_entropy", L2, input_shape=text["X"].shape[1:])
    problems["text"] = (path, os.path.join(ROOT, "examples", "text", "train.npz"), text["X"],
                        text["y"], None)

    bench = os.path.join(args.build, "bench", "lethe_bench_model")
    specs = [f"{k}={v[0]},{v[1]}" for k, v in problems.items()]
    print(f"running {bench} on {args.threads} thread(s) ...", flush=True)
    lethe = run_bench(bench, specs, args.threads, [f"--benchmark_min_time={args.min_time}"],
                      args.reuse_bench)
    gemm = {d: 2 * 1024 ** 3 / seconds(lethe[f"GEMM/{d}/1024x1024x1024"]) / 1e9
            for d in ("f64", "f32")}
    tgemm = {d: gemm_rate_torch(DTYPES[d], args.threads) for d in ("f64", "f32")}
    print(f"\nGEMM 1024³ on {args.threads} thread(s): lethe's backend (Eigen) "
          f"f64 {gemm['f64']:.1f} GFLOP/s, f32 {gemm['f32']:.1f} GFLOP/s; "
          f"torch.mm f64 {tgemm['f64']:.1f}, f32 {tgemm['f32']:.1f} GFLOP/s")

    conv_bench = os.path.join(args.build, "bench", "lethe_bench_conv")
    conv = run_bench(conv_bench, [], args.threads, [f"--benchmark_min_time={args.min_time}"],
                     args.reuse_bench)
    print("\nconv products alone (bench/bench_conv.cc, batch 2048, this model's conv shapes), "
          "GFLOP/s and share of the GEMM rate:")
    for name, b in dict.items(conv):
        d = "f32" if "<float>" in name else "f64"
        print(f"  {name:<34} {seconds(b) * 1e3:8.2f} ms  {b['GFLOP/s']:6.1f} GFLOP/s  "
              f"{b['GFLOP/s'] / gemm[d]:5.0%} of GEMM {d}")

    for name, (path, _, X, y, shape) in problems.items():
        model = load_model(path)
        tokens = shape is None
        n = len(y)
        flops = product_flops(model, shape, n) if not tokens else (0, 0, 0)
        eval_json = run([os.path.join(args.build, "tools", "lethe"), "eval", "--model", path,
                         "--data", problems[name][1], "--json", "--quiet",
                         "--threads", str(args.threads)])[1]
        lethe_gnorm = json.loads(eval_json)["grad_norm"]
        print(f"\n{name}: n = {n}, p = {sum(p.numel() for p in model.parameters())}, "
              f"{args.threads} thread(s); seconds per product (lethe: Google Benchmark; "
              f"PyTorch: median of {args.reps})")
        print(f"  {'':<18} {'lethe':>9} {'PyTorch':>9} {'torch/lethe':>12} {'lethe GFLOP/s':>14} "
              f"{'of GEMM':>8}   CPU s: {'lethe':>8} {'PyTorch':>8} {'ratio':>7}")
        for dname in args.dtypes.split(","):
            dtype = DTYPES[dname]
            m = twice_differentiable(model.to(dtype))
            Xt = torch.tensor(X) if tokens else torch.tensor(X, dtype=dtype)
            yt = torch.tensor(y, dtype=torch.int64)
            t_torch, gnorm = time_torch(m, Xt, yt, args.reps)
            if dname == "f64":
                print(f"  ‖∇L‖: lethe eval {lethe_gnorm:.12e}, PyTorch {gnorm:.12e} "
                      f"(rel. diff {abs(lethe_gnorm - gnorm) / gnorm:.1e})")
            for what, f in (("Gradient", flops[0]), ("HvpCold", flops[1]), ("HvpCached", None)):
                b = lethe[f"{name}/{dname}/{what}"]
                tl, cl = seconds(b), seconds(b, "cpu_time")
                tt, ct = t_torch[what]
                rate = (f"{f / tl / 1e9:14.1f} {f / tl / 1e9 / gemm[dname]:8.0%}" if f
                        else f"{'':14} {'':8}")
                print(f"  {dname} {what:<14} {tl:9.4f} {tt:9.4f} {tt / tl:11.2f}× {rate}   "
                      f"{'':7}{cl:8.3f} {ct:8.3f} {ct / cl:6.2f}×")
        model.double()


def influence(args, tmp):
    """2. influence on the digits CNN, lethe CG against PyTorch's expert version."""
    import scipy.sparse.linalg as sla
    from functorch import grad, make_functional, vmap

    torch.set_num_threads(args.threads)
    L = [os.path.join(args.build, "tools", "lethe")]
    common = ["--threads", str(args.threads), "--quiet"]
    ex = os.path.join(ROOT, "examples", "digits")
    train, test = os.path.join(ex, "train.npz"), os.path.join(ex, "test.npz")
    if args.model:  # trained before (lethe train --spec examples/digits/cnn.json ...)
        model_path, t_train = args.model, float("nan")
    else:
        model_path = os.path.join(tmp, "cnn.safetensors")
        t_train, _ = run(L + ["train", "--spec", os.path.join(ex, "cnn.json"), "--data", train,
                              "--out", model_path] + common)
    tr, te = np.load(train), np.load(test)
    m = args.m
    test_ids = te["ids"][:m]
    model = load_model(model_path).double()
    n = len(tr["y"])
    print(f"\ninfluence: digits CNN (examples/digits/cnn.json, p = "
          f"{sum(p.numel() for p in model.parameters())}), n = {n}, m = {m}, CG relative "
          f"tolerance {args.tol:g} on both sides; lethe train: {t_train:.1f} s")
    out = os.path.join(tmp, "scores.npy")
    results = {}
    for pre in args.preconditioners.split(","):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t, _ = run(L + ["influence", "--model", model_path, "--train", train, "--test", test,
                        "--test-ids", ",".join(map(str, test_ids)), "--out", out, "--solver",
                        "cg", "--preconditioner", pre, "--cg-tolerance", str(args.tol)] + common)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        results[f"lethe cg ({pre})"] = (t, c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime,
                                        np.load(out))

    X = torch.tensor(tr["X"]).reshape(-1, 1, 8, 8)
    y = torch.tensor(tr["y"])
    Xt = torch.tensor(te["X"][:m]).reshape(-1, 1, 8, 8)
    ytt = torch.tensor(te["y"][:m])
    t0, c0 = time.perf_counter(), time.process_time()
    obj, params = torch_objective(model, X, y)
    g = torch.autograd.grad(obj, params, create_graph=True)
    flat = torch.cat([gi.reshape(-1) for gi in g])
    p = flat.numel()

    def hvp(v):
        v = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
        o = torch.autograd.grad(flat @ v, params, retain_graph=True)
        return torch.cat([oi.reshape(-1) for oi in o]).numpy()

    H = sla.LinearOperator((p, p), matvec=hvp, dtype=np.float64)
    fmodel, fparams = make_functional(model)

    def example_loss(ps, x, t):
        return nn.functional.cross_entropy(fmodel(ps, x[None]), t[None])

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))
    fparams = tuple(q.detach() for q in fparams)

    def flat_grads(Xb, yb):
        return torch.cat([q.reshape(len(yb), -1) for q in per_example(fparams, Xb, yb)], 1)

    G_test = flat_grads(Xt, ytt).numpy()
    sols = []
    for j in range(m):
        x, info = sla.cg(H, G_test[j], tol=args.tol, atol=0.0, maxiter=1000)
        if info != 0:
            print(f"  (scipy cg for test example {j}: info {info}, not converged)")
        sols.append(x)
    S = torch.from_numpy(np.stack(sols))
    scores = (S @ flat_grads(X, y).T).numpy() / n
    results["PyTorch expert"] = (time.perf_counter() - t0, time.process_time() - c0, scores)
    ref = results["PyTorch expert"][2]
    tt, tc = results["PyTorch expert"][:2]
    for k, (t, c, s) in results.items():
        # lethe's sign convention (docs/influence.md) may differ from −gᵀH⁻¹g: compare |·|.
        err = min(np.max(np.abs(s - ref)), np.max(np.abs(s + ref))) / np.max(np.abs(ref))
        print(f"  {k:<18} {t:8.2f} s wall {c:8.2f} s CPU   vs PyTorch expert: "
              f"{tt / t:6.1f}× wall {tc / c:6.1f}× CPU   max score diff {err:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--m", type=int, default=10)
    ap.add_argument("--dtypes", default="f64,f32")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=1.0, help="Google Benchmark min time (s)")
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--model", help="part 2: the digits CNN trained before (skips lethe train)")
    ap.add_argument("--no-products", action="store_true", help="skip part 1")
    ap.add_argument("--preconditioners", default="none,kfac",
                    help="part 2: lethe's CG runs, by --preconditioner")
    ap.add_argument("--reuse-bench", action="store_true",
                    help="part 1: the Google Benchmark results of the last run (same --n) "
                         "instead of running them again")
    ap.add_argument("--no-influence", action="store_true", help="skip part 2")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    if not args.no_products:
        grad_and_hvp(args, tmp)
    if not args.no_influence:
        influence(args, tmp)


if __name__ == "__main__":
    main()
