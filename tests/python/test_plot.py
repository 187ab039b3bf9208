"""lethe.plot (python/lethe/plot.py): the pictures' plotted data, read back from the Figures.

    PYTHONPATH=build/python LETHE_BIN=build/tools/lethe /usr/bin/python3 -m pytest tests/python/test_plot.py

pytest; ctest runs it beside test_python_module.py (tests/CMakeLists.txt). Each figure is
checked through its artists, against numbers computed here or by the CLI: the image arrays
are the examples' features scaled by their min..max, in the order of the scores (helpful =
largest, harmful = smallest); the bar heights are the erasure record's numbers; the scatter's
offsets are validate-influence's points and its title carries their Pearson and Spearman.
Also: `import lethe` does not import matplotlib; the PNG is written; bad input is refused.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lethe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LETHE = os.environ.get("LETHE_BIN", os.path.join(ROOT, "build", "tools", "lethe"))
DIGITS = os.path.join(ROOT, "examples", "digits")
MODEL = os.path.join(DIGITS, "model.safetensors")
TRAIN = os.path.join(DIGITS, "train.npz")
TEST = os.path.join(DIGITS, "test.npz")


def cli_json(*args):
    proc = subprocess.run([LETHE, *args, "--json", "--quiet"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def arrays(path):
    z = np.load(path)
    return z["X"], z["y"], z["ids"]


def scaled(x):
    """An 8 × 8 digit as the pictures show it: min..max to 0..1."""
    v = np.asarray(x, dtype=float).reshape(8, 8)
    return (v - v.min()) / (v.max() - v.min())


@pytest.fixture(scope="module")
def train():
    return arrays(TRAIN)


@pytest.fixture(scope="module")
def test():
    return arrays(TEST)


def test_import_lethe_does_not_import_matplotlib():
    code = "import sys, lethe; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=os.environ, check=True).stdout
    assert out.strip() == "False"


def test_influence(tmp_path, train, test):
    r = lethe.influence(lethe.Model(MODEL), train, test, test_ids=[100000, 100002])
    path = tmp_path / "influence.png"
    fig = lethe.plot.influence(r, train, TEST, top=3, predicted=[7, 3], path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = np.array(fig.axes).reshape(2, 7)
    X, y, ids = train
    Xt, yt, tids = test
    for row, tid in enumerate([100000, 100002]):
        t = list(tids).index(tid)
        ax = axes[row, 0]
        np.testing.assert_array_equal(ax.images[0].get_array(), scaled(Xt[t]))
        assert ax.get_title().splitlines() == [f"test id {tid}", f"label {yt[t]:g}",
                                               f"predicted {[7, 3][row]}"]
        s = r["scores"][row]
        helpful, harmful = np.argsort(-s, kind="stable")[:3], np.argsort(s, kind="stable")[:3]
        assert s[helpful[0]] > 0 > s[harmful[0]]  # the sign of docs/influence.md
        for k, i in enumerate(list(helpful) + list(harmful)):
            ax = axes[row, 1 + k]
            np.testing.assert_allclose(ax.images[0].get_array(), scaled(X[i]), rtol=0, atol=1e-15)
            lines = ax.get_title().splitlines()
            assert lines[0] == f"id {ids[i]}" and lines[1] == f"label {y[i]:g}"
            assert float(lines[2]) == pytest.approx(s[i], rel=5e-3)
            assert ax.title.get_color() == ("#2ca02c" if k < 3 else "#d62728")
    assert "helpful" in fig._suptitle.get_text() and "score > 0" in fig._suptitle.get_text()


def test_self_influence(train):
    r = lethe.self_influence(lethe.Model(MODEL), train)
    fig = lethe.plot.self_influence(r, TRAIN, top=10)
    order = np.argsort(-r["scores"], kind="stable")[:10]
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 16 and len(shown) == 10  # 8 a row, the rest blank
    for ax, i in zip(shown, order):
        np.testing.assert_allclose(ax.images[0].get_array(), scaled(train[0][i]), atol=1e-15)
        assert ax.get_title().splitlines()[0] == f"id {train[2][i]}"


def test_unlearning_bars_are_the_record(tmp_path):
    report = tmp_path / "record.json"
    cli_json("unlearn", "--model", MODEL, "--train", TRAIN, "--forget",
             os.path.join(DIGITS, "forget.txt"), "--out", str(tmp_path / "p.safetensors"),
             "--verify", "--test", TEST, "--report", str(report))
    record = json.loads(report.read_text())
    models = record["verify"]["models"]
    fig = lethe.plot.unlearning(str(report), path=tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 1000
    want = [[models[m]["forget"]["loss"] for m in lethe.plot.MODELS],
            [models[m]["kept"]["loss"] for m in lethe.plot.MODELS],
            [models[m]["test"]["loss"] for m in lethe.plot.MODELS],
            [models[m]["membership_auc"] for m in lethe.plot.MODELS]]
    assert [ax.get_title() for ax in fig.axes] == ["forget loss", "kept loss", "test loss",
                                                   "membership AUC"]
    for ax, values in zip(fig.axes, want):
        assert [p.get_height() for p in ax.patches] == values
        assert [t.get_text() for t in ax.texts] == [f"{v:.4f}" for v in values]
    assert fig.axes[3].get_ylim() == (0, 1)
    # The same from the dict; a record without --verify is refused.
    fig2 = lethe.plot.unlearning(record)
    assert [p.get_height() for p in fig2.axes[0].patches] == want[0]
    with pytest.raises(ValueError, match="no verify numbers"):
        lethe.plot.unlearning({"k": 1, "n": 2})


def test_validation_scatter(tmp_path):
    report = cli_json("validate-influence", "--model", MODEL, "--train", TRAIN, "--test", TEST,
                      "--test-ids", "100015", "--remove", "4", "--subsets", "0")
    fig = lethe.plot.validation(report, path=tmp_path / "v.png")
    ax = fig.axes[0]
    points = report["leave_one_out"]["points"]
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_array_equal(offsets, [[p["predicted"], p["actual"]] for p in points])
    pooled = report["leave_one_out"]["pooled"]
    assert ax.get_title() == (f"Pearson {pooled['pearson']:.4f}  Spearman "
                              f"{pooled['spearman']:.4f}  ({len(points)} points)")
    assert pooled["pearson"] > 0.9  # the picture shows agreement, not noise
    with pytest.raises(ValueError, match="no leave-one-out points"):
        lethe.plot.validation({})


def test_not_images(train):
    X, y, ids = train
    r = {"scores": np.zeros(5), "train_ids": np.arange(5)}
    with pytest.raises(ValueError, match="pictures need image data"):
        lethe.plot.self_influence(r, (X[:5, :30], y[:5]))
    with pytest.raises(TypeError, match="a lethe.Data does not hand its arrays back"):
        lethe.plot.self_influence(r, lethe.Data(X[:5], y[:5]))
    # A shape given for flat data is used: 64 = 4 × 16.
    fig = lethe.plot.self_influence(r, (X[:5], y[:5]), shape=(4, 16), top=1)
    assert fig.axes[0].images[0].get_array().shape == (4, 16)
