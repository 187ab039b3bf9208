"""lethe's pictures with matplotlib: the layouts of the CLI's ``--png`` (docs/python.md).

    fig = lethe.plot.influence(r, (X, y, ids), "examples/digits/test.npz", path="infl.png")

Each function returns a ``matplotlib.figure.Figure`` (made without pyplot, so nothing is
left open in a pyplot registry) and saves it to ``path`` when one is given. matplotlib is
imported inside the functions: ``import lethe`` does not need it.

Images are drawn as the CLI draws them: one example's features as [C, H, W] (C = 1: grey,
high is white; C = 3: RGB), each image scaled by its own min..max, nearest neighbour.
"""
from __future__ import annotations

import json
import math
import os

# matplotlib's "tab10" colours, as tools/lethe/png_canvas.h.
_GREY, _BLUE, _ORANGE = "#969696", "#1f77b4", "#ff7f0e"
_GREEN, _RED, _BLACK = "#2ca02c", "#d62728", "#000000"


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # the engine works without it; only pictures need it
        raise ImportError("lethe.plot needs matplotlib (Debian: python3-matplotlib)") from e
    return Figure(**kwargs)


def _finish(fig, path):
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig


def _arrays(data, role):
    """(X, y, ids) as numpy from a tuple (X, y[, ids]) of arrays or tensors, or an .npz path."""
    import numpy as np
    if isinstance(data, (str, os.PathLike)):
        if not os.fspath(data).endswith(".npz"):
            raise ValueError(f"{role}: {os.fspath(data)}: pictures read .npz files (X, y, ids)")
        z = np.load(os.fspath(data))
        X, y = z["X"], z["y"]
        ids = z["ids"] if "ids" in z.files else np.arange(len(X))
        return np.asarray(X), np.asarray(y), np.asarray(ids)
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        from . import _numpy
        arrays = [np.asarray(_numpy(a)) for a in data]
        ids = arrays[2] if len(arrays) == 3 else np.arange(len(arrays[0]))
        return arrays[0], arrays[1], ids
    raise TypeError(f"{role}: pictures need the arrays: (X, y[, ids]) or an .npz path; got "
                    f"{type(data).__name__} (a lethe.Data does not hand its arrays back)")


def _shape(X, shape, role):
    """One example's (C, H, W): `shape` if given, X's trailing [C, H, W] or [H, W], or a
    square number of features; else ValueError, as the CLI's "--png needs image data"."""
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        shape = (1, *shape) if len(shape) == 2 else shape
    elif X.ndim == 4:
        shape = X.shape[1:]
    elif X.ndim == 3:
        shape = (1, *X.shape[1:])
    else:
        d = int(X.shape[1]) if X.ndim == 2 else 1
        side = math.isqrt(d)
        shape = (1, side, side) if side >= 2 and side * side == d else None
    if shape is None or len(shape) != 3 or shape[0] not in (1, 3) or min(shape[1:]) < 2 or \
            math.prod(shape) != math.prod(X.shape[1:]):
        raise ValueError(f"{role}: pictures need image data: one example is {list(X.shape[1:])}; "
                         "an image is [C, H, W] with C = 1 or 3, or a square number of "
                         "features (64 = 8 x 8); pass shape=(C, H, W)")
    return shape


def image(x, shape):
    """One example as imshow takes it: [H, W] grey or [H, W, 3] RGB in [0, 1], scaled by its
    own min..max (a constant image is 0.5), as the CLI's pictures."""
    import numpy as np
    v = np.asarray(x, dtype=np.float64).reshape(shape)
    lo, hi = v.min(), v.max()
    v = (v - lo) / (hi - lo) if hi > lo else np.full(v.shape, 0.5)
    return v[0] if shape[0] == 1 else np.moveaxis(v, 0, -1)


def _tile(ax, x, shape, caption, colour):
    ax.imshow(image(x, shape), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2)
    ax.set_title("\n".join(caption), fontsize=7, color=colour if colour != _GREY else _BLACK)


def _rows_of(ids):
    return {int(i): k for k, i in enumerate(ids)}


def _label(v):
    return f"{float(v):g}"


def _top(scores, k, largest):
    """Indices of the k largest (or smallest) scores, ties in index order."""
    import numpy as np
    order = np.argsort(-scores if largest else scores, kind="stable")
    return order[:min(k, len(scores))]


def influence(result: dict, train, test, *, top: int = 4, tests: int = 4, shape=None,
              predicted=None, path=None):
    """Each test image beside its `top` most helpful and most harmful training images,
    captioned with id, label and score; one row for each of the first `tests` test examples
    of `result` (lethe.influence's dict). `predicted`: the model's class per row of
    result["scores"], shown under the test image when given. Sign as docs/influence.md:
    positive (green, helpful) = removing the example would raise the test loss."""
    import numpy as np
    scores = np.asarray(result["scores"], dtype=np.float64)
    Xtr, ytr, idtr = _arrays(train, "train")
    Xte, yte, idte = _arrays(test, "test")
    shape = _shape(Xtr, shape, "train")
    train_row, test_row = _rows_of(idtr), _rows_of(idte)
    m = min(len(scores), int(tests))
    k = min(int(top), scores.shape[1])
    fig = _figure(figsize=(1.3 * (1 + 2 * k), 1.9 * m + 0.9))
    axes = fig.subplots(m, 1 + 2 * k, squeeze=False)
    for t in range(m):
        tid = int(result["test_ids"][t])
        row = test_row[tid]
        caption = [f"test id {tid}", f"label {_label(yte[row])}"]
        if predicted is not None:
            caption.append(f"predicted {_label(predicted[t])}")
        _tile(axes[t, 0], Xte[row], shape, caption, _BLACK)
        for col, (i, colour) in enumerate(
                [(i, _GREEN) for i in _top(scores[t], k, True)] +
                [(i, _RED) for i in _top(scores[t], k, False)]):
            trid = int(result["train_ids"][i])
            r = train_row[trid]
            _tile(axes[t, 1 + col], Xtr[r], shape,
                  [f"id {trid}", f"label {_label(ytr[r])}", f"{scores[t, i]:+.2e}"], colour)
    fig.suptitle(f"test | {k} most helpful (green: score > 0, removing it would raise the test "
                 f"loss) | {k} most harmful (red: score < 0)", fontsize=9)
    fig.tight_layout()
    return _finish(fig, path)


def self_influence(result: dict, train, *, top: int = 16, shape=None, path=None):
    """The `top` training examples of highest self-influence (lethe.self_influence's dict)
    as a grid of 8 a row, captioned with id, label and score: the predicted rise of each
    example's own loss when it is left out, large for mislabeled or memorised examples."""
    import numpy as np
    scores = np.asarray(result["scores"], dtype=np.float64)
    X, y, ids = _arrays(train, "train")
    shape = _shape(X, shape, "train")
    rows = _rows_of(ids)
    chosen = _top(scores, int(top), True)
    columns = max(1, min(8, len(chosen)))
    lines = max(1, math.ceil(len(chosen) / columns))
    fig = _figure(figsize=(1.3 * columns, 1.9 * lines + 0.6))
    axes = fig.subplots(lines, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, i in enumerate(chosen):
        ax = axes[k // columns, k % columns]
        ax.set_axis_on()
        trid = int(result["train_ids"][i])
        r = rows[trid]
        _tile(ax, X[r], shape, [f"id {trid}", f"label {_label(y[r])}", f"{scores[i]:.2e}"], _GREY)
    fig.suptitle("highest self-influence (candidates for mislabeled or memorised examples)",
                 fontsize=9)
    fig.tight_layout()
    return _finish(fig, path)


def _load(value, what):
    if isinstance(value, (str, os.PathLike)):
        with open(os.fspath(value)) as f:
            return json.load(f)
    if isinstance(value, dict):
        return value
    raise TypeError(f"{what}: expected a dict or a JSON file's path; got {type(value).__name__}")


# The four quantities of unlearning's comparison: (title, how to read it from a model's entry).
_MEASURES = [
    ("forget loss", lambda e: e["forget"]["loss"]),
    ("kept loss", lambda e: e["kept"]["loss"]),
    ("test loss", lambda e: e["test"]["loss"] if e["test"].get("n", 0) > 0 else None),
    ("membership AUC", lambda e: e.get("membership_auc")),
]
MODELS = ("original", "patched", "retrained")


def unlearning(record, path=None):
    """Original, patched and retrained side by side: forget, kept and test loss and the
    membership AUC (forget vs test; 0.5 = indistinguishable), each value over its bar. From
    an erasure record with `lethe unlearn --verify`'s numbers (its dict, or the --report
    JSON's path); without --test the test loss and AUC panels say "not measured"."""
    rec = _load(record, "record")
    if "verify" not in rec:
        raise ValueError("the record has no verify numbers: write it with lethe unlearn --verify "
                         "--test TEST --report R.json (lethe.unlearn does not retrain)")
    models = rec["verify"]["models"]
    fig = _figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 4)
    for ax, (title, read) in zip(axes, _MEASURES):
        values = [read(models[name]) for name in MODELS]
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(3), MODELS, fontsize=8)
        if title == "membership AUC":
            ax.set_ylim(0, 1)
            ax.axhline(0.5, color=_GREY, linestyle="--", linewidth=1)
        if all(v is None for v in values):
            ax.text(0.5, 0.3, "not measured (no --test)", ha="center", transform=ax.transAxes,
                    fontsize=8)
            continue
        xs = [j for j, v in enumerate(values) if v is not None]
        bars = ax.bar(xs, [values[j] for j in xs], color=[(_GREY, _BLUE, _ORANGE)[j] for j in xs])
        ax.bar_label(bars, labels=[f"{values[j]:.4f}" for j in xs], fontsize=8)
        if title != "membership AUC":
            ax.set_ylim(0, 1.2 * max(values[j] for j in xs) or 1)
    fig.suptitle(f"unlearning {rec.get('k', '?')} of {rec.get('n', '?')} examples: "
                 f"{rec.get('method', '')}", fontsize=11)
    fig.tight_layout()
    return _finish(fig, path)


def validation(result, path=None):
    """Influence's ground truth: predicted against actual change in test loss, one point per
    removed example, the y = x line, and the pooled Pearson and Spearman coefficients in the
    title. From `lethe validate-influence --json` (its dict, or the --out file's path)."""
    rep = _load(result, "result")
    if "leave_one_out" not in rep:
        raise ValueError("no leave-one-out points: run lethe validate-influence with --remove K "
                         "> 0 and --json or --out")
    loo = rep["leave_one_out"]
    x = [p["predicted"] for p in loo["points"]]
    y = [p["actual"] for p in loo["points"]]
    fig = _figure(figsize=(6, 5))
    ax = fig.subplots()
    lo, hi = min(x + y), max(x + y)
    ax.plot([lo, hi], [lo, hi], color=_GREY, linewidth=1, label="y = x")
    ax.scatter(x, y, s=14, color=_BLUE)
    ax.set_xlabel("predicted change of test loss (sum of scores)")
    ax.set_ylabel("actual change of test loss (retrained)")
    pooled = loo["pooled"]

    def number(v):
        return "n/a" if v is None else f"{v:.4f}"

    ax.set_title(f"Pearson {number(pooled.get('pearson'))}  Spearman "
                 f"{number(pooled.get('spearman'))}  ({len(x)} points)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _finish(fig, path)
