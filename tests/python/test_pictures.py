#!/usr/bin/env python3
"""lethe's pictures: influence --png, self-influence --png, unlearn --verify --png.

    /usr/bin/python3 tests/python/test_pictures.py --lethe PATH/TO/lethe

Each PNG is decoded here (tests/python/png_reader.py, CRCs checked) and read against the
layout its header documents (tools/lethe/example_pictures.h, tools/lethe/unlearn_png.h):
- influence: the size the layout gives; the test image's pixels are the test example's
  features scaled by its min..max; the helpful and harmful tiles are the training examples
  of largest and smallest score in the scores file the same run wrote (so a flipped sign or
  a wrong example fails), framed green and red.
- self-influence: the tiles are the examples of highest score, in order; an RGB [3, H, W]
  model (the spec's "input") has its three channels where they belong.
- unlearn: each bar's height is its number in the erasure record, on the panel's scale;
  without --test the test-loss and AUC panels have no bars.
- Bad input: --png on tabular data, --png without --verify, a name without .png: one line,
  exit 1, nothing written.
Plain unittest; ends with a line "N passed, N failed, N skipped".
"""
import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest

from lethe_test_main import run_tests
from png_reader import read_png

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "examples", "digits")
CANCER = os.path.join(ROOT, "examples", "breast_cancer")
MODEL = os.path.join(DIGITS, "model.safetensors")
TRAIN, TEST = os.path.join(DIGITS, "train.npz"), os.path.join(DIGITS, "test.npz")
LETHE = None

# tools/lethe/example_pictures.h
MIN_CELL, TILE_GAP, GROUP_GAP, MARGIN, HEADER, CAPTION, ROW_GAP, FRAME = 96, 12, 24, 20, 84, 38, 14, 2
# tools/lethe/unlearn_png.h
BARS_W, BARS_H, PANEL_LEFT, PANEL_STEP, BAR_INSET, BAR_W, BAR_GAP, BAR_BASE, BAR_SPAN = \
    800, 440, 40, 185, 12, 40, 10, 380, 240
GREEN, RED, BLACK, GREY = [44, 160, 44], [214, 39, 40], [0, 0, 0], [150, 150, 150]
BAR_COLOURS = [[150, 150, 150], [31, 119, 180], [255, 127, 14]]


def run(*args):
    return subprocess.run([LETHE, *args, "--quiet"], capture_output=True, text=True)


def lethe(*args):
    r = run(*args)
    if r.returncode != 0:
        raise AssertionError(f"lethe {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


class Layout:
    """The tile grid of example_pictures.h for images of shape (C, H, W)."""

    def __init__(self, shape):
        self.c, self.h, self.w = shape
        self.s = max(1, 96 // max(self.h, self.w))
        self.iw, self.ih = self.w * self.s, self.h * self.s
        self.cw = max(self.iw, MIN_CELL)

    def image_origin(self, row, column, group):
        x = MARGIN + column * (self.cw + TILE_GAP) + group * GROUP_GAP
        y = HEADER + row * (self.ih + CAPTION + ROW_GAP)
        return x + (self.cw - self.iw) // 2, y

    def grid_width(self, columns, groups):
        return MARGIN + (columns - 1) * (self.cw + TILE_GAP) + (groups - 1) * GROUP_GAP + self.cw + MARGIN

    def height(self, rows):
        return HEADER + rows * (self.ih + CAPTION + ROW_GAP) - ROW_GAP + MARGIN

    def expected(self, features):
        """The image's pixels [H, W, 3] as the layout scales them (one per s × s block)."""
        v = np.asarray(features, dtype=np.float64).reshape(self.c, self.h, self.w)
        lo, hi = v.min(), v.max()
        # The same operations as the C++ (t first, then 255 t), rounded half away from zero
        # as std::lround (numpy's rint would round 76.5 to 76).
        level = np.floor(255 * ((v - lo) / (hi - lo)) + 0.5) if hi > lo else np.full(v.shape, 128.0)
        return np.stack([level[0]] * 3, axis=-1) if self.c == 1 else np.moveaxis(level, 0, -1)

    def read(self, px, x, y):
        """The image at (x, y) as drawn: one pixel per block (its centre), and whether every
        block is uniform (nearest neighbour, no smoothing)."""
        s = self.s
        block = px[y:y + self.ih, x:x + self.iw].reshape(self.h, s, self.w, s, 3)
        uniform = bool((block == block[:, :1, :, :1]).all())
        return block[:, s // 2, :, s // 2].astype(float), uniform


class Pictures(unittest.TestCase):
    def setUp(self):
        if not LETHE or not os.access(LETHE, os.X_OK):
            self.skipTest("no lethe binary (pass --lethe)")
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.train, self.test = np.load(TRAIN), np.load(TEST)

    def tearDown(self):
        if hasattr(self, "tmp"):
            self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def assertTile(self, px, layout, x, y, features, frame):
        got, uniform = layout.read(px, x, y)
        self.assertTrue(uniform, "an image block is not one colour")
        np.testing.assert_array_equal(got, layout.expected(features))
        self.assertEqual(px[y - 1, x - 1].tolist(), frame)  # the frame's corner, outside the image
        self.assertEqual(px[y + layout.ih, x + layout.iw].tolist(), frame)

    def test_influence(self):
        scores, plot = self.path("scores.npy"), self.path("influence.png")
        test_ids = [100000, 100002, 100005]
        out = lethe("influence", "--model", MODEL, "--train", TRAIN, "--test", TEST,
                    "--test-ids", ",".join(map(str, test_ids)), "--out", scores, "--png", plot,
                    "--png-top", "3")
        self.assertIn(f"wrote {plot}", out)
        s = np.load(scores)
        layout = Layout((1, 8, 8))
        self.assertEqual((layout.s, layout.iw), (12, 96))
        w, h, px = read_png(plot)
        # 1 + 3 + 3 columns in 3 groups, 3 rows; the header lines are narrower than the grid.
        self.assertEqual((w, h), (layout.grid_width(7, 3), layout.height(3)))
        self.assertEqual((w, h), (832, 84 + 3 * 148 - 14 + 20))
        X, Xt, ids, tids = self.train["X"], self.test["X"], self.train["ids"], self.test["ids"]
        for r, tid in enumerate(test_ids):
            x, y = layout.image_origin(r, 0, 0)
            self.assertTile(px, layout, x, y, Xt[list(tids).index(tid)], BLACK)
            # Sign (docs/influence.md): helpful = largest score, harmful = smallest.
            helpful, harmful = np.argsort(-s[r], kind="stable")[:3], np.argsort(s[r], kind="stable")[:3]
            self.assertGreater(s[r, helpful[0]], 0)
            self.assertLess(s[r, harmful[0]], 0)
            for k in range(3):
                self.assertTile(px, layout, *layout.image_origin(r, 1 + k, 1), X[helpful[k]], GREEN)
                self.assertTile(px, layout, *layout.image_origin(r, 4 + k, 2), X[harmful[k]], RED)
        # Caption ink (black text) under the first test image, none in the gap between rows.
        x, y = layout.image_origin(0, 0, 0)
        caption = px[y + layout.ih + FRAME + 6:y + layout.ih + CAPTION, x - 10:x + 96]
        self.assertGreater(int(np.all(caption == 0, axis=2).sum()), 40)
        gap = px[y + layout.ih + CAPTION:y + layout.ih + CAPTION + ROW_GAP - FRAME]
        self.assertTrue((gap == 255).all())
        # Default: 4 tiles each side, the first (at most) 4 test examples.
        plot2 = self.path("default.png")
        lethe("influence", "--model", MODEL, "--train", TRAIN, "--test", TEST, "--test-ids",
              "100000,100001,100002,100003,100004", "--out", self.path("s.csv"), "--png", plot2)
        self.assertEqual(read_png(plot2)[:2], (layout.grid_width(9, 3), layout.height(4)))

    def test_self_influence(self):
        out, plot = self.path("self.csv"), self.path("self.png")
        lethe("self-influence", "--model", MODEL, "--train", TRAIN, "--out", out, "--png", plot,
              "--png-top", "10")
        with open(out) as f:
            rows = [(int(r["train_id"]), float(r["score"])) for r in csv.DictReader(f)]
        order = sorted(range(len(rows)), key=lambda i: -rows[i][1])[:10]
        layout = Layout((1, 8, 8))
        w, h, px = read_png(plot)
        self.assertEqual((w, h), (layout.grid_width(8, 1), layout.height(2)))  # 8 a row
        ids = list(self.train["ids"])
        for k, i in enumerate(order):
            x, y = layout.image_origin(k // 8, k % 8, 0)
            self.assertTile(px, layout, x, y, self.train["X"][ids.index(rows[i][0])], GREY)
        # Tiles 10..15 of the second row are empty.
        x, y = layout.image_origin(1, 2, 0)
        self.assertTrue((px[y:y + layout.ih, x:x + layout.iw] == 255).all())

    def test_rgb_images_from_the_spec(self):
        # A softmax regression over 4 × 4 RGB images stored flat: the shape comes from the
        # spec's "input" [3, 4, 4], the channels from the planes of X.
        rng = np.random.default_rng(0)
        n = 60
        X = rng.normal(size=(n, 48))
        y = (X[:, :16].mean(axis=1) > X[:, 32:].mean(axis=1)).astype(np.int64)
        data, spec, model = self.path("rgb.npz"), self.path("rgb.json"), self.path("rgb.safetensors")
        np.savez(data, X=X, y=y, ids=np.arange(n) + 500)
        with open(spec, "w") as f:
            json.dump({"format": "lethe/1", "input": [3, 4, 4],
                       "layers": [{"type": "flatten"},
                                  {"type": "linear", "weight": "w", "bias": "b", "out": 2}],
                       "loss": "cross_entropy", "l2": 0.1}, f)
        lethe("train", "--spec", spec, "--data", data, "--out", model)
        out, plot = self.path("self.npy"), self.path("rgb.png")
        lethe("self-influence", "--model", model, "--train", data, "--out", out, "--png", plot,
              "--png-top", "3")
        s = np.load(out)
        layout = Layout((3, 4, 4))
        self.assertEqual((layout.s, layout.iw), (24, 96))
        w, h, px = read_png(plot)
        self.assertEqual(h, layout.height(1))
        for k, i in enumerate(np.argsort(-s, kind="stable")[:3]):
            self.assertTile(px, layout, *layout.image_origin(0, k, 0), X[i], GREY)
        # Not grey: the channels differ somewhere.
        x, y = layout.image_origin(0, 0, 0)
        tile = px[y:y + layout.ih, x:x + layout.iw].astype(int)
        self.assertGreater(int(np.abs(tile[..., 0] - tile[..., 1]).max()), 50)

    def unlearn(self, *extra):
        report, plot = self.path("record.json"), self.path("unlearn.png")
        out = lethe("unlearn", "--model", MODEL, "--train", TRAIN, "--forget",
                    os.path.join(DIGITS, "forget.txt"), "--out", self.path("patched.safetensors"),
                    "--report", report, "--verify", "--png", plot, *extra)
        self.assertIn(f"wrote {plot}", out)
        with open(report) as f:
            return json.load(f)["verify"]["models"], read_png(plot)

    def bar_heights(self, px, panel):
        """The height of each model's bar in `panel`, read up its centre column from the
        baseline, and that the bar has its model's colour."""
        heights = []
        for j, colour in enumerate(BAR_COLOURS):
            x = PANEL_LEFT + panel * PANEL_STEP + BAR_INSET + j * (BAR_W + BAR_GAP) + BAR_W // 2
            h = 0
            while px[BAR_BASE - 1 - h, x].tolist() == colour:
                h += 1
            heights.append(h)
        return heights

    def test_unlearn_bars(self):
        models, (w, h, px) = self.unlearn("--test", TEST)
        self.assertEqual((w, h), (BARS_W, BARS_H))
        names = ("original", "patched", "retrained")
        panels = [[models[m]["forget"]["loss"] for m in names],
                  [models[m]["kept"]["loss"] for m in names],
                  [models[m]["test"]["loss"] for m in names],
                  [models[m]["membership_auc"] for m in names]]
        for i, values in enumerate(panels):
            top = 1.0 if i == 3 else 1.2 * max(values)
            expected = [round(v / top * BAR_SPAN) for v in values]
            self.assertEqual(self.bar_heights(px, i), expected, (i, values))
        # Forgetting is visible: the forget loss rises from original to patched, and the
        # patched model's is near the retrained one's (bars within a few pixels).
        f = self.bar_heights(px, 0)
        self.assertGreater(f[1], f[0])
        self.assertLessEqual(abs(f[1] - f[2]), 3)

    def test_unlearn_without_test_data(self):
        models, (w, h, px) = self.unlearn()
        self.assertEqual(self.bar_heights(px, 2), [0, 0, 0])  # test loss: not measured
        self.assertEqual(self.bar_heights(px, 3), [0, 0, 0])  # membership AUC: not measured
        self.assertTrue(all(v > 0 for v in self.bar_heights(px, 1)))

    def assertRefused(self, args, message, files):
        r = run(*args)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn(message, r.stderr)
        for f in files:
            self.assertFalse(os.path.exists(f), f)

    def test_bad_inputs(self):
        out, plot = self.path("s.csv"), self.path("p.png")
        cancer = os.path.join(CANCER, "train.npz")
        model = self.path("cancer.safetensors")
        lethe("train", "--spec", os.path.join(CANCER, "logistic.json"), "--data", cancer, "--out", model)
        self.assertRefused(["influence", "--model", model, "--train", cancer, "--test",
                            os.path.join(CANCER, "test.npz"), "--out", out, "--png", plot],
                           f"--png needs image data: {cancer}: one example is [30], not an image",
                           [out, plot])
        self.assertRefused(["self-influence", "--model", model, "--train", cancer, "--out", out,
                            "--png", plot], "--png needs image data", [out, plot])
        # An image too large to draw (1100 > 1024 pixels a side), refused before the solve.
        tall, spec, tall_model = self.path("tall.npz"), self.path("tall.json"), self.path("tall.safetensors")
        rng = np.random.default_rng(1)
        np.savez(tall, X=rng.normal(size=(6, 1, 1100, 2)), y=np.array([0, 1, 0, 1, 0, 1]))
        with open(spec, "w") as f:
            json.dump({"format": "lethe/1", "input": [1, 1100, 2],
                       "layers": [{"type": "flatten"},
                                  {"type": "linear", "weight": "w", "bias": "b", "out": 2}],
                       "loss": "cross_entropy", "l2": 1.0}, f)
        lethe("train", "--spec", spec, "--data", tall, "--out", tall_model)
        self.assertRefused(["self-influence", "--model", tall_model, "--train", tall, "--out", out,
                            "--png", plot], f"--png: {tall}: images of 1100 × 2 are too large",
                           [out, plot])
        patched = self.path("patched.safetensors")
        self.assertRefused(["unlearn", "--model", MODEL, "--train", TRAIN, "--forget-ids", "49",
                            "--out", patched, "--png", plot], "add --verify", [patched, plot])
        self.assertRefused(["influence", "--model", MODEL, "--train", TRAIN, "--test", TEST,
                            "--out", out, "--png", self.path("p.txt")], "must end in .png", [out])
        self.assertRefused(["influence", "--model", MODEL, "--train", TRAIN, "--test", TEST,
                            "--out", out, "--png", plot, "--png-top", "0"],
                           "--png-top 0: must be in [1, 64]", [out, plot])
        self.assertRefused(["influence", "--model", MODEL, "--train", TRAIN, "--test", TEST,
                            "--out", out, "--png", plot, "--png-tests", "65"],
                           "--png-tests 65: must be in [1, 64]", [out, plot])


if __name__ == "__main__":
    sys.exit(run_tests(__name__))
