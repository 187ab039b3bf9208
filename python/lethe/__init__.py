"""lethe from Python: the same engine as the ``lethe`` command, in memory (docs/python.md).

    import lethe, numpy as np
    model = lethe.Model("examples/digits/model.safetensors")
    train = lethe.Data(X, y, ids)                # numpy arrays, viewed without a copy
    r = lethe.influence(model, train, (X_test, y_test), test_ids=[100015], solver="cg")
    patched, record = lethe.unlearn(model, train, [3, 17])
    lethe.plot.influence(r, (X, y, ids), (X_test, y_test), path="influence.png")  # matplotlib

Every function takes the CLI's options as keywords with '_' for '-' (``cg_tolerance=1e-6``
is ``--cg-tolerance 1e-06``), with the CLI's defaults (``lethe.option_defaults("influence")``).
Errors from lethe raise ``lethe.Error`` (a ValueError) with the CLI's one-line message;
warnings that qualify a result are Python warnings (``lethe.LetheWarning``) and are also
in the result's ``"warnings"``.
"""
from __future__ import annotations

import os
import sys
import time
import warnings as _warnings

from . import _lethe
from ._lethe import Data, Error, Model, __version__, option_defaults
from . import plot  # pictures; imports matplotlib only when one is drawn

__all__ = ["Model", "Data", "Error", "ExportError", "LetheWarning", "train", "evaluate", "influence",
           "self_influence", "unlearn", "compare", "option_defaults", "plot", "__version__"]


class LetheWarning(UserWarning):
    """A warning that qualifies a result (not stationary, inexact, ids left out...)."""


def _numpy(a):
    """A torch tensor as numpy (CPU, detached: shares memory where torch allows), else as is."""
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    return a


def _data(value, role: str):
    """lethe.Data, a path, or a tuple (X, y) / (X, y, ids) of numpy arrays or torch tensors."""
    if isinstance(value, (Data, str, os.PathLike)):
        return value
    if isinstance(value, (tuple, list)) and len(value) in (2, 3):
        arrays = [_numpy(a) for a in value]
        ids = arrays[2] if len(arrays) == 3 else None
        return Data(arrays[0], arrays[1], ids, name=role)
    raise TypeError(f"{role}: expected lethe.Data, a path, or (X, y[, ids]); got {type(value).__name__}")


class _Bar:
    """A tqdm-style progress line on stderr: phase, count, rate (tqdm itself when installed)."""

    def __init__(self):
        try:
            import tqdm  # noqa: F401
            self._tqdm = tqdm.tqdm
        except ImportError:
            self._tqdm = None
        self._bar = None
        self._phase = None
        self._start = time.monotonic()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self._phase:
            self.close()
            self._phase, self._start = phase, time.monotonic()
            if self._tqdm:
                self._bar = self._tqdm(total=total or None, desc=phase, leave=False)
        if self._bar is not None:
            self._bar.n = done
            self._bar.refresh()
            return
        elapsed = time.monotonic() - self._start
        of = f"/{total}" if total else ""
        rate = f" ({done / elapsed:.1f}/s)" if elapsed > 0.5 else ""
        sys.stderr.write(f"\r{phase}: {done}{of}{rate}")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._phase is not None:
            sys.stderr.write("\n")
        self._phase = None


def _progress(progress):
    """None/False: nothing; True: a bar on stderr; a callable(phase, done, total)."""
    if progress is True:
        return _Bar()
    if progress is False or progress is None:
        return None
    if not callable(progress):
        raise TypeError("progress must be True, False, None or a callable(phase, done, total)")
    return progress


def _call(function, *args, progress=None, **kwargs):
    callback = _progress(progress)
    try:
        result = function(*args, progress=callback, **kwargs) if progress is not None else \
            function(*args, **kwargs)
    finally:
        if isinstance(callback, _Bar):
            callback.close()
    record = result[1] if isinstance(result, tuple) else result
    for text in record.get("notes", []) + record.get("warnings", []):
        _warnings.warn(text, LetheWarning, stacklevel=3)
    return result


def evaluate(model: Model, data, **options) -> dict:
    """lethe eval: {n, loss, objective, accuracy (classifiers), grad_norm, stationary, forgotten}."""
    return _call(_lethe.evaluate, model, _data(data, "data"), **options)


def influence(model: Model, train, test, *, test_ids=None, progress=None, **options) -> dict:
    """lethe influence: {"scores": [m, n] float64 (test × train, (1/n) g_testᵀ H⁻¹ gᵢ,
    positive = helped), "train_ids", "test_ids", "solver", "settings", "exact",
    "grad_norm", "warnings"}."""
    return _call(_lethe.influence, model, _data(train, "train"), _data(test, "test"),
                 test_ids=test_ids, progress=progress, **options)


def self_influence(model: Model, train, *, ids=None, progress=None, **options) -> dict:
    """lethe self-influence: {"scores": [n] float64, "train_ids", ...} (ids: only these)."""
    return _call(_lethe.self_influence, model, _data(train, "train"), ids=ids,
                 progress=progress, **options)


def unlearn(model: Model, train, forget_ids, *, progress=None, **options):
    """lethe unlearn: (patched Model, erasure record dict). The patched model carries the
    ids it has forgotten; .save(path), .state_dict(), .to_torch(module) take it out."""
    return _call(_lethe.unlearn, model, _data(train, "train"), list(forget_ids),
                 progress=progress, **options)


def train(spec, data, *, forget_ids=None, progress=None, **options):
    """lethe train: (Model, summary dict). spec: a spec dict, a spec file's path, or a
    lethe.Model to start from (--init)."""
    return _call(_lethe.train, spec, _data(data, "data"),
                 forget_ids=None if forget_ids is None else list(forget_ids),
                 progress=progress, **options)


def compare(model: Model, reference: Model, train, test, *, forget_ids=None, original=None,
            **options) -> dict:
    """lethe compare --json: parameter distance (relative to `original` when given), forget,
    kept and test loss and accuracy, prediction agreement, membership-inference AUC."""
    return _call(_lethe.compare, model, reference, _data(train, "train"), _data(test, "test"),
                 forget_ids=None if forget_ids is None else list(forget_ids), original=original,
                 **options)


# Model's methods that need torch or json live in Python.
def _spec(self) -> dict:
    import json
    return json.loads(self.spec_json)


def _tensors(self) -> dict:
    """{name: numpy array in the model's dtype}, in file order (trainable and fixed)."""
    import numpy as np
    dtype = np.float32 if self.dtype == "f32" else np.float64
    return {name: values.astype(dtype) for name, _, _, values in self._tensors()}


Model.spec = property(_spec)
Model.tensors = _tensors
from .torch_bridge import from_torch as _from_torch, state_dict as _state_dict, to_torch as _to_torch  # noqa: E402
Model.from_torch = staticmethod(_from_torch)


def __getattr__(name):
    """lethe.ExportError, the exporter's refusals (a ValueError), imported on first use:
    the exporter imports torch, which `import lethe` alone does not need."""
    if name == "ExportError":
        from .export_torch import ExportError
        return ExportError
    raise AttributeError(f"module 'lethe' has no attribute {name!r}")
Model.state_dict = _state_dict
Model.to_torch = _to_torch
