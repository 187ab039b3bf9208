"""What the stream tests share (test_stream.py, test_stream_serve.py, test_dense_cache.py):
the small problem they serve requests on, file hashes, and a model's θ as one vector."""
import hashlib
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "examples", "digits")
sys.path.insert(0, os.path.join(ROOT, "tools"))
from export_torch import read_safetensors  # noqa: E402


def save_digits600(path, save=np.savez):
    """The first 600 rows of digits (p = 650 for the softmax: 100 requests in seconds) to
    PATH, by `save` (np.savez: stored members; np.savez_compressed: the same rows in a file
    of another SHA-256)."""
    data = np.load(os.path.join(DIGITS, "train.npz"))
    save(path, X=data["X"][:600], y=data["y"][:600], ids=data["ids"][:600])
    return path


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def theta(path):
    tensors, _ = read_safetensors(path)
    return np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in tensors.values()])


def run_lethe(lethe, args, check=True, cwd=None, env=None):
    """lethe ARGS; with check, a failure raises with its stderr."""
    r = subprocess.run([lethe, *args], capture_output=True, text=True, cwd=cwd, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r
