"""What bench/compare's scripts share: their data sets (no MNIST is available offline), and
running lethe and reading its models.

synthetic:  a Gaussian mixture, n × 784, 10 classes: centres 0.15·N(0, I), unit noise. Very
            well conditioned (L-BFGS trains a softmax regression in ~50 iterations).
digits784:  scikit-learn's 1,797 handwritten digits (8 × 8, real scans) upsampled to 24 × 24
            (bilinear), placed at a random offset of 0–4 pixels in a 28 × 28 frame, values in
            [0, 1], sampled with replacement. Like MNIST it has correlated pixels and an
            always-blank border, so its Hessians are as badly conditioned as real image data's.
"""
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools"))
from export_torch import read_safetensors  # noqa: E402


class Timeout(Exception):
    pass


def run(cmd, timeout=None):
    """(wall seconds, stdout) of a command that must succeed; Timeout after `timeout` s."""
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Timeout()
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return time.perf_counter() - t, r.stdout


def theta_of(path):
    """θ of a model file, flattened in file order, as float64."""
    tensors, _ = read_safetensors(path)
    return np.concatenate([np.asarray(t, np.float64).ravel() for t in tensors.values()])


def synthetic(n, seed, d=784, classes=10):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(12345).normal(size=(classes, d)) * 0.15
    y = rng.integers(0, classes, size=n)
    X = centers[y] + rng.normal(size=(n, d))
    return X, y


def digits784(n, seed):
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    X8, y8 = load_digits(return_X_y=True)
    base = zoom(X8.reshape(-1, 8, 8) / 16.0, (1, 3, 3), order=1)  # 1797 × 24 × 24
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(y8), size=n)
    dx, dy = rng.integers(0, 5, size=n), rng.integers(0, 5, size=n)
    images = np.zeros((n, 28, 28))
    for i in range(n):
        images[i, dy[i]:dy[i] + 24, dx[i]:dx[i] + 24] = base[pick[i]]
    return np.clip(images, 0, 1).reshape(n, 784), y8[pick]


def make(name, n, seed):
    if name == "synthetic":
        return synthetic(n, seed)
    if name == "digits784":
        return digits784(n, seed)
    raise SystemExit(f"unknown data set {name} (synthetic, digits784)")
