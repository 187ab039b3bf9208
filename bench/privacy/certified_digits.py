#!/usr/bin/env python3
"""Certified removal on digits (docs/privacy.md, "Certified removal", figures): how many
single-example removals fit in an (ε, δ) budget for each σ, and the test accuracy at each σ.

    /usr/bin/python3 bench/privacy/certified_digits.py --lethe build/tools/lethe
        [--digit 3] [--sigmas 1,10,100] [--epsilon 1] [--delta 1e-5] [--l2 1e-3]
        [--max-removals 2000] [--seed 0] [--json out.json]

Task: examples/digits (1,437 training and 360 test 8 × 8 scans), one digit against the rest,
logistic regression (one linear layer 64 → 1, l2 as given, f64). Every row xᵢ is scaled to
‖xᵢ‖₂ = 1 (Guo et al.'s assumption; the bound does not need it, but the 0–16 pixel scale
would multiply the Taylor term by ~16³). For each σ: `lethe train --certified --sigma σ`,
then `lethe unlearn --certified` one random example at a time (a fixed random order), each
against the model the last one produced, with --epsilon-budget ε, until lethe refuses the
next removal (exit 1, nothing written). "removals" is how many were certified before that.
The ε = ∞ row is the plain `lethe train` model (no perturbation). One run, one seed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "examples", "digits")


def lethe(binary, *args, check=True):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"lethe {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def accuracy(binary, model, test):
    out = lethe(binary, "eval", "--model", model, "--data", test, "--json", "--quiet").stdout
    return json.loads(out)["accuracy"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lethe", required=True)
    ap.add_argument("--digit", type=int, default=3)
    ap.add_argument("--sigmas", default="1,10,100")
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--max-removals", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    d = tmp.name
    for part in ("train", "test"):
        z = np.load(os.path.join(DIGITS, f"{part}.npz"))
        X = z["X"] / np.maximum(np.linalg.norm(z["X"], axis=1, keepdims=True), 1e-300)
        np.savez(os.path.join(d, f"{part}.npz"), X=X, y=(z["y"] == a.digit).astype(np.int64), ids=z["ids"])
    train, test = os.path.join(d, "train.npz"), os.path.join(d, "test.npz")
    spec = os.path.join(d, "spec.json")
    with open(spec, "w") as f:
        json.dump({"format": "lethe/1", "loss": "logistic", "l2": a.l2,
                   "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 1}]}, f)
    ids = np.load(train)["ids"]
    order = np.random.default_rng(a.seed).permutation(ids)
    rows = []
    plain = os.path.join(d, "plain.safetensors")
    lethe(a.lethe, "train", "--spec", spec, "--data", train, "--out", plain, "--quiet")
    rows.append({"sigma": 0, "removals": None, "test_accuracy": accuracy(a.lethe, plain, test)})
    for sigma in [float(s) for s in a.sigmas.split(",")]:
        model = os.path.join(d, f"s{sigma}.safetensors")
        b = os.path.join(d, f"s{sigma}.b.npy")
        lethe(a.lethe, "train", "--certified", "--sigma", str(sigma), "--seed", str(a.seed + 1),
              "--spec", spec, "--data", train, "--out", model, "--quiet")
        acc = accuracy(a.lethe, model, test)
        removals, betas, residuals, current = 0, [], [], model
        while removals < a.max_removals:
            out = os.path.join(d, f"s{sigma}-{removals % 2}.safetensors")
            r = lethe(a.lethe, "unlearn", "--certified", "--model", current, "--b", b, "--train", train,
                      "--forget-ids", str(order[removals]), "--delta", str(a.delta), "--epsilon-budget",
                      str(a.epsilon), "--out", out, "--json", "--quiet", check=False)
            if r.returncode != 0:
                if "certified removal refused" not in r.stderr:
                    sys.exit(r.stderr.strip())
                break
            j = json.loads(r.stdout)
            betas.append(j["step"]["beta"])
            residuals.append(j["step"]["residual_measured"])
            removals += 1
            current = out
        rec = json.loads(lethe(a.lethe, "inspect", current, "--json").stdout)["certified"]
        rows.append({"sigma": sigma, "removals": removals, "test_accuracy": acc,
                     "test_accuracy_after": accuracy(a.lethe, current, test),
                     "epsilon_spent": rec["epsilon"], "mean_beta": float(np.mean(betas)) if betas else None,
                     "mean_residual": float(np.mean(residuals)) if residuals else None,
                     "capped": removals >= a.max_removals})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\ndigit {a.digit} vs rest, logistic, l2 {a.l2}, ε = {a.epsilon}, δ = {a.delta}")
    print("| σ | removals within ε | test accuracy | after the removals | mean bound β per removal | mean measured residual |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["sigma"] == 0:
            print(f"| none (plain train) | – | {100 * r['test_accuracy']:.2f} % | | | |")
        else:
            print(f"| {r['sigma']:g} | {r['removals']}{'+' if r['capped'] else ''} | "
                  f"{100 * r['test_accuracy']:.2f} % | {100 * r['test_accuracy_after']:.2f} % | "
                  f"{r['mean_beta']:.3g} | {r['mean_residual']:.3g} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
