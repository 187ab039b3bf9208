#!/usr/bin/env python3
"""DP-SGD on digits784 at several ε (docs/privacy.md, "Figures"): test accuracy, the
membership-audit AUC of `lethe compare`, and wall time against non-private training.

    /usr/bin/python3 bench/privacy/dp_digits.py --lethe build/tools/lethe [--n 10000]
        [--epsilons 0.5,1,2,4,8] [--epochs 10] [--batch-size 256] [--learning-rate 0.5]
        [--threads 2] [--json out.json]

Data: digits784 (bench/compare/common.py: scikit-learn's 1,797 digit scans upsampled to 24 × 24
at a random offset in 28 × 28), except that the base scans are split 80/20 **before** the
augmentation, so no test image is a shifted copy of a training image (bench/compare samples
both from one pool, which would make every test image a near-member). n training images,
n/5 test images. Softmax regression 784 → 10, cross-entropy, l2 1e-3, f64.

Rows: ε = ∞ is lethe train's default (L-BFGS to ‖∇L‖ ≤ 1e-9, no privacy); the others are
`lethe train --dp --target-epsilon ε` at δ = 1/n rounded down to a power of ten, C = 1,
and the given learning rate, epochs and expected batch size. The membership AUC is the loss-threshold
attack of `lethe compare` separating 1,000 random training examples (members) from the test
set (non-members): 0.5 = indistinguishable. One run, one seed, one machine.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "compare"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))
from common import run  # noqa: E402
from export_torch import export_dataset  # noqa: E402


def digits784_split(n_train, n_test, seed):
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    X8, y8 = load_digits(return_X_y=True)
    base = zoom(X8.reshape(-1, 8, 8) / 16.0, (1, 3, 3), order=1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y8))
    pools = order[: int(0.8 * len(y8))], order[int(0.8 * len(y8)):]

    def draw(pool, n):
        pick = pool[rng.integers(0, len(pool), size=n)]
        dx, dy = rng.integers(0, 5, size=n), rng.integers(0, 5, size=n)
        images = np.zeros((n, 28, 28))
        for i in range(n):
            images[i, dy[i]:dy[i] + 24, dx[i]:dx[i] + 24] = base[pick[i]]
        return np.clip(images, 0, 1).reshape(n, 784), y8[pick]

    return draw(pools[0], n_train), draw(pools[1], n_test)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lethe", required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--epsilons", default="0.5,1,2,4,8")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--learning-rate", default="0.5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    lethe = os.path.abspath(a.lethe)
    with tempfile.TemporaryDirectory() as tmp:
        (Xtr, ytr), (Xte, yte) = digits784_split(a.n, a.n // 5, a.seed)
        train, test = os.path.join(tmp, "train.npz"), os.path.join(tmp, "test.npz")
        export_dataset(train, Xtr, ytr, ids=np.arange(a.n))
        export_dataset(test, Xte, yte, ids=np.arange(10**6, 10**6 + len(yte)))
        members = os.path.join(tmp, "members.txt")
        with open(members, "w") as f:
            ids = np.random.default_rng(a.seed + 1).choice(a.n, size=min(1000, a.n), replace=False)
            f.write("".join(f"{i}\n" for i in sorted(ids)))
        spec = os.path.join(tmp, "softmax.json")
        with open(spec, "w") as f:
            json.dump({"format": "lethe/1", "layers": [{"type": "linear", "weight": "0.weight",
                       "bias": "0.bias", "out": 10}], "loss": "cross_entropy", "l2": 1e-3}, f)
        common = ["--spec", spec, "--data", train, "--threads", str(a.threads), "--quiet"]
        rows = []
        plain = os.path.join(tmp, "plain.safetensors")
        seconds, _ = run([lethe, "train", *common, "--out", plain])
        models = [("inf", plain, seconds, None)]
        for eps in a.epsilons.split(","):
            out = os.path.join(tmp, f"dp{eps}.safetensors")
            seconds, stdout = run([lethe, "train", "--dp", "--target-epsilon", eps, "--epochs",
                                   str(a.epochs), "--batch-size", str(a.batch_size),
                                   "--learning-rate", a.learning_rate, "--seed",
                                   str(a.seed), *common, "--out", out, "--json"])
            models.append((eps, out, seconds, json.loads(stdout)["dp"]))
        for eps, path, seconds, dp in models:
            _, stdout = run([lethe, "compare", "--model", path, "--reference", plain, "--train", train,
                             "--test", test, "--forget", members, "--threads", str(a.threads),
                             "--json", "--quiet"])
            c = json.loads(stdout)["model"]
            rows.append({"epsilon": eps, "seconds": seconds, "test_accuracy": c["test"]["accuracy"],
                         "train_accuracy": c["kept"]["accuracy"],
                         "membership_auc": c.get("membership_auc"),
                         "noise_multiplier": dp["noise_multiplier"] if dp else None,
                         "steps": dp["steps"] if dp else None,
                         "delta": dp["delta"] if dp else None})
    print(f"digits784 n = {a.n} (test {a.n // 5}), softmax 784 → 10, {a.threads} threads; DP-SGD "
          f"{a.epochs} epochs, expected batch {a.batch_size}, C = 1, learning rate {a.learning_rate}")
    print(f"{'epsilon':>8} {'sigma':>8} {'steps':>6} {'test acc':>9} {'train acc':>9} "
          f"{'member AUC':>10} {'time (s)':>9}")
    for r in rows:
        sigma = f"{r['noise_multiplier']:.3f}" if r["noise_multiplier"] else "-"
        print(f"{r['epsilon']:>8} {sigma:>8} {r['steps'] or '-':>6} {100 * r['test_accuracy']:8.2f}% "
              f"{100 * r['train_accuracy']:8.2f}% {r['membership_auc']:10.4f} {r['seconds']:9.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"n": a.n, "epochs": a.epochs, "batch_size": a.batch_size,
                       "learning_rate": a.learning_rate, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
