#!/usr/bin/env python3
"""Regenerate the example data sets and specs under examples/ (see examples/README.md).

Everything comes from scikit-learn's bundled data sets (nothing is downloaded) with fixed
seeds, and the .npz archives carry fixed timestamps, so rerunning this script reproduces
the committed files byte for byte (given the same numpy/scikit-learn/zlib versions).

    /usr/bin/python3 examples/make_examples.py [--out examples]
"""

import argparse
import json
import os
import sys

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from export_torch import export_dataset  # noqa: E402

SPLIT_SEED = 0
FORGET_SEED = 1
# Test ids start here so that train and test ids never collide (a forget id then names
# exactly one example whichever file it is looked up in).
TEST_ID_BASE = 100000


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_forget(path, ids, n_train, what):
    with open(path, "w") as f:
        f.write(f"# Forget set for {what}: {len(ids)} of the {n_train} training ids (~1%),\n")
        f.write(f"# drawn uniformly without replacement by numpy.random.default_rng({FORGET_SEED}).\n")
        f.write("# One id per line (the 'ids' column of train.npz); '#' starts a comment.\n")
        for i in ids:
            f.write(f"{i}\n")


def split_and_write(out_dir, X, y, scale):
    """Stratified 80/20 split, `scale(X_train, X_test)` -> scaled pair, then train/test.npz."""
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=SPLIT_SEED)
    X_tr, X_te = scale(X_tr, X_te)
    n_tr, n_te = len(y_tr), len(y_te)
    export_dataset(os.path.join(out_dir, "train.npz"), X_tr, y_tr, np.arange(n_tr))
    export_dataset(os.path.join(out_dir, "test.npz"), X_te, y_te, TEST_ID_BASE + np.arange(n_te))
    rng = np.random.default_rng(FORGET_SEED)
    forget = np.sort(rng.choice(n_tr, size=max(1, round(0.01 * n_tr)), replace=False))
    return n_tr, n_te, forget


def linear(index, out):
    return {"type": "linear", "weight": f"{index}.weight", "bias": f"{index}.bias", "out": out}


def make_digits(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    data = load_digits()
    X = data.data.astype(np.float64)
    y = data.target.astype(np.int64)
    # Pixels are counts 0..16: a fixed division keeps them in [0, 1] with no fitted state.
    n_tr, n_te, forget = split_and_write(out_dir, X, y, lambda a, b: (a / 16.0, b / 16.0))
    write_json(os.path.join(out_dir, "softmax.json"), {
        "format": "lethe/1", "layers": [linear(0, 10)], "loss": "cross_entropy", "l2": 1e-3})
    write_json(os.path.join(out_dir, "mlp.json"), {
        "format": "lethe/1", "layers": [linear(0, 32), {"type": "tanh"}, linear(2, 10)],
        "loss": "cross_entropy", "l2": 1e-3})
    write_json(os.path.join(out_dir, "cnn.json"), cnn_spec())
    write_forget(os.path.join(out_dir, "forget.txt"), forget, n_tr, "examples/digits")
    print(f"{out_dir}: train {n_tr}, test {n_te}, forget {len(forget)}")


def cnn_spec():
    """A small CNN on the 8 × 8 images: conv 1→6 3×3 (padding 1), tanh, 2×2 average pooling,
    conv 6→12 3×3 (padding 1), tanh, global average pooling, linear 12→10: 850 parameters.

    Average, not max, pooling: the objective must be twice differentiable at the optimum for
    a Newton patch or an influence score to mean anything, and a max-pooled net's optimum
    tends to sit where two entries of a window tie (a kink), so L-BFGS stalls near
    ‖∇‖ ~ 1e-3 and never reaches a stationary point (tests/python/test_layer_parity.py)."""
    def conv(index, out):
        return {"type": "conv2d", "weight": f"{index}.weight", "bias": f"{index}.bias",
                "out": out, "kernel": 3, "padding": 1}
    return {"format": "lethe/1", "input": [1, 8, 8],
            "layers": [conv(0, 6), {"type": "tanh"}, {"type": "avgpool2d", "kernel": 2},
                       conv(3, 12), {"type": "tanh"}, {"type": "global_avgpool"}, linear(6, 10)],
            "loss": "cross_entropy", "l2": 1e-3}


def make_breast_cancer(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    data = load_breast_cancer()
    X = data.data.astype(np.float64)
    y = data.target.astype(np.int64)  # 1 = benign, 0 = malignant

    def standardize(X_tr, X_te):
        # Statistics from the training split only, so the test set stays unseen.
        mean = X_tr.mean(axis=0)
        std = X_tr.std(axis=0)
        return (X_tr - mean) / std, (X_te - mean) / std

    n_tr, n_te, forget = split_and_write(out_dir, X, y, standardize)
    write_json(os.path.join(out_dir, "logistic.json"), {
        "format": "lethe/1", "layers": [linear(0, 1)], "loss": "logistic", "l2": 1e-2})
    write_forget(os.path.join(out_dir, "forget.txt"), forget, n_tr, "examples/breast_cancer")
    print(f"{out_dir}: train {n_tr}, test {n_te}, forget {len(forget)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                        help="output directory (default: the directory of this script)")
    args = parser.parse_args()
    make_digits(os.path.join(args.out, "digits"))
    make_breast_cancer(os.path.join(args.out, "breast_cancer"))


if __name__ == "__main__":
    main()
