#!/usr/bin/env python3
"""Bad input for the layer types beyond linear, through the lethe CLI: one line, no output.

    /usr/bin/python3 tests/python/test_layer_errors.py --lethe PATH/TO/lethe [unittest args]

Each case writes a bad spec, model or data set for a convolutional model of the 8 × 8 digits
([1, 8, 8] → conv2d → relu → maxpool2d → flatten → linear) or the bag-of-words model of
examples/text (embedding_bag → linear), runs `lethe train`, `eval` or `inspect` on it, and
holds it to test_cli_errors.py's contract: exit code 1, exactly one stderr line naming the
file and the problem (and here the layer, as "layer 0.1 (dropout)"), empty stdout, nothing
created, no input touched.

What this adds to the unit tests of each layer's keys (tests/engine/layers/), which call the
planner directly: every key's bad values of every kind (zero, negative, wrong type, a pair
of the wrong length, 2^40, 2^62 and 2^64, which must neither overflow nor hang), tensors in a
model file that disagree with the spec, residual bodies and "frozen" where they make no
sense, and the data's dtype against the model, all through the real binary and its error
path (one line, no partial output). Positive controls: the good files succeed, and so does a
pooling window of 2^31 with padding 2^30 (valid in PyTorch; lethe once looped over its 2^62
offsets and never finished).
"""

import copy
import io
import json
import os
import shutil
import sys

import test_cli_errors as cli
from lethe_test_main import run_tests

import numpy as np

ROOT = cli.ROOT
TEXT = os.path.join(ROOT, "examples", "text")
LETHE = None  # set from --lethe in main()

THREADS = cli.THREADS
QUICK_TRAIN = cli.QUICK_TRAIN
HUGE = [("2^40", 2**40), ("2^62", 2**62), ("2^64", 2**64)]  # beyond every bound; 2^64 is no int64

# The digits as images: conv 3 × 3 (8 × 8 → 6 × 6), max pooling 2 (→ 3 × 3), 2·3·3 = 18
# features into the classifier.
CNN_SPEC = {"format": "lethe/1", "input": [1, 8, 8],
            "layers": [{"type": "conv2d", "weight": "0.weight", "bias": "0.bias", "out": 2,
                        "kernel": 3},
                       {"type": "relu"},
                       {"type": "maxpool2d", "kernel": 2},
                       {"type": "flatten"},
                       {"type": "linear", "weight": "4.weight", "bias": "4.bias", "out": 10}],
            "loss": "cross_entropy", "l2": 0.001}
CNN_TENSORS = [("0.weight", (2, 1, 3, 3)), ("0.bias", (2,)), ("4.weight", (10, 18)),
               ("4.bias", (10,))]
# examples/text: 12 token ids per row, 2002 words, 8 sections.
BAG_SPEC = {"format": "lethe/1", "input": [12],
            "layers": [{"type": "embedding_bag", "weight": "0.weight", "num_embeddings": 2002,
                        "dim": 4, "padding_idx": 0},
                       {"type": "linear", "weight": "1.weight", "bias": "1.bias", "out": 8}],
            "loss": "cross_entropy", "l2": 0.001}
BAG_TENSORS = [("0.weight", (2002, 4)), ("1.weight", (8, 4)), ("1.bias", (8,))]


def model_bytes(spec, tensors, seed=1):
    """A safetensors model (F64) of `tensors` [(name, shape)] with `spec` embedded."""
    header, size = cli.model_header([(name, "F64", shape) for name, shape in tensors], spec)
    values = np.random.default_rng(seed).uniform(-0.3, 0.3, size // 8)
    return cli.safetensors_bytes(header, values.astype("<f8").tobytes())


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def edited(spec, edit):
    """A deep copy of `spec` changed by edit(layers)."""
    spec = copy.deepcopy(spec)
    edit(spec["layers"])
    return spec


def with_keys(spec, index, **keys):
    """`spec` with layer `index` given (or, for None values, stripped of) `keys`."""
    def edit(layers):
        for key, value in keys.items():
            if value is None:
                layers[index].pop(key, None)
            else:
                layers[index][key] = value
    return edited(spec, edit)


class LayerCase(cli.CliCase):
    """CliCase's directories (digits, softmax.json, a softmax model) plus cnn.safetensors,
    the text data and bag.safetensors."""

    def setUp(self):
        cli.LETHE = LETHE  # CliCase runs the binary that test_cli_errors.LETHE names
        super().setUp()

    def fresh(self):
        d = super().fresh()
        cli.write(os.path.join(d, "cnn.safetensors"), model_bytes(CNN_SPEC, CNN_TENSORS))
        cli.write(os.path.join(d, "bag.safetensors"), model_bytes(BAG_SPEC, BAG_TENSORS))
        shutil.copy2(os.path.join(TEXT, "train.npz"), os.path.join(d, "text.npz"))
        return d

    def spec_commands(self, spec, model, data):
        """The commands that read a sidecar spec: train --spec, eval --spec, inspect --spec."""
        return [("train", "--spec", spec, "--data", data, "--out", "out.safetensors", *THREADS),
                ("eval", "--model", model, "--spec", spec, "--data", data, *THREADS),
                ("inspect", model, "--spec", spec)]

    def check_spec(self, label, spec, layer, phrases, every_command=False):
        """The bad spec as bad.json: `train --spec` (with every_command, also eval and inspect
        --spec) fails naming bad.json, `layer` ("layer 0 (conv2d)") and each phrase."""
        bag = any(layer.get("type") == "embedding_bag" for layer in spec["layers"])
        model, data = ("bag.safetensors", "text.npz") if bag else ("cnn.safetensors", "train.npz")
        commands = self.spec_commands("bad.json", model, data)
        for args in commands if every_command else commands[:1]:
            with self.case(f"{label}: {args[0]}") as d:
                cli.write(os.path.join(d, "bad.json"), json.dumps(spec).encode())
                self.fails(d, list(args), ["bad.json", layer], phrases)

    def check_model(self, label, content, layer, phrases, every_command=False):
        """The bad model file as bad.safetensors: inspect (with every_command, also eval and
        train --init) fails naming it, `layer` and each phrase."""
        commands = (("inspect", "bad.safetensors"),
                    ("eval", "--model", "bad.safetensors", "--data", "train.npz", *THREADS),
                    ("train", "--init", "bad.safetensors", "--data", "train.npz", "--out",
                     "out.safetensors", *THREADS))
        for args in commands if every_command else commands[:1]:
            with self.case(f"{label}: {args[0]}") as d:
                cli.write(os.path.join(d, "bad.safetensors"), content)
                self.fails(d, list(args), ["bad.safetensors", layer], phrases)


# ----------------------------------------------------------------------------- controls

class TestControls(LayerCase):

    def test_good_files(self):
        d = self.fresh()
        cli.write(os.path.join(d, "cnn.json"), json.dumps(CNN_SPEC).encode())
        cli.write(os.path.join(d, "bag.json"), json.dumps(BAG_SPEC).encode())
        for kind, data in (("cnn", "train.npz"), ("bag", "text.npz")):
            for args in self.spec_commands(f"{kind}.json", f"{kind}.safetensors", data):
                args = [a.replace("out.safetensors", f"out-{kind}.safetensors") for a in args]
                self.succeeds(d, [*args, *(QUICK_TRAIN if args[0] == "train" else ())])
            self.assertTrue(os.path.isfile(os.path.join(d, f"out-{kind}.safetensors")))

    def test_huge_pooling_window_is_valid_and_quick(self):
        # PyTorch accepts a kernel of 2^31 with padding 2^30 (at most half the kernel) on a
        # 6 × 6 input; so does lethe, and it visits only the 36 taps inside each window.
        d = self.fresh()
        for stride in (None, 1):
            pool = {"type": "avgpool2d", "kernel": 2**31, "padding": 2**30}
            if stride:
                pool["stride"] = stride
            spec = edited(CNN_SPEC, lambda layers: layers.__setitem__(2, pool))
            spec["layers"][4].pop("weight"), spec["layers"][4].pop("bias")
            cli.write(os.path.join(d, "huge.json"), json.dumps(spec).encode())
            model = f"huge-{stride}.safetensors"
            self.succeeds(d, ["train", "--spec", "huge.json", "--data", "train.npz", "--out",
                              model, *THREADS, *QUICK_TRAIN])
            out = self.succeeds(d, ["eval", "--model", model, "--data",
                                    "train.npz", "--json", *THREADS])
            self.assertEqual(json.loads(out)["n"], 1437)


# ------------------------------------------------------------------------ window keys

class TestWindowKeys(LayerCase):
    """conv2d's kernel, stride, padding, dilation; the pooling layers' kernel, stride,
    padding: each an integer or a pair [h, w] within bounds."""

    # Every kind of bad value, for conv2d's kernel (the key every window layer requires).
    BAD = [("zero", 0), ("negative", -1), ("string", "3"), ("fraction", 2.5), ("bool", True),
           ("null", None), ("object", {"h": 3}), ("pair of one", [3]), ("pair of three", [3, 3, 3]),
           ("empty pair", []), ("pair with a string", [2, "2"]), ("pair with a zero", [1, 0]),
           ("pair with a negative", [-2, 1]), *HUGE,
           ("pair with 2^62", [1, 2**62])]
    # For the other keys, two kinds each of: out of range, wrong type, a pair of the wrong
    # length, too large for any bound (kinds and values rotate over the keys).
    RANGE, TYPE = [-1, -2**62], ["3", 2.5, None, True, {"h": 3}, 1e300]
    PAIRS, LARGE = [[3], [3, 3, 3], [], [2, "2"]], [2**40, 2**62, 2**64, [1, 2**62]]

    def check_key(self, spec, index, layer, key, value, label, every_command=False):
        bad = copy.deepcopy(spec)
        bad["layers"][index][key] = value
        self.check_spec(f"{layer} {key} {label}", bad, layer, [f'"{key}" must be'], every_command)

    def test_every_kind_of_bad_conv_kernel(self):
        for label, value in self.BAD:
            self.check_key(CNN_SPEC, 0, "layer 0 (conv2d)", "kernel", value, label,
                           every_command=label in ("string", "2^62"))

    def test_each_window_key(self):
        keys = [(CNN_SPEC, 0, "layer 0 (conv2d)", key) for key in ("stride", "padding", "dilation")]
        for kind in ("maxpool2d", "avgpool2d"):
            keys += [(with_keys(CNN_SPEC, 2, type=kind), 2, f"layer 2 ({kind})", key)
                     for key in ("kernel", "stride", "padding")]
        for i, (spec, index, layer, key) in enumerate(keys):
            kinds = (self.RANGE, self.TYPE, self.PAIRS, self.LARGE)
            for kind in (kinds[i % 4], kinds[(i + 2) % 4]):  # each kind on half the keys
                value = kind[i % len(kind)]
                self.check_key(spec, index, layer, key, value, json.dumps(value))

    def test_required_kernel(self):
        self.check_spec("conv2d", with_keys(CNN_SPEC, 0, kernel=None), "layer 0 (conv2d)",
                        ['needs "kernel"'])
        self.check_spec("maxpool2d", with_keys(CNN_SPEC, 2, kernel=None), "layer 2 (maxpool2d)",
                        ['needs "kernel"'])

    def test_window_does_not_fit(self):
        conv = "layer 0 (conv2d)"
        self.check_spec("kernel 9 on 8", with_keys(CNN_SPEC, 0, kernel=9), conv, ["does not fit"],
                        every_command=True)
        self.check_spec("kernel [3, 9] on 8", with_keys(CNN_SPEC, 0, kernel=[3, 9]), conv,
                        ["does not fit"])
        self.check_spec("dilation 4: span 9 on 8", with_keys(CNN_SPEC, 0, dilation=4), conv,
                        ["does not fit"])
        # Within every key's bound, but the span dilation·(kernel − 1) + 1 is ~2^48: no
        # overflow, the same clear error.
        self.check_spec("kernel and dilation 2^24",
                        with_keys(CNN_SPEC, 0, kernel=2**24, dilation=2**24), conv,
                        ["does not fit its input 8x8"])
        pool = "layer 2 (maxpool2d)"
        self.check_spec("pool kernel 7 on 6", with_keys(CNN_SPEC, 2, kernel=7), pool,
                        ["exceeds the padded input"], every_command=True)
        self.check_spec("pool kernel 2^31 on 6", with_keys(CNN_SPEC, 2, kernel=2**31), pool,
                        ["exceeds the padded input"])
        self.check_spec("pool padding over half the kernel", with_keys(CNN_SPEC, 2, padding=2),
                        pool, ["half the kernel"])

    def test_output_too_large(self):
        # Padding 2^24 within its bound: a [2, 2^25 + 6, 2^25 + 6] output, refused before
        # anything is allocated.
        self.check_spec("conv padding 2^24", with_keys(CNN_SPEC, 0, padding=2**24),
                        "layer 0 (conv2d)", ["output shape [2, 33554438, 33554438] has more than"],
                        every_command=True)
        self.check_spec("conv out 2^40", with_keys(CNN_SPEC, 0, out=2**40), "layer 0 (conv2d)",
                        ["every dimension must be in"])
        # Every dimension within bounds, but the product overflows int64: [2^31, 2^17, 2^17]
        # has 2^65 elements, which wrapped to 2 and passed the size check.
        spec = dict(with_keys(CNN_SPEC, 0, out=2**31, kernel=1), input=[1, 2**17, 2**17])
        self.check_spec("conv output of 2^65 elements", spec, "layer 0 (conv2d)",
                        ["output shape [2147483648, 131072, 131072] has more than 17179869184"])
        # The input shape itself: [1, 2^31, 2^31] (2^62 elements).
        with self.case("input of 2^62 elements") as d:
            cli.write(os.path.join(d, "bad.json"),
                      json.dumps(dict(CNN_SPEC, input=[1, 2**31, 2**31])).encode())
            self.fails(d, ["train", "--spec", "bad.json", "--data", "train.npz", "--out",
                           "out.safetensors", *THREADS], ["bad.json"],
                       ["input shape [1, 2147483648, 2147483648] has more than 17179869184"])


# ------------------------------------------------------------------- the other layers

class TestLayerKeys(LayerCase):

    def test_embedding_bag(self):
        bag = "layer 0 (embedding_bag)"
        for label, keys, phrase in (
                ("mode max", {"mode": "max"}, '"mode" = \'max\': must be one of mean, sum'),
                ("mode 3", {"mode": 3}, '"mode" must be a string'),
                ("mode empty", {"mode": ""}, '"mode" must not be empty'),
                ("padding_idx -1", {"padding_idx": -1}, '"padding_idx" = -1'),
                ("padding_idx = num_embeddings", {"padding_idx": 2002}, "not in [0, 2002)"),
                ("padding_idx 2^40", {"padding_idx": 2**40}, '"padding_idx" must be'),
                ("padding_idx 2^64", {"padding_idx": 2**64}, '"padding_idx" must be'),
                ("padding_idx 0.5", {"padding_idx": 0.5}, '"padding_idx" must be'),
                ("padding_idx string", {"padding_idx": "0"}, '"padding_idx" must be'),
                ("num_embeddings 0", {"num_embeddings": 0}, '"num_embeddings" = 0'),
                ("num_embeddings 2^62", {"num_embeddings": 2**62}, '"num_embeddings" must be'),
                ("dim 0", {"dim": 0}, '"dim" = 0'),
                ("dim 2^62", {"dim": 2**62}, '"dim" must be')):
            self.check_spec(label, with_keys(BAG_SPEC, 0, **keys), bag, [phrase],
                            every_command=label.startswith(("mode max", "padding_idx =")))

    def test_eps(self):
        for kind in ("layernorm", "batchnorm"):
            spec = edited(CNN_SPEC, lambda layers: layers.insert(4, {"type": kind}))
            spec["layers"][5].pop("weight"), spec["layers"][5].pop("bias")
            where = f"layer 4 ({kind})"
            for label, eps, phrase in (("0", 0, '"eps" = 0: must be > 0'),
                                       ("negative", -1e-5, '"eps" = -1e-05: must be > 0'),
                                       ("string", "1e-5", '"eps" must be a number'),
                                       ("null", None, '"eps" must be a number'),
                                       ("array", [1e-5], '"eps" must be a number')):
                bad = copy.deepcopy(spec)
                bad["layers"][4]["eps"] = eps
                self.check_spec(f"{kind} eps {label}", bad, where, [phrase])
        # 1e400 is valid JSON but no double: refused when the file is parsed.
        with self.case("eps 1e400") as d:
            text = json.dumps(CNN_SPEC).replace('"type": "relu"', '"type": "relu"}, {"type": '
                                                '"layernorm", "eps": 1e400')
            cli.write(os.path.join(d, "bad.json"), text.encode())
            self.fails(d, ["train", "--spec", "bad.json", "--data", "train.npz", "--out",
                           "out.safetensors", *THREADS], ["bad.json"], ["number overflow", "1e400"])

    def test_dropout_p(self):
        for label, p, phrase in (("1", 1, '"p" = 1: must be in [0, 1)'),
                                 ("negative", -0.1, '"p" = -0.1: must be in [0, 1)'),
                                 ("1.5", 1.5, "must be in [0, 1)"),
                                 ("string", "0.5", '"p" must be a number'),
                                 ("bool", False, '"p" must be a number')):
            spec = edited(CNN_SPEC, lambda layers: layers.insert(1, {"type": "dropout", "p": p}))
            self.check_spec(f"p {label}", spec, "layer 1 (dropout)", [phrase],
                            every_command=label == "1")

    def test_unknown_keys(self):
        # A key another layer type takes, or PyTorch's name for something lethe fixes.
        for index, kind, key in ((0, "conv2d", "groups"), (2, "maxpool2d", "dilation"),
                                 (2, "avgpool2d", "ceil_mode"), (3, "flatten", "start_dim")):
            spec = with_keys(CNN_SPEC, index, type=kind, **{key: 1})
            self.check_spec(f"{kind} {key}", spec, f"layer {index} ({kind})",
                            [f'unknown key "{key}"'])
        self.check_spec("embedding_bag max_norm", with_keys(BAG_SPEC, 0, max_norm=1.0),
                        "layer 0 (embedding_bag)", ['unknown key "max_norm"'])
        for kind, key in (("layernorm", "elementwise_affine"), ("batchnorm", "momentum"),
                          ("dropout", "inplace")):
            spec = edited(CNN_SPEC, lambda layers: layers.insert(4, {"type": kind, key: True}))
            spec["layers"][5].pop("weight"), spec["layers"][5].pop("bias")
            self.check_spec(f"{kind} {key}", spec, f"layer 4 ({kind})", [f'unknown key "{key}"'])
        spec = edited(CNN_SPEC, lambda layers: layers.insert(
            1, {"type": "residual", "layers": [{"type": "relu"}], "activation": "relu"}))
        self.check_spec("residual activation", spec, "layer 1 (residual)",
                        ['unknown key "activation"'])


# -------------------------------------------------------------------- residual, frozen

class TestResidualAndFrozen(LayerCase):

    @staticmethod
    def after_conv(*layers):
        """CNN_SPEC with `layers` inserted after the conv (at index 1; the input [2, 6, 6])."""
        def edit(ls):
            ls[1:1] = layers
        return edited(CNN_SPEC, edit)

    def test_residual(self):
        conv = {"type": "conv2d", "out": 3, "kernel": 3, "padding": 1}
        for label, spec, layer, phrase in (
                ("body changes the channels", self.after_conv({"type": "residual", "layers": [conv]}),
                 "layer 1 (residual)", "the body gives shape [3, 6, 6] but y = x + body(x) needs "
                                       "its input's, [2, 6, 6]"),
                ("body shrinks the image",
                 self.after_conv({"type": "residual", "layers": [{"type": "maxpool2d", "kernel": 2}]}),
                 "layer 1 (residual)", "the body gives shape [2, 3, 3]"),
                ("empty body", self.after_conv({"type": "residual", "layers": []}),
                 "layer 1 (residual)", 'needs a non-empty "layers" body'),
                ("no body", self.after_conv({"type": "residual"}),
                 "layer 1 (residual)", 'needs a non-empty "layers" body'),
                ("body not an array", self.after_conv({"type": "residual", "layers": {"type": "relu"}}),
                 "layer 1", '"layers" must be an array'),
                ("nested bad key", self.after_conv(
                    {"type": "residual", "layers": [{"type": "relu"}, {"type": "residual", "layers": [
                        {"type": "dropout", "p": 2}]}]}),
                 "layer 1.1.0 (dropout)", '"p" = 2'),
                ("nested empty body", self.after_conv(
                    {"type": "residual", "layers": [{"type": "residual", "layers": []}]}),
                 "layer 1.0 (residual)", 'needs a non-empty "layers" body'),
                ("nested shape change", self.after_conv(
                    {"type": "residual", "layers": [{"type": "residual", "layers": [
                        {"type": "flatten"}]}]}),
                 "layer 1.0 (residual)", "the body gives shape [72]"),
                ("nested unknown type", self.after_conv(
                    {"type": "residual", "layers": [{"type": "relu"}, {"type": "conv3d"}]}),
                 "layer 1.1", 'unknown layer type "conv3d"'),
                ("body on a layer that takes none", self.after_conv(
                    {"type": "relu", "layers": [{"type": "relu"}]}),
                 "layer 1 (relu)", 'unknown key "layers"')):
            self.check_spec(label, spec, layer, [phrase],
                            every_command=label in ("empty body", "nested bad key"))

    def test_frozen_without_parameters(self):
        phrase = '"frozen": true on a layer without parameters'
        for label, layer in (("relu", {"type": "relu"}), ("dropout", {"type": "dropout"}),
                             ("maxpool2d", {"type": "maxpool2d", "kernel": 1}),
                             ("residual", {"type": "residual", "layers": [{"type": "relu"}]}),
                             ("layernorm without weight or bias", {"type": "layernorm"}),
                             # Its running statistics are fixed tensors, not parameters.
                             ("batchnorm without weight or bias", {"type": "batchnorm"})):
            spec = self.after_conv(dict(layer, frozen=True))
            self.check_spec(label, spec, f"layer 1 ({layer['type']})", [phrase],
                            every_command=label == "relu")
        for value in (1, "yes"):
            self.check_spec(f"frozen {value!r}", with_keys(CNN_SPEC, 0, frozen=value),
                            "layer 0 (conv2d)", ['"frozen" must be true or false'])
        # A frozen residual whose body has parameters: the body's layers are frozen one by
        # one, the wrapper has nothing of its own.
        spec = self.after_conv({"type": "residual", "frozen": True,
                                "layers": [{"type": "conv2d", "out": 2, "kernel": 3, "padding": 1}]})
        self.check_spec("frozen residual around a conv", spec, "layer 1 (residual)", [phrase],
                        every_command=False)


# ---------------------------------------------------------------------- shapes, tensors

class TestShapes(LayerCase):

    def test_layers_that_do_not_chain(self):
        for label, spec, layer, phrase in (
                ("linear on an image", edited(CNN_SPEC, lambda ls: ls.pop(3)), "layer 3 (linear)",
                 "takes a vector, but its input has shape [2, 3, 3]"),
                ("conv after flatten", edited(CNN_SPEC, lambda ls: ls.insert(0, {"type": "flatten"})),
                 "layer 1 (conv2d)", "takes an image [C, H, W] (or [H, W]), but its input has shape [64]"),
                ("pooling a vector", edited(CNN_SPEC, lambda ls: ls.insert(4, {"type": "avgpool2d", "kernel": 2})),
                 "layer 4 (avgpool2d)", "takes images [C, H, W], but its input has shape [18]"),
                ("global_avgpool on a vector",
                 edited(CNN_SPEC, lambda ls: ls.insert(4, {"type": "global_avgpool"})),
                 "layer 4 (global_avgpool)", "takes images [C, H, W]"),
                ("batchnorm on [2, 32]",
                 {"format": "lethe/1", "input": [2, 32], "loss": "cross_entropy",
                  "layers": [{"type": "batchnorm"}, {"type": "flatten"},
                             {"type": "linear", "out": 10}]},
                 "layer 0 (batchnorm)", "takes features [C] or images [C, H, W]"),
                ("embedding_bag not first",
                 edited(BAG_SPEC, lambda ls: ls.insert(0, {"type": "identity"})),
                 "layer 1 (embedding_bag)", "must be the model's first layer")):
            self.check_spec(label, spec, layer, [phrase])

    def test_tensors_disagree_with_the_spec(self):
        conv = "layer 0 (conv2d)"
        for label, tensors, spec, layer, phrase in (
                ("conv kernel 5 in the spec, 3 in the file", CNN_TENSORS,
                 with_keys(CNN_SPEC, 0, kernel=5, padding=1), conv,
                 'tensor "0.weight" has shape [2, 1, 3, 3], expected [2, 1, 5, 5]'),
                ("conv weight for 3 channels", [("0.weight", (2, 3, 3, 3)), *CNN_TENSORS[1:]],
                 CNN_SPEC, conv, 'has shape [2, 3, 3, 3], expected [2, 1, 3, 3]'),
                ("conv weight of rank 3", [("0.weight", (2, 9, 1)), *CNN_TENSORS[1:]], CNN_SPEC,
                 conv, "a conv2d weight must be [out, in, kh, kw]"),
                ("conv out 4 in the spec", CNN_TENSORS, with_keys(CNN_SPEC, 0, out=4), conv,
                 'spec says "out": 4 but tensor "0.weight" has 2 output channels'),
                ("conv bias of 3", [*CNN_TENSORS[:1], ("0.bias", (3,)), *CNN_TENSORS[2:]],
                 CNN_SPEC, conv, 'tensor "0.bias" has shape [3], expected [2]'),
                ("linear after pooling expects 18", [*CNN_TENSORS[:2], ("4.weight", (10, 72)),
                                                     CNN_TENSORS[3]],
                 CNN_SPEC, "layer 4 (linear)", "takes 72 inputs but the previous layer has 18"),
                ("batchnorm statistics of 3 channels",
                 [*CNN_TENSORS, ("1.running_mean", (3,)), ("1.running_var", (2,))],
                 edited(CNN_SPEC, lambda ls: ls.insert(1, {"type": "batchnorm"})),
                 "layer 1 (batchnorm)", 'tensor "1.running_mean" has shape [3], expected [2]'),
                ("layernorm weight of the wrong shape",
                 [*CNN_TENSORS, ("ln.weight", (72,))],
                 edited(CNN_SPEC, lambda ls: ls.insert(1, {"type": "layernorm", "weight": "ln.weight"})),
                 "layer 1 (layernorm)", 'tensor "ln.weight" has shape [72], expected [2, 6, 6]')):
            self.check_model(label, model_bytes(spec, tensors), layer, [phrase],
                             every_command=label.startswith(("conv kernel 5", "batchnorm")))

    def test_embedding_table_disagrees(self):
        spec = with_keys(BAG_SPEC, 0, num_embeddings=100)
        for args in (("inspect", "bad.safetensors"),
                     ("eval", "--model", "bad.safetensors", "--data", "text.npz", *THREADS)):
            with self.case(args[0]) as d:
                cli.write(os.path.join(d, "bad.safetensors"), model_bytes(spec, BAG_TENSORS))
                self.fails(d, list(args), ["bad.safetensors", "layer 0 (embedding_bag)"],
                           ['spec says "num_embeddings": 100 but tensor "0.weight" has 2002 rows'])


# ------------------------------------------------------------------------------ data

class TestDataAgainstLayers(LayerCase):
    """The data's dtype and ids against the model's first layer, for every command that reads
    data with a model or a spec (test_embedding_bag.py checks `eval`'s messages)."""

    def commands(self, model, spec, data):
        return [("eval", "--model", model, "--data", data, *THREADS),
                ("train", "--init", model, "--data", data, "--out", "out.safetensors", *THREADS),
                ("train", "--spec", spec, "--data", data, "--out", "out.safetensors", *THREADS)]

    def check_data(self, label, content, model, spec, phrases):
        for args in self.commands(model, "spec.json", "bad.npz"):
            with self.case(f"{label}: {' '.join(args[:2])}") as d:
                cli.write(os.path.join(d, "bad.npz"), content)
                cli.write(os.path.join(d, "spec.json"), json.dumps(spec).encode())
                self.fails(d, list(args), ["bad.npz"], phrases)

    def test_integer_x_for_a_conv_model(self):
        X, y, ids = cli.load_train()
        self.check_data("int64 pixels", npz_bytes(X=X.astype(np.int64), y=y, ids=ids),
                        "cnn.safetensors", CNN_SPEC,
                        ["X has an integer dtype (token ids)", "first layer is conv2d"])

    def test_float_x_for_an_embedding_model(self):
        with np.load(os.path.join(TEXT, "train.npz")) as z:
            X, y, ids = z["X"], z["y"], z["ids"]
        self.check_data("float ids", npz_bytes(X=X.astype(np.float64), y=y, ids=ids),
                        "bag.safetensors", BAG_SPEC,
                        ["X holds float features", "first layer is embedding_bag"])

    def test_token_id_out_of_range(self):
        with np.load(os.path.join(TEXT, "train.npz")) as z:
            X, y, ids = z["X"].copy(), z["y"], z["ids"]
        for value, row in ((2002, 5), (-1, 9), (2**62, 11)):
            bad = X.copy()
            bad[row, 3] = value
            self.check_data(f"id {value}", npz_bytes(X=bad, y=y, ids=ids), "bag.safetensors",
                            BAG_SPEC, [f"X row {row} holds token id {value}", "outside [0, 2002)"])


def main():
    return run_tests(__name__)


if __name__ == "__main__":
    sys.exit(main())
