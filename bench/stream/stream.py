#!/usr/bin/env python3
"""A stream of single-id deletion requests against retraining from scratch.

    /usr/bin/python3 bench/stream/stream.py --lethe build/tools/lethe --threads 2 \
        [--n 10000] [--requests 100] [--baseline-requests 100] [--process-requests 100] \
        [--model M.safetensors]

digits784 (bench/compare/common.py), softmax regression 784 → 10, l2 = 1e-3, f64. Trains the
model (or takes --model, trained before on the same data), then runs `--requests` sequential
`lethe unlearn --forget-ids ID --ledger --cache` commands, each on the previous one's output,
and `--baseline-requests` more without --cache (the same ids, from the same model); and
the same `--requests` ids served by ONE process, `lethe unlearn --requests FILE --ledger`
(the data loaded once, the dense preconditioner built once and reused), its wall and CPU
time for the whole run (start-up, loading, the preconditioner, every commit) divided by the
number of requests; times every command's wall time; retrains from scratch without all the ids (`lethe train --forget`,
timed); reports the mean time per request, the ratio, the final model's relative parameter
error against the retrained one, and `lethe ledger verify` on the ledger.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compare"))
from common import make, run, theta_of  # noqa: E402


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stream(L, model, train, ids, tmp, name, extra, common):
    """Runs the requests; per request: wall s, CPU s (user + sys), CG iterations, K-FAC setup s."""
    times, cpu, setup, iterations, cached = [], [], [], [], 0
    ledger = os.path.join(tmp, name + ".jsonl")
    parent = model
    for j, i in enumerate(ids):
        child = os.path.join(tmp, f"{name}{j + 1}.safetensors")
        c0 = cpu_children()
        t, out = run(L + ["unlearn", "--model", parent, "--train", train, "--forget-ids", str(i),
                          "--out", child, "--ledger", ledger, "--json"] + extra + common)
        rec = json.loads(out)
        times.append(t)
        cpu.append(cpu_children() - c0)
        setup.append(sum(s["solve"].get("setup_seconds", 0) for s in rec["steps"]))
        iterations.append(sum(s["solve"]["iterations"] for s in rec["steps"]))
        cached += any(s["solve"].get("preconditioner") == "kfac (cached)" for s in rec["steps"])
        parent = child
    return parent, ledger, np.array(times), np.array(cpu), np.array(setup), iterations, cached


def serve(L, model, train, ids, tmp, common, extra=(), first=1, name="s"):
    """All the requests in one `lethe unlearn --requests` process: its whole wall and CPU time,
    and the per-request records (JSON lines). Outputs s{first}, s{first + 1}, …"""
    requests = os.path.join(tmp, f"requests{first}.txt")
    with open(requests, "w") as f:
        f.write("".join(f"{i} {os.path.join(tmp, f'{name}{j + first}.safetensors')}\n" for j, i in enumerate(ids)))
    ledger = os.path.join(tmp, f"{name}.jsonl")
    c0 = cpu_children()
    t, out = run(L + ["unlearn", "--model", model, "--train", train, "--requests", requests,
                      "--ledger", ledger, "--json"] + list(extra) + common)
    cpu = cpu_children() - c0
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(records) == len(ids), (len(records), len(ids))
    return os.path.join(tmp, f"{name}{first + len(ids) - 1}.safetensors"), ledger, t, cpu, records


def summary(label, recs, t, cpu):
    its = [sum(s["solve"]["iterations"] for s in r["steps"]) for r in recs]
    setup = sum(s["solve"].get("setup_seconds", 0) for r in recs for s in r["steps"])
    pre = sorted({s["solve"].get("preconditioner", "none") for r in recs for s in r["steps"]})
    carried = sum(r.get("kept_gradient") == "carried" for r in recs)
    later = [r["seconds"] for r in recs[1:]]
    k = len(recs)
    print(f"{label} ({k}): {t:.2f} s wall, CPU {cpu:.2f} s: mean {t / k:.3f} s wall, {cpu / k:.3f} s CPU "
          f"per request; first request {recs[0]['seconds']:.2f} s, later ones {np.mean(later):.3f} s mean "
          f"(CPU {np.mean([r['cpu_seconds'] for r in recs[1:]]):.3f} s); CG iterations mean "
          f"{np.mean(its):.2f} (max {max(its)}); preconditioner {', '.join(pre)}, setup "
          f"{setup:.2f} s in all; kept gradient carried {carried} of {k}; Newton steps "
          f"{sum(len(r['steps']) for r in recs)} (at most {max(len(r['steps']) for r in recs)} a "
          f"request); largest ‖∇L₋ₛ‖ after a request {max(r['kept_grad_norm_after'] for r in recs):.2e}",
          flush=True)


def retrain(L, spec, train, ids, tmp, common, name):
    forget = os.path.join(tmp, f"forget_{name}.txt")
    with open(forget, "w") as f:
        f.write("".join(f"{i}\n" for i in ids))
    retrained = os.path.join(tmp, f"retrained_{name}.safetensors")
    c0 = cpu_children()
    t, _ = run(L + ["train", "--spec", spec, "--data", train, "--forget", forget, "--out", retrained] + common)
    return retrained, t, cpu_children() - c0


def cold_and_warm(L, model, spec, train, ids, tmp, common, n, steps="1"):
    """--warm: a cold stream (ids[:n], --cache: the dense factor built by its first request and
    written next to it), then a warm one (ids[n:2n], from the cold one's last model: the factor
    and the kept gradient read from its cache), each against retraining without every id
    forgotten so far, in the same run."""
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    last_c, ledger, t_c, c_c, recs_c = serve(L, model, train, ids[:n], tmp, common, ["--cache", "--steps", steps])
    summary("cold stream, one process, --cache", recs_c, t_c, c_c)
    re_c, t_rc, c_rc = retrain(L, spec, train, ids[:n], tmp, common, "cold")
    last_w, _, t_w, c_w, recs_w = serve(L, last_c, train, ids[n:2 * n], tmp, common, ["--cache", "--steps", steps],
                                      first=n + 1)
    summary("warm stream, one process, --cache (the cold stream's factor)", recs_w, t_w, c_w)
    re_w, t_rw, c_rw = retrain(L, spec, train, ids[:2 * n], tmp, common, "warm")
    for label, last, re, t_re, c_re, t, c, k in (("cold", last_c, re_c, t_rc, c_rc, t_c, c_c, n),
                                                 ("warm", last_w, re_w, t_rw, c_rw, t_w, c_w, n)):
        tr = theta_of(re)
        err = np.linalg.norm(theta_of(last) - tr) / np.linalg.norm(tr)
        print(f"{label}: retraining without the {n if label == 'cold' else 2 * n} ids {t_re:.2f} s "
              f"(CPU {c_re:.2f} s); ratio retraining / mean request: wall {t_re / (t / k):.1f}×, "
              f"CPU {c_re / (c / k):.1f}×; ‖θ − θ_retrained‖/‖θ_retrained‖ = {err:.2e}", flush=True)
    t_v, _ = run(L + ["ledger", "verify", ledger, "--models", tmp])
    print(f"ledger of {2 * n} requests verified in {t_v:.2f} s; load average at end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lethe", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--baseline-requests", type=int, default=100,
                    help="requests of the same stream without --cache (0: none)")
    ap.add_argument("--process-requests", type=int, default=None,
                    help="requests served by one process (--requests FILE; default: --requests; 0: none)")
    ap.add_argument("--per-process", type=int, default=None,
                    help="requests of the per-process stream with --cache (default: --requests; 0: none)")
    ap.add_argument("--model", help="softmax model trained before on the same data (--n)")
    ap.add_argument("--steps", default="1",
                    help="--warm: each request's --steps (a count, or auto: until ‖∇L₋ₛ‖ ≤ 1e-5)")
    ap.add_argument("--warm", action="store_true",
                    help="only a cold and a warm one-process stream with --cache (--requests each), "
                         "each against retraining")
    args = ap.parse_args()
    L = [os.path.abspath(args.lethe)]
    common = ["--threads", str(args.threads), "--quiet"]
    tmp = tempfile.mkdtemp()
    X, y = make("digits784", args.n, 0)
    train = os.path.join(tmp, "train.npz")
    np.savez(train, X=X, y=y.astype(np.int64), ids=np.arange(args.n, dtype=np.int64))
    spec = os.path.join(tmp, "spec.json")
    with open(spec, "w") as f:
        json.dump({"format": "lethe/1", "layers": [{"type": "linear", "weight": "0.weight",
                   "bias": "0.bias", "out": 10}], "loss": "cross_entropy", "l2": 1e-3}, f)
    model = args.model or os.path.join(tmp, "model.safetensors")
    if not args.model:
        run(L + ["train", "--spec", spec, "--data", train, "--out", model] + common)
    ids = np.random.default_rng(3).choice(args.n, args.requests, replace=False)
    if args.warm:  # the warm stream's ids: as many more, none of the cold stream's
        rest = np.setdiff1d(np.arange(args.n), ids)
        ids = np.concatenate([ids, np.random.default_rng(4).choice(rest, args.requests, replace=False)])
    print(f"digits784 n = {args.n}, softmax 784 → 10, {args.threads} threads; "
          f"{args.requests} single-id requests", flush=True)
    if args.warm:
        cold_and_warm(L, model, spec, train, ids, tmp, common, args.requests, args.steps)
        return
    n_serve = args.requests if args.process_requests is None else args.process_requests
    n_cache = args.requests if args.per_process is None else args.per_process
    results = {}
    if n_serve:
        last_s, ledger_s, t_s, c_s, recs = serve(L, model, train, ids[:n_serve], tmp, common)
        its = [sum(s["solve"]["iterations"] for s in r["steps"]) for r in recs]
        setup = sum(s["solve"].get("setup_seconds", 0) for r in recs for s in r["steps"])
        pre = sorted({s["solve"].get("preconditioner", "none") for r in recs for s in r["steps"]})
        print(f"one process, --requests ({n_serve}): {t_s:.2f} s wall, CPU {c_s:.2f} s: mean "
              f"{t_s / n_serve:.3f} s wall, {c_s / n_serve:.3f} s CPU per request; CG iterations mean "
              f"{np.mean(its):.2f} (max {max(its)}), preconditioner {', '.join(pre)}, its setup "
              f"{setup:.2f} s (wall) in all", flush=True)
        results["serve"] = (last_s, ledger_s, t_s / n_serve, c_s / n_serve, n_serve)
    if not n_cache:
        forget = os.path.join(tmp, "forget.txt")
        with open(forget, "w") as f:
            f.write("".join(f"{i}\n" for i in ids[:n_serve]))
        retrained = os.path.join(tmp, "retrained.safetensors")
        c0 = cpu_children()
        t_re, _ = run(L + ["train", "--spec", spec, "--data", train, "--forget", forget, "--out",
                           retrained] + common)
        c_re = cpu_children() - c0
        tr = theta_of(retrained)
        last_s, ledger_s, tw, tc, k = results["serve"]
        err = np.linalg.norm(theta_of(last_s) - tr) / np.linalg.norm(tr)
        moved = np.linalg.norm(theta_of(model) - tr) / np.linalg.norm(tr)
        t_v, _ = run(L + ["ledger", "verify", ledger_s, "--models", tmp])
        print(f"retraining from scratch without the {k} ids: {t_re:.2f} s (CPU {c_re:.2f} s)")
        print(f"ratio (retrain / mean request), one process: wall {t_re / tw:.1f}×, CPU {c_re / tc:.1f}×")
        print(f"after {k} requests: ‖θ − θ_retrained‖/‖θ_retrained‖ = {err:.2e} (the original: "
              f"{moved:.2e}); ledger verified in {t_v:.2f} s")
        return
    ids = ids[:n_cache]
    last, ledger, t_cache, c_cache, s_cache, it_cache, cached = stream(L, model, train, ids, tmp, "c", ["--cache"], common)
    print(f"with --cache: mean {t_cache.mean():.3f} s per request (median {np.median(t_cache):.3f}, "
          f"first {t_cache[0]:.3f}), CPU {c_cache.mean():.3f} s, K-FAC setup {s_cache.mean():.3f} s, "
          f"CG iterations mean {np.mean(it_cache):.1f}, "
          f"{cached} of {len(ids)} reused the cached preconditioner", flush=True)
    t_base = None
    if args.baseline_requests:
        _, _, t_base, c_base, s_base, it_base, _ = stream(L, model, train, ids[:args.baseline_requests], tmp, "b", [], common)
        print(f"without --cache ({len(t_base)} requests): mean {t_base.mean():.3f} s per request "
              f"(median {np.median(t_base):.3f}), CPU {c_base.mean():.3f} s, K-FAC setup "
              f"{s_base.mean():.3f} s, CG iterations mean {np.mean(it_base):.1f}", flush=True)
    forget = os.path.join(tmp, "forget.txt")
    with open(forget, "w") as f:
        f.write("".join(f"{i}\n" for i in ids))
    retrained = os.path.join(tmp, "retrained.safetensors")
    c0 = cpu_children()
    t_re, _ = run(L + ["train", "--spec", spec, "--data", train, "--forget", forget, "--out",
                       retrained] + common)
    c_re = cpu_children() - c0
    tr = theta_of(retrained)
    err = np.linalg.norm(theta_of(last) - tr) / np.linalg.norm(tr)
    t_v, _ = run(L + ["ledger", "verify", ledger, "--models", tmp])
    print(f"retraining from scratch without the {len(ids)} ids: {t_re:.2f} s (CPU {c_re:.2f} s)")
    if "serve" in results:
        last_s, ledger_s, tw, tc, k = results["serve"]
        err_s = np.linalg.norm(theta_of(last_s) - tr) / np.linalg.norm(tr) if k == len(ids) else float("nan")
        run(L + ["ledger", "verify", ledger_s, "--models", tmp])
        print(f"one process (--requests): ratio wall {t_re / tw:.1f}×, CPU {c_re / tc:.1f}×; "
              f"‖θ − θ_retrained‖/‖θ_retrained‖ = {err_s:.2e}; its ledger verified")
    print(f"ratio (retrain / mean request), wall: with --cache {t_re / t_cache.mean():.1f}×"
          + (f", without {t_re / t_base.mean():.1f}×" if t_base is not None else "")
          + f"; CPU: with --cache {c_re / c_cache.mean():.1f}×"
          + (f", without {c_re / c_base.mean():.1f}×" if t_base is not None else ""))
    print(f"after {len(ids)} requests: ‖θ − θ_retrained‖/‖θ_retrained‖ = {err:.2e}; "
          f"ledger verified in {t_v:.2f} s")


if __name__ == "__main__":
    main()
