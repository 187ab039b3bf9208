#!/usr/bin/env python3
"""Export PyTorch models and data sets to lethe's file formats, and read them back.

lethe model files are safetensors files: an 8-byte little-endian header length N,
N bytes of JSON header (padded with spaces to a multiple of 8), then the packed tensor
data. The header maps each tensor name to {"dtype": "F64"|"F32", "shape": [...],
"data_offsets": [begin, end]}; sorted by offset the tensors tile the data buffer exactly.
The architecture travels as a JSON string in ``__metadata__["lethe"]``::

    {"format": "lethe/1",
     "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 32},
                {"type": "tanh"},
                {"type": "linear", "weight": "2.weight", "bias": "2.bias", "out": 10}],
     "loss": "cross_entropy",
     "l2": 0.001}

Tensor names are the ``state_dict`` names of the exported ``nn.Sequential``. A linear
layer's weight is [out, in] as in ``nn.Linear`` (y = x Wᵀ + b). Activations: relu, tanh,
sigmoid, gelu (exact erf form), softplus (exact log(1 + eˣ)), identity.

Loss conventions (lethe minimises L(θ) = (1/n) Σᵢ lossᵢ(θ) + (l2/2)‖θ‖², the sum over
*all* parameters, weights and biases):

* ``cross_entropy``: integer labels 0..C-1, output width C; lossᵢ = logsumexp(f) − f[y],
  i.e. ``nn.CrossEntropyLoss()`` (mean reduction).
* ``logistic``: labels 0/1, output width 1; lossᵢ = softplus(f) − y·f, i.e.
  ``nn.BCEWithLogitsLoss()`` on the single logit.
* ``mse``: float targets [n] or [n, k]; lossᵢ = ½‖f(x) − y‖², *summed* over the outputs
  and halved. This is NOT ``nn.MSELoss()``, which averages over outputs and has no ½:
  MSELoss = (2/k)·(lethe's mean loss).
* The network output is the last layer's: cross_entropy and logistic apply their own
  softmax / sigmoid, so a final nn.Sigmoid / nn.Softmax / nn.LogSoftmax in front of them
  is refused (a model trained with nn.BCELoss or nn.NLLLoss exports as ``model[:-1]``).
* ``l2``: the penalty is (l2/2)‖θ‖², so its gradient is l2·θ: ``torch.optim.SGD(...,
  weight_decay=wd)`` (which adds wd·θ to the gradient, biases included unless you use
  parameter groups) corresponds to ``l2 = wd``.

Data sets are ``.npz`` files with ``X`` [n, d] float64 (or float32; [n, C, H, W] images;
[n, L] int64 token ids for a model starting with embedding_bag, export_dataset(...,
tokens=True)), ``y`` [n] int64 labels (float [n] or [n, k] targets for mse) and optional
``ids`` [n] int64 (unique).

Use as a module (``sys.path`` must include tools/)::

    from export_torch import export_model, export_dataset, load_model, Residual
    spec = export_model(model, "model.safetensors", loss="cross_entropy", l2=1e-3)
    spec = export_model(cnn, "cnn.safetensors", loss="cross_entropy", input_shape=(1, 8, 8))

Supported modules (docs/formats.md, "Exporting from PyTorch", has the table): nn.Linear,
nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d(1) + nn.Flatten (lethe's
global_avgpool), nn.Flatten, nn.EmbeddingBag, nn.LayerNorm, nn.BatchNorm1d/2d (as their
evaluation-mode function), nn.Dropout (the identity), the activations above, nested
nn.Sequentials (flattened into the list) and this module's Residual(body) (x + body(x)).
A module whose parameters all have requires_grad=False is exported "frozen": true.
For backbones lethe cannot express, export_features writes their features as a data
set, and the head is exported as the model (the head-only route).

or as a command: ``python3 tools/export_torch.py --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import zipfile
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "lethe/1"
LOSSES = ("cross_entropy", "logistic", "mse")
ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}

_ST_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4")}
_TORCH_TO_ST = {torch.float64: "F64", torch.float32: "F32"}
_DTYPE_ALIASES = {
    "f64": torch.float64, "float64": torch.float64, "double": torch.float64,
    "f32": torch.float32, "float32": torch.float32, "float": torch.float32,
}
# Same bound as lethe's reader: a larger header is treated as corrupt.
_MAX_HEADER = 100 * 1000 * 1000


class ExportError(ValueError):
    """The model, spec or file cannot be expressed in (or read from) lethe's format."""


# --------------------------------------------------------------------------- model spec

def _activation_name(module: nn.Module, where: str) -> str | None:
    """lethe's name for an activation module, None if `module` is not an activation."""
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.Tanh):
        return "tanh"
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, nn.Identity):
        return "identity"
    if isinstance(module, nn.GELU):
        # lethe implements only the exact form x·Φ(x); the tanh approximation differs by
        # up to ~1e-3, far more than the parity lethe promises.
        if getattr(module, "approximate", "none") != "none":
            raise ExportError(f"{where}: nn.GELU(approximate={module.approximate!r}) is not "
                              "supported; lethe's gelu is the exact erf form "
                              "(approximate='none')")
        return "gelu"
    if isinstance(module, nn.Softplus):
        # lethe computes the exact log(1 + eˣ). torch returns x itself above `threshold`
        # (default 20), which differs from the exact value by log1p(e^-x) < 2.1e-9, so only
        # the default is accepted and the difference is documented in docs/formats.md.
        if module.beta != 1 or module.threshold != 20:
            raise ExportError(f"{where}: nn.Softplus(beta={module.beta}, threshold="
                              f"{module.threshold}) is not supported; only the default "
                              "nn.Softplus() (beta=1) maps to lethe's softplus")
        return "softplus"
    return None


def _resolve_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype is not None and dtype not in _TORCH_TO_ST:
            raise ExportError(f"dtype {dtype} is not supported; use float32 or float64")
        return dtype
    if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
        dtype = np.dtype(dtype).name
    key = str(dtype).lower()
    if key not in _DTYPE_ALIASES:
        raise ExportError(f"dtype {dtype!r} is not supported; use 'f32' or 'f64'")
    return _DTYPE_ALIASES[key]


class Residual(nn.Module):
    """y = x + body(x): lethe's ``residual`` layer, a skip connection around `body`.

    `body` is an nn.Sequential (or one module) of supported modules whose output has the
    input's shape; bodies may contain further Residuals. Build a ResNet-style block as
    ``nn.Sequential(Residual(nn.Sequential(conv, bn, relu, conv, bn)), nn.ReLU())``.
    """

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


def _is_residual(module: nn.Module) -> bool:
    """Whether `module` is this file's Residual. Run as a script (the CLI), this file is
    __main__, while a model saved with torch.save(model) refers to export_torch.Residual,
    which torch.load imports as a second copy of this module: the same class."""
    cls = type(module)
    return isinstance(module, Residual) or (
        cls.__qualname__ == "Residual" and cls.__module__ in ("export_torch", "__main__"))


# The module types export_model accepts, for refusal messages.
SUPPORTED_MODULES = ("nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d(1) "
                     "+ nn.Flatten, nn.Flatten, nn.EmbeddingBag, nn.LayerNorm, nn.BatchNorm1d, "
                     "nn.BatchNorm2d, nn.Dropout, export_torch.Residual, nested nn.Sequential, "
                     "nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU(approximate='none'), nn.Softplus(), "
                     "nn.Identity")


def _sequence(module: nn.Module, path: str) -> list[tuple[str, nn.Module]]:
    """The modules of `module` in order, nested nn.Sequentials flattened into the list,
    each with its state_dict path ("3", "3.1", "2.body.0")."""
    if not isinstance(module, nn.Sequential):
        return [(path, module)]
    items = []
    for name, child in module.named_children():
        items += _sequence(child, f"{path}.{name}" if path else name)
    return items


def _int_or_pair(value) -> int | list[int]:
    """PyTorch's int-or-tuple argument as lethe writes it: an int when both sides agree."""
    if isinstance(value, int):
        return value
    a, b = (int(v) for v in value)
    return a if a == b else [a, b]


class _SpecBuilder:
    """Turns a (flattened) nn.Sequential into lethe layers, collecting the tensors.

    `rank` is what is known of the example's shape where the walk is: None (nothing: the
    model's input, no input_shape given, which lethe flattens), 1 (a feature vector) or
    3 ([C, H, W]). It decides what an nn.Flatten means: on [C, H, W] it is lethe's flatten;
    on a vector (or on the unshaped input, which lethe flattens itself) it changes nothing
    and is left out.
    """

    def __init__(self, rank: int | None):
        self.rank = rank
        self.tensors: list[tuple[str, torch.Tensor]] = []
        self.fixed_buffers: set[str] = set()  # buffers written as fixed tensors
        self.first = True                     # no module seen yet (for EmbeddingBag)

    def layers(self, items: list[tuple[str, nn.Module]]) -> list[dict]:
        out = []
        i = 0
        while i < len(items):
            path, module = items[i]
            nxt = items[i + 1] if i + 1 < len(items) else None
            layer, consumed = self.layer(path, module, nxt)
            self.first = False
            if layer is not None:
                out.append(layer)
            i += consumed
        return out

    def _where(self, path: str, module: nn.Module) -> str:
        return f"model.{path} ({type(module).__name__})"

    def _params(self, layer: dict, path: str, module: nn.Module,
                names: list[tuple[str, str]]) -> None:
        """Adds the module's parameters (spec key, attribute) present, and "frozen" when
        every one has requires_grad=False; some frozen and some not is refused."""
        present = [(key, attr, getattr(module, attr)) for key, attr in names
                   if getattr(module, attr, None) is not None]
        for key, attr, t in present:
            layer[key] = f"{path}.{attr}"
            self.tensors.append((f"{path}.{attr}", t))
        frozen = [attr for _, attr, t in present if not t.requires_grad]
        if frozen and len(frozen) != len(present):
            trainable = [attr for _, attr, t in present if t.requires_grad]
            raise ExportError(
                f"{self._where(path, module)}: {', '.join(frozen)} frozen (requires_grad=False) "
                f"but {', '.join(trainable)} not; lethe freezes whole layers (\"frozen\": true), "
                "so set requires_grad the same on all of the module's parameters")
        if frozen:
            layer["frozen"] = True

    def _shaped(self, path: str, module: nn.Module, what: str) -> None:
        """The module needs a [C, H, W] example."""
        if self.rank is None:
            raise ExportError(f"{self._where(path, module)}: a model whose first shape-dependent "
                              f"module is {what} needs the example's shape: pass "
                              "input_shape=(C, H, W) (--input-shape C H W)")
        if self.rank != 3:
            raise ExportError(f"{self._where(path, module)}: {what} needs [C, H, W] inputs but "
                              "gets a feature vector here")

    def layer(self, path: str, m: nn.Module, nxt) -> tuple[dict | None, int]:
        """(the lethe layer for module m or None, how many modules it consumed)."""
        where = self._where(path, m)
        if isinstance(m, nn.Linear):
            if self.rank == 3:
                raise ExportError(f"{where}: nn.Linear on [C, H, W] inputs acts on the last "
                                  "dimension only; put nn.Flatten() in front of it")
            layer = {"type": "linear"}
            self._params(layer, path, m, [("weight", "weight"), ("bias", "bias")])
            layer["out"] = int(m.out_features)
            self.rank = 1
            return _ordered(layer, ("type", "weight", "bias", "out", "frozen")), 1
        if isinstance(m, nn.Conv2d):
            self._shaped(path, m, "nn.Conv2d")
            if isinstance(m.padding, str):
                raise ExportError(f"{where}: padding={m.padding!r} is not supported; give the "
                                  "padding as numbers (padding='same' with stride 1 and an odd "
                                  "kernel k is padding=(k - 1) // 2 · dilation)")
            if m.groups != 1:
                raise ExportError(f"{where}: groups={m.groups} is not supported (lethe's conv2d "
                                  "is a dense convolution, groups=1)")
            if m.padding_mode != "zeros":
                raise ExportError(f"{where}: padding_mode={m.padding_mode!r} is not supported "
                                  "(lethe pads with zeros)")
            layer = {"type": "conv2d"}
            self._params(layer, path, m, [("weight", "weight"), ("bias", "bias")])
            layer.update(out=int(m.out_channels), kernel=_int_or_pair(m.kernel_size),
                         stride=_int_or_pair(m.stride), padding=_int_or_pair(m.padding),
                         dilation=_int_or_pair(m.dilation))
            return _ordered(layer, ("type", "weight", "bias", "out", "kernel", "stride",
                                    "padding", "dilation", "frozen")), 1
        if isinstance(m, nn.MaxPool2d):
            self._shaped(path, m, "nn.MaxPool2d")
            for option, value, default in (("ceil_mode", m.ceil_mode, False),
                                           ("dilation", _int_or_pair(m.dilation), 1),
                                           ("return_indices", m.return_indices, False)):
                if value != default:
                    raise ExportError(f"{where}: {option}={value!r} is not supported (lethe's "
                                      f"maxpool2d is nn.MaxPool2d with {option}={default!r})")
            return {"type": "maxpool2d", "kernel": _int_or_pair(m.kernel_size),
                    "stride": _int_or_pair(m.stride), "padding": _int_or_pair(m.padding)}, 1
        if isinstance(m, nn.AvgPool2d):
            self._shaped(path, m, "nn.AvgPool2d")
            for option, value, default in (("ceil_mode", m.ceil_mode, False),
                                           ("count_include_pad", m.count_include_pad, True),
                                           ("divisor_override", m.divisor_override, None)):
                if value != default:
                    raise ExportError(f"{where}: {option}={value!r} is not supported (lethe's "
                                      f"avgpool2d is nn.AvgPool2d with {option}={default!r})")
            return {"type": "avgpool2d", "kernel": _int_or_pair(m.kernel_size),
                    "stride": _int_or_pair(m.stride), "padding": _int_or_pair(m.padding)}, 1
        if isinstance(m, nn.AdaptiveAvgPool2d):
            size = m.output_size
            if _int_or_pair(size if isinstance(size, int) else tuple(size)) != 1:
                raise ExportError(f"{where}: output_size={size!r} is not supported; only "
                                  "nn.AdaptiveAvgPool2d(1) followed by nn.Flatten() (lethe's "
                                  "global_avgpool)")
            flatten = nxt is not None and isinstance(nxt[1], nn.Flatten) and \
                nxt[1].start_dim == 1 and nxt[1].end_dim == -1
            if not flatten:
                # torch gives [C, 1, 1], lethe's global_avgpool [C]: the same numbers, but a
                # following layer would see another shape, so the pair is the unit.
                raise ExportError(f"{where}: nn.AdaptiveAvgPool2d(1) is exported only when "
                                  "nn.Flatten() follows it (the pair is lethe's global_avgpool, "
                                  "[C, H, W] -> [C]); add nn.Flatten() after it")
            self._shaped(path, m, "nn.AdaptiveAvgPool2d")
            self.rank = 1
            return {"type": "global_avgpool"}, 2
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ExportError(f"{where}: only nn.Flatten() with start_dim=1, end_dim=-1 "
                                  "(the whole example) is supported")
            if self.rank == 3:
                self.rank = 1
                return {"type": "flatten"}, 1
            return None, 1  # a vector, or the unshaped input lethe flattens itself
        if isinstance(m, nn.EmbeddingBag):
            if not self.first:
                raise ExportError(f"{where}: nn.EmbeddingBag must be the model's first module "
                                  "(it reads the example's token ids)")
            if m.mode not in ("mean", "sum"):
                raise ExportError(f"{where}: mode={m.mode!r} is not supported (lethe's "
                                  "embedding_bag has mode 'mean' or 'sum')")
            if m.max_norm is not None:
                raise ExportError(f"{where}: max_norm={m.max_norm} is not supported (it "
                                  "renormalises rows in place during the forward pass)")
            if m.scale_grad_by_freq:
                raise ExportError(f"{where}: scale_grad_by_freq=True is not supported (lethe's "
                                  "derivatives are the plain ones)")
            if self.rank is None:
                # lethe reads the ids per example from "input" when it has no data at hand
                # (inspect, a model read alone), so the file must say it.
                raise ExportError(f"{where}: a model starting with nn.EmbeddingBag needs the "
                                  "number of token ids per example: pass input_shape=(L,) "
                                  "(--input-shape L)")
            if self.rank != 1:
                raise ExportError(f"{where}: the example must be [L] token ids")
            layer = {"type": "embedding_bag"}
            self._params(layer, path, m, [("weight", "weight")])
            layer["mode"] = m.mode
            if m.padding_idx is not None:
                layer["padding_idx"] = int(m.padding_idx)
            self.rank = 1
            return _ordered(layer, ("type", "weight", "mode", "padding_idx", "frozen")), 1
        if isinstance(m, nn.LayerNorm):
            if len(m.normalized_shape) != 1:
                raise ExportError(f"{where}: normalized_shape={tuple(m.normalized_shape)} is not "
                                  "supported; lethe's layernorm normalises the whole feature "
                                  "vector: nn.LayerNorm(d) after nn.Flatten()")
            if self.rank == 3:
                raise ExportError(f"{where}: lethe's layernorm normalises a feature vector; "
                                  "put nn.Flatten() in front of it")
            layer = {"type": "layernorm"}
            self._params(layer, path, m, [("weight", "weight"), ("bias", "bias")])
            layer["eps"] = float(m.eps)
            return _ordered(layer, ("type", "weight", "bias", "eps", "frozen")), 1
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not m.track_running_stats or m.running_mean is None:
                raise ExportError(f"{where}: track_running_stats=False is not supported (lethe's "
                                  "batchnorm is the evaluation-mode function, which needs the "
                                  "running statistics)")
            want = 3 if isinstance(m, nn.BatchNorm2d) else 1
            if self.rank is not None and self.rank != want:
                raise ExportError(f"{where}: gets {'[C, H, W]' if self.rank == 3 else 'vector'} "
                                  f"inputs here; {type(m).__name__} needs "
                                  f"{'[C, H, W]' if want == 3 else 'vectors'}")
            if want == 3:
                self._shaped(path, m, "nn.BatchNorm2d")
            layer = {"type": "batchnorm"}
            self._params(layer, path, m, [("weight", "weight"), ("bias", "bias")])
            for key in ("running_mean", "running_var"):
                layer[key] = f"{path}.{key}"
                self.tensors.append((f"{path}.{key}", getattr(m, key)))
                self.fixed_buffers.add(f"{path}.{key}")
            self.fixed_buffers.add(f"{path}.num_batches_tracked")
            layer["eps"] = float(m.eps)
            return _ordered(layer, ("type", "weight", "bias", "running_mean", "running_var",
                                    "eps", "frozen")), 1
        if type(m) is nn.Dropout:
            if m.p >= 1:
                raise ExportError(f"{where}: p={m.p} is not supported (lethe's dropout takes "
                                  "p in [0, 1); with p = 1 training saw only zeros)")
            return {"type": "dropout", "p": float(m.p)}, 1
        if _is_residual(m):
            body = _sequence(m.body, f"{path}.body")
            if not body:
                raise ExportError(f"{where}: the body is empty")
            rank = self.rank
            layers = self.layers(body)
            if self.rank != rank:
                raise ExportError(f"{where}: the body changes the example's shape (lethe's "
                                  "residual needs body(x) shaped as x)")
            if not layers:
                raise ExportError(f"{where}: the body has no layer lethe would compute")
            return {"type": "residual", "layers": layers}, 1
        act = _activation_name(m, where)
        if act is None:
            raise ExportError(f"{where} is not supported by lethe; supported modules: "
                              f"{SUPPORTED_MODULES}")
        return {"type": act}, 1


def _ordered(layer: dict, keys: tuple) -> dict:
    """`layer` with its keys in a fixed order (the JSON reads as the docs' tables)."""
    return {k: layer[k] for k in keys if k in layer}


def model_spec(model: nn.Sequential, loss: str, l2: float = 0.0,
               allow_output_activation: bool = False,
               input_shape=None) -> tuple[dict, list[tuple[str, torch.Tensor]]]:
    """The lethe spec of `model` and its tensors [(name, tensor)] in file order.

    input_shape: one example's shape, (C, H, W) for images (required when the first
    shape-dependent module is nn.Conv2d or a pooling), (L,) token ids, (d,); written as
    the spec's "input". Raises ExportError for any module lethe cannot represent, naming
    its path in the model ("model.3.body.0 (Conv2d)"), and for a final sigmoid in front of
    a loss that applies its own (see _check_output_activation) unless
    allow_output_activation.
    """
    if not isinstance(model, nn.Sequential):
        raise ExportError(f"expected a torch.nn.Sequential, got {type(model).__name__}: rebuild "
                          "it as an nn.Sequential of supported modules, or export its "
                          "state_dict with a lethe spec naming its tensors (--spec)")
    if loss not in LOSSES:
        raise ExportError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    l2 = float(l2)
    if not math.isfinite(l2) or l2 < 0:
        raise ExportError(f"l2 must be a finite number >= 0, got {l2}")
    shape = _check_input_shape(input_shape)
    items = _sequence(model, "")
    _check_output_activation(model, items, loss, allow_output_activation)

    builder = _SpecBuilder(len(shape) if shape else None)
    layers = builder.layers(items)
    if not any(_trainable(layer) for layer in _walk(layers)):
        raise ExportError("the model has no layer with trainable parameters (every parameter "
                          "has requires_grad=False, or there are none), so nothing to analyse")
    # Any other buffer would be silently dropped; refuse rather than lie.
    buffers = [n for n, _ in model.named_buffers() if n not in builder.fixed_buffers]
    if buffers:
        raise ExportError(f"the model has buffers lethe cannot represent: {', '.join(buffers)}")

    spec = {"format": FORMAT}
    if shape:
        spec["input"] = list(shape)
    spec.update(layers=layers, loss=loss, l2=l2)
    return spec, builder.tensors


def _check_input_shape(input_shape) -> tuple[int, ...] | None:
    if input_shape is None:
        return None
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ExportError(f"input_shape must be integers, got {input_shape!r}") from None
    if len(shape) not in (1, 3) or any(s < 1 for s in shape):
        raise ExportError(f"input_shape must be (C, H, W), (L,) or (d,) with positive sizes, "
                          f"got {list(shape)}")
    return shape


# The layer types with parameters, and the spec keys that name them.
_PARAMETER_KEYS = {"linear": ("weight", "bias"), "conv2d": ("weight", "bias"),
                   "embedding_bag": ("weight",), "layernorm": ("weight", "bias"),
                   "batchnorm": ("weight", "bias")}
# Keys naming tensors per type (fixed ones included): the file's tensors.
_TENSOR_KEYS = dict(_PARAMETER_KEYS, batchnorm=("weight", "bias", "running_mean", "running_var"))


def _walk(layers: list[dict]):
    """Every layer, depth-first through residual bodies (lethe's parameter order)."""
    for layer in layers:
        yield layer
        if layer.get("type") == "residual":
            yield from _walk(layer["layers"])


def _default_weight(layer_type: str) -> bool:
    """Whether the type's "weight" defaults to "<layer index>.weight" (always present)."""
    return layer_type in ("linear", "conv2d", "embedding_bag")


def _default_tensor_name(layer_type: str, key: str, index: str) -> str | None:
    """The tensor a layer has when its spec leaves `key` out (None: no such tensor):
    "<index>.weight" for linear, conv2d and embedding_bag, "<index>.running_mean" and
    "<index>.running_var" for batchnorm, as lethe reads them."""
    if key == "weight" and _default_weight(layer_type):
        return f"{index}.weight"
    if layer_type == "batchnorm" and key in ("running_mean", "running_var"):
        return f"{index}.{key}"
    return None


def _layer_parameters(layer: dict, index: str) -> list[str]:
    kind = layer.get("type")
    names = []
    for key in _PARAMETER_KEYS.get(kind, ()):
        if key in layer:
            names.append(layer[key])
        elif key == "weight" and _default_weight(kind):
            names.append(f"{index}.weight")
    return names


def _trainable(layer: dict) -> bool:
    kind = layer.get("type")
    if kind not in _PARAMETER_KEYS or layer.get("frozen"):
        return False
    return _default_weight(kind) or "weight" in layer or "bias" in layer


# The losses that normalise the network output themselves, and how.
_OWN_NORMALISATION = {"cross_entropy": "a softmax", "logistic": "a sigmoid"}


def _check_output_activation(model: nn.Sequential, items, loss: str, allow: bool) -> None:
    """Refuse a final Sigmoid / Softmax / LogSoftmax in front of a loss that applies its own.

    lethe's cross_entropy and logistic losses take logits (they are nn.CrossEntropyLoss and
    nn.BCEWithLogitsLoss). A model ending in nn.Sigmoid was almost surely trained with
    nn.BCELoss on probabilities; exporting it whole would make lethe squash the output twice:
    every accuracy, loss and influence score would be those of another objective, without
    any error. BCELoss(sigmoid(z), y) = BCEWithLogitsLoss(z, y) and NLLLoss(log_softmax(z), y)
    = CrossEntropyLoss(z, y), so the same model without its last module is exactly the model
    lethe understands. nn.Softmax and nn.LogSoftmax are refused anyway (lethe has no such
    layer); as the final module they get this message, which names the fix.
    """
    modules = [(n, m) for n, m in items if not isinstance(m, (nn.Identity, nn.Dropout))]
    name, last = modules[-1] if modules else (None, None)
    own = _OWN_NORMALISATION.get(loss)
    if own is None or not isinstance(last, (nn.Sigmoid, nn.Softmax, nn.LogSoftmax)):
        return
    kind = type(last).__name__
    trained, same = {
        "Sigmoid": ("nn.BCELoss on its output", "nn.BCEWithLogitsLoss on the logit"),
        "LogSoftmax": ("nn.NLLLoss on its output", "nn.CrossEntropyLoss on the logits"),
        "Softmax": ("nn.NLLLoss on the log of its output", "nn.CrossEntropyLoss on the logits"),
    }[kind]
    right_loss = "logistic" if kind == "Sigmoid" else "cross_entropy"
    if isinstance(last, nn.Sigmoid) and allow:
        return
    without = ("model[:-1]" if list(model.children())[-1] is last
               else f"the model without layer {name}")
    message = (f"layer {name} ({kind}): the model ends in nn.{kind}, but loss={loss!r} applies "
               f"{own} itself (lethe's losses take logits), so lethe would evaluate and analyse "
               f"another objective. If it was trained with {trained} (= {same}), export "
               f"{without} with loss={right_loss!r}: the same model without the final nn.{kind}")
    if kind == "Sigmoid":
        message += (" (allow_output_activation=True / --allow-output-activation only if it "
                    f"really was trained with {own} on top of this sigmoid)")
    raise ExportError(message)


# Each layer type's keys besides "type" (lethe refuses any other).
_LAYER_KEYS = {
    "linear": {"weight", "bias", "out", "frozen"},
    "conv2d": {"weight", "bias", "out", "kernel", "stride", "padding", "dilation", "frozen"},
    "maxpool2d": {"kernel", "stride", "padding"},
    "avgpool2d": {"kernel", "stride", "padding"},
    "global_avgpool": set(),
    "flatten": set(),
    "embedding_bag": {"weight", "num_embeddings", "dim", "mode", "padding_idx", "frozen"},
    "layernorm": {"weight", "bias", "eps", "frozen"},
    "batchnorm": {"weight", "bias", "running_mean", "running_var", "eps", "frozen"},
    "dropout": {"p"},
    "residual": {"layers"},
    **{name: set() for name in ACTIVATIONS},
}


def validate_spec(spec: dict) -> None:
    """Check a lethe spec dict as strictly as lethe does; raises ExportError.

    Unknown keys and layer types are errors (a typo must not silently change the model);
    "l2" defaults to 0, and the "weight" of linear, conv2d and embedding_bag to
    "<layer index>.weight" (index "3", or "3.1" inside a residual body).
    """
    if not isinstance(spec, dict):
        raise ExportError("spec must be a JSON object")
    _check_keys(spec, {"format", "input", "layers", "loss", "l2"}, "spec")
    if spec.get("format") != FORMAT:
        raise ExportError(f"spec \"format\" must be {FORMAT!r}, got {spec.get('format')!r}")
    if spec.get("loss") not in LOSSES:
        raise ExportError(f"spec loss {spec.get('loss')!r} is not one of {', '.join(LOSSES)}")
    l2 = spec.get("l2", 0.0)
    if not _is_number(l2) or l2 < 0:
        raise ExportError(f"spec l2 must be a finite number >= 0, got {l2!r}")
    if "input" in spec:
        shape = spec["input"]
        if not isinstance(shape, list) or len(shape) not in (1, 3) or \
                not all(_is_int(s) and s >= 1 for s in shape):
            raise ExportError(f"spec input must be [C, H, W], [L] or [d] of positive integers, "
                              f"got {shape!r}")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ExportError("spec layers must be a non-empty list")
    _validate_layers(layers, "", set())
    if not any(_trainable(layer) for layer in _walk(layers)):
        raise ExportError("spec needs at least one layer with trainable parameters (not frozen)")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validate_layers(layers: list, prefix: str, names: set) -> None:
    for i, layer in enumerate(layers):
        index = f"{prefix}{i}"
        kind = layer.get("type") if isinstance(layer, dict) else None
        where = f"spec layer {index}"
        if not isinstance(layer, dict) or not isinstance(kind, str):
            raise ExportError(f"{where}: must be an object with a string \"type\"")
        if kind not in _LAYER_KEYS:
            raise ExportError(f"{where}: unknown type {kind!r} (known: "
                              f"{', '.join(_LAYER_KEYS)})")
        where = f"spec layer {index} ({kind})"
        _check_keys(layer, _LAYER_KEYS[kind] | {"type"}, where)
        for key in _TENSOR_KEYS.get(kind, ()):
            if key not in layer:
                name = _default_tensor_name(kind, key, index)
                if name is None:
                    continue
            else:
                name = layer[key]
            if not isinstance(name, str) or not name:
                raise ExportError(f"{where}: {key!r} must be a non-empty tensor name")
            if name in names:
                raise ExportError(f"{where}: tensor {name!r} is used twice")
            names.add(name)
        if "frozen" in layer:
            if not isinstance(layer["frozen"], bool):
                raise ExportError(f"{where}: 'frozen' must be true or false")
            if layer["frozen"] and not _layer_parameters(layer, index):
                raise ExportError(f"{where}: 'frozen' on a layer without parameters")
        if "out" in layer and (not _is_int(layer["out"]) or layer["out"] < 1):
            raise ExportError(f"{where}: 'out' must be a positive integer")
        if kind in ("conv2d", "maxpool2d", "avgpool2d"):
            if "kernel" not in layer:
                raise ExportError(f"{where}: 'kernel' is required")
            for key, least in (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
                if key in layer:
                    v = layer[key]
                    pair = v if isinstance(v, list) else [v]
                    if len(pair) not in (1, 2) or (isinstance(v, list) and len(v) != 2) or \
                            not all(_is_int(a) and a >= least for a in pair):
                        raise ExportError(f"{where}: {key!r} must be an integer >= {least} or a "
                                          f"pair of them, got {v!r}")
        if kind == "embedding_bag":
            if layer.get("mode", "mean") not in ("mean", "sum"):
                raise ExportError(f"{where}: 'mode' must be \"mean\" or \"sum\", got "
                                  f"{layer['mode']!r}")
            if "padding_idx" in layer and (not _is_int(layer["padding_idx"]) or
                                           layer["padding_idx"] < 0):
                raise ExportError(f"{where}: 'padding_idx' must be an integer >= 0")
        if "eps" in layer and (not _is_number(layer["eps"]) or layer["eps"] <= 0):
            raise ExportError(f"{where}: 'eps' must be a finite number > 0, got {layer['eps']!r}")
        if kind == "dropout" and "p" in layer and (not _is_number(layer["p"]) or
                                                   not 0 <= layer["p"] < 1):
            raise ExportError(f"{where}: 'p' must be a number in [0, 1), got {layer['p']!r}")
        for key in ("num_embeddings", "dim"):
            if key in layer and (not _is_int(layer[key]) or layer[key] < 1):
                raise ExportError(f"{where}: {key!r} must be a positive integer")
        if kind == "residual":
            body = layer.get("layers")
            if not isinstance(body, list) or not body:
                raise ExportError(f"{where}: 'layers' must be a non-empty list")
            _validate_layers(body, f"{index}.", names)


def _check_keys(obj: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ExportError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")


# --------------------------------------------------------------------- safetensors I/O

def write_safetensors(path: str, tensors: list[tuple[str, np.ndarray]],
                      metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (in the given order, packed back to back) to a safetensors file."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, array in tensors:
        array = np.asarray(array)
        st = next((k for k, v in _ST_DTYPES.items() if v == array.dtype.newbyteorder("<")), None)
        if st is None:
            raise ExportError(f"tensor {name}: dtype {array.dtype} is not F32/F64")
        if name in header:
            raise ExportError(f"duplicate tensor name {name!r}")
        blob = np.ascontiguousarray(array, dtype=_ST_DTYPES[st]).tobytes()
        header[name] = {"dtype": st, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    # Padding keeps the data buffer 8-byte aligned in memory-mapped readers.
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file (F32/F64 tensors) strictly: ({name: array}, metadata).

    Arrays come back in data-offset order (dict order). Raises ExportError if the
    header is malformed or the tensors do not tile the data buffer exactly.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ExportError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _MAX_HEADER or 8 + n > len(raw):
        raise ExportError(f"{path}: header length {n} exceeds the file size")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ExportError(f"{path}: __metadata__ must map strings to strings")
    data = raw[8 + n:]
    entries = []
    for name, info in header.items():
        try:
            dtype = _ST_DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ExportError(f"{path}: tensor {name!r} has a malformed or non-F32/F64 entry") from None
        if any(s < 0 for s in shape) or end - begin != math.prod(shape) * dtype.itemsize:
            raise ExportError(f"{path}: tensor {name!r}: offsets do not match shape and dtype")
        entries.append((begin, end, name, dtype, shape))
    entries.sort()
    cursor = 0
    tensors = {}
    for begin, end, name, dtype, shape in entries:
        if begin != cursor:
            raise ExportError(f"{path}: tensor {name!r} leaves a hole or overlaps at byte {cursor}")
        tensors[name] = np.frombuffer(data, dtype=dtype, count=math.prod(shape),
                                      offset=begin).reshape(shape).copy()
        cursor = end
    if cursor != len(data):
        raise ExportError(f"{path}: {len(data) - cursor} bytes after the last tensor")
    return tensors, metadata


# ------------------------------------------------------------------------ public API

def export_model(model: nn.Sequential, path: str, loss: str, l2: float = 0.0,
                 dtype: Any = None, allow_output_activation: bool = False,
                 input_shape=None) -> dict:
    """Write `model` to `path` as a lethe safetensors model; returns the spec dict.

    model: an nn.Sequential of supported modules (docs/formats.md, "Exporting from
           PyTorch"): nested nn.Sequentials are flattened into the list, Residual(body)
           is lethe's residual, parameters with requires_grad=False make their layer
           "frozen". BatchNorm is exported as its evaluation-mode function.
    loss:  "cross_entropy", "logistic" or "mse" (see the conventions above).
    l2:    the penalty coefficient: the objective adds (l2/2)‖θ‖² over the trainable
           parameters.
    dtype: None keeps the model's dtype (all tensors must share one, float32 or
           float64); "f32"/"f64" (or a torch/numpy dtype) converts.
    allow_output_activation: a final nn.Sigmoid in front of cross_entropy or logistic
           (which apply their own softmax / sigmoid) is refused unless this is True: it
           almost always means a model trained with nn.BCELoss, to be exported as
           model[:-1] (see docs/formats.md).
    input_shape: one example's shape, the spec's "input": (C, H, W) images (required
           when the first shape-dependent module is nn.Conv2d or a pooling), (L,) token
           ids, (d,). The model is checked to run on it (in torch, and layer by layer as
           lethe will read it).
    """
    spec, arrays = model_arrays(model, loss, l2, dtype, allow_output_activation, input_shape)
    write_safetensors(path, arrays, {"lethe": json.dumps(spec)})
    return spec


def model_arrays(model: nn.Sequential, loss: str, l2: float = 0.0, dtype: Any = None,
                 allow_output_activation: bool = False, input_shape=None
                 ) -> tuple[dict, list[tuple[str, np.ndarray]]]:
    """What export_model writes, in memory: (spec, [(tensor name, array), ...]) in file
    order, after every check export_model makes (the Python module's Model.from_torch
    builds its model from these)."""
    spec, tensors = model_spec(model, loss, l2, allow_output_activation, input_shape)
    validate_spec(spec)  # what lethe will check of the keys; model_spec's own checks name modules
    target = _resolve_dtype(dtype)
    dtypes = {t.dtype for _, t in tensors}
    if target is None:
        if len(dtypes) != 1:
            raise ExportError(f"parameters have mixed dtypes {sorted(map(str, dtypes))}; "
                              "pass dtype='f32' or 'f64'")
        target = dtypes.pop()
        if target not in _TORCH_TO_ST:
            raise ExportError(f"parameter dtype {target} is not supported; pass dtype='f32' or 'f64'")
    arrays = [(name, t.detach().to("cpu", target).contiguous().numpy()) for name, t in tensors]
    if "input" in spec:
        _check_runs(model, spec, dict(arrays))
    return spec, arrays


def _check_runs(model: nn.Module, spec: dict, tensors: dict[str, np.ndarray]) -> None:
    """The model runs on one example of spec["input"] in torch, and the spec's layers fit
    together on it as lethe will plan them (model_from_spec checks each layer's input)."""
    shape = spec["input"]
    tokens = spec["layers"][0]["type"] == "embedding_bag"
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    dtype = next((t.dtype for t in model.parameters()), torch.float64)
    x = torch.zeros((2, *shape), dtype=torch.int64 if tokens else dtype, device=device)
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except Exception as e:  # torch's own message, whatever the module
        raise ExportError(f"the model does not run on examples of input_shape {shape}: "
                          f"{type(e).__name__}: {e}") from None
    finally:
        model.train(training)
    model_from_spec(spec, torch.float64, tensors)


def model_from_spec(spec: dict, dtype: Any = torch.float64,
                    tensors: dict[str, np.ndarray] | None = None,
                    in_features: int | None = None) -> nn.Sequential:
    """Build the nn.Sequential a lethe spec describes, layer i of the spec at index i,
    in evaluation mode (batchnorm uses its running statistics, dropout is the identity).

    Modules: linear → nn.Linear, conv2d → nn.Conv2d, maxpool2d / avgpool2d →
    nn.MaxPool2d / nn.AvgPool2d, global_avgpool → nn.Sequential(nn.AdaptiveAvgPool2d(1),
    nn.Flatten()), flatten → nn.Flatten(), embedding_bag → nn.EmbeddingBag, layernorm →
    nn.LayerNorm, batchnorm → nn.BatchNorm1d / nn.BatchNorm2d (by the input's shape),
    dropout → nn.Dropout, residual → Residual(nn.Sequential(body)); a frozen layer's
    parameters have requires_grad=False.

    With `tensors` ({name: array}, e.g. from read_safetensors) parameters and statistics
    are copied from it and sizes come from them. Without, the parameters are torch's
    default initialisation, layers need their "out" and the input's shape comes from
    spec["input"] or `in_features` (embedding_bag needs tensors). Each layer's input is
    checked as lethe checks it, as far as the shape is known.
    """
    validate_spec(spec)
    target = _resolve_dtype(dtype) or torch.float64
    shape = tuple(spec["input"]) if "input" in spec else (
        (in_features,) if in_features is not None else None)
    builder = _ModuleBuilder(target, tensors)
    modules, _ = builder.build(spec["layers"], shape, "")
    return nn.Sequential(*modules).eval()


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


class _ModuleBuilder:
    """Builds torch modules from spec layers, following the example's shape.

    A shape is a tuple ((d,) or (C, H, W)), or None where it is not known (the model's
    input without spec["input"]); a known rank with unknown sizes is (None,) / (C, None,
    None).
    """

    def __init__(self, dtype: torch.dtype, tensors: dict[str, np.ndarray] | None):
        self.dtype = dtype
        self.tensors = tensors

    def tensor(self, where: str, name: str, shape: tuple | None = None) -> np.ndarray:
        if name not in self.tensors:
            raise ExportError(f"{where}: tensor {name!r} is missing")
        a = self.tensors[name]
        if shape is not None and (a.ndim != len(shape) or
                                  any(s is not None and s != d for s, d in zip(shape, a.shape))):
            want = ", ".join("?" if s is None else str(s) for s in shape)
            raise ExportError(f"{where}: tensor {name!r} has shape {list(a.shape)}, "
                              f"expected [{want}]")
        return a

    def copy(self, param: torch.Tensor, array: np.ndarray) -> None:
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(array)))

    def build(self, layers: list[dict], shape, prefix: str):
        modules = []
        for i, layer in enumerate(layers):
            index = f"{prefix}{i}"
            where = f"spec layer {index} ({layer['type']})"
            module, shape = self.layer(layer, index, where, shape)
            if layer.get("frozen"):
                for p in module.parameters():
                    p.requires_grad_(False)
            modules.append(module)
        return modules, shape

    def vector(self, where: str, shape, what: str) -> int | None:
        """The input's width; the input must be a vector."""
        if shape is None:
            return None
        if len(shape) != 1:
            raise ExportError(f"{where}: {what} needs a feature vector, but its input is "
                              f"[C, H, W] = {list(shape)}; add a flatten layer in front")
        return shape[0]

    def image(self, where: str, shape) -> tuple:
        if shape is None:
            raise ExportError(f"{where}: the example's shape is unknown; the spec needs "
                              "\"input\": [C, H, W]")
        if len(shape) != 3:
            raise ExportError(f"{where}: needs [C, H, W] inputs, but its input is a vector "
                              f"of {shape[0]}")
        return shape

    def layer(self, layer: dict, index: str, where: str, shape):
        kind = layer["type"]
        weight_name = layer.get("weight", f"{index}.weight")
        if kind in ACTIVATIONS:
            return ACTIVATIONS[kind](), shape
        if kind == "linear":
            width = self.vector(where, shape, "linear")
            if self.tensors is not None:
                w = self.tensor(where, weight_name, ("out" in layer and layer["out"] or None,
                                                     width))
                out_f, in_f = w.shape
            else:
                if width is None or "out" not in layer:
                    raise ExportError(f"{where}: without tensors every linear layer needs "
                                      "'out' and the input width (spec \"input\" or in_features)")
                in_f, out_f = width, layer["out"]
            m = nn.Linear(in_f, out_f, bias="bias" in layer, dtype=self.dtype)
            if self.tensors is not None:
                self.copy(m.weight, w)
                if "bias" in layer:
                    self.copy(m.bias, self.tensor(where, layer["bias"], (out_f,)))
            return m, (out_f,)
        if kind == "conv2d":
            c, h, w_ = self.image(where, shape)
            kernel = _pair(layer["kernel"])
            stride, padding, dilation = (_pair(layer.get(k, d)) for k, d in
                                         (("stride", 1), ("padding", 0), ("dilation", 1)))
            if self.tensors is not None:
                w = self.tensor(where, weight_name, (layer.get("out"), c, *kernel))
                out_c = w.shape[0]
            else:
                if "out" not in layer:
                    raise ExportError(f"{where}: without tensors conv2d needs 'out'")
                out_c = layer["out"]
            sizes = _window_out(where, (h, w_), kernel, stride, padding, dilation)
            m = nn.Conv2d(c, out_c, kernel, stride, padding, dilation, bias="bias" in layer,
                          dtype=self.dtype)
            if self.tensors is not None:
                self.copy(m.weight, w)
                if "bias" in layer:
                    self.copy(m.bias, self.tensor(where, layer["bias"], (out_c,)))
            return m, (out_c, *sizes)
        if kind in ("maxpool2d", "avgpool2d"):
            c, h, w_ = self.image(where, shape)
            kernel = _pair(layer["kernel"])
            stride = _pair(layer.get("stride", layer["kernel"]))
            padding = _pair(layer.get("padding", 0))
            if any(2 * p > k for p, k in zip(padding, kernel)):
                raise ExportError(f"{where}: padding {list(padding)} is more than half the "
                                  f"kernel {list(kernel)}")
            sizes = _window_out(where, (h, w_), kernel, stride, padding, (1, 1))
            cls = nn.MaxPool2d if kind == "maxpool2d" else nn.AvgPool2d
            return cls(kernel, stride, padding), (c, *sizes)
        if kind == "global_avgpool":
            c, _, _ = self.image(where, shape)
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), (c,)
        if kind == "flatten":
            c, h, w_ = self.image(where, shape)
            return nn.Flatten(), (c * h * w_ if None not in (c, h, w_) else None,)
        if kind == "embedding_bag":
            if index != "0":
                raise ExportError(f"{where}: embedding_bag must be the first layer (it reads "
                                  "the example's token ids)")
            if shape is not None:
                self.vector(where, shape, "embedding_bag")
            if self.tensors is not None:
                w = self.tensor(where, weight_name, (layer.get("num_embeddings"),
                                                     layer.get("dim")))
                num, dim = w.shape
            elif "num_embeddings" in layer and "dim" in layer:
                num, dim = layer["num_embeddings"], layer["dim"]
            else:
                raise ExportError(f"{where}: without tensors embedding_bag needs "
                                  "'num_embeddings' and 'dim'")
            padding_idx = layer.get("padding_idx")
            if padding_idx is not None and padding_idx >= num:
                raise ExportError(f"{where}: padding_idx {padding_idx} is outside [0, {num})")
            m = nn.EmbeddingBag(num, dim, mode=layer.get("mode", "mean"),
                                padding_idx=padding_idx, dtype=self.dtype)
            if self.tensors is not None:
                self.copy(m.weight, w)
            return m, (dim,)
        if kind == "layernorm":
            width = self.vector(where, shape, "layernorm")
            affine = "weight" in layer
            if "bias" in layer and not affine:
                raise ExportError(f"{where}: a bias without a weight has no nn.LayerNorm")
            if affine and self.tensors is not None:
                width = self.tensor(where, layer["weight"], (width,)).shape[0]
            if width is None:
                raise ExportError(f"{where}: the input width is unknown; the spec needs \"input\"")
            m = nn.LayerNorm(width, eps=layer.get("eps", 1e-5), elementwise_affine=affine,
                             dtype=self.dtype)
            if affine and "bias" not in layer:
                # nn.LayerNorm(bias=False) in torch >= 2.1; the same module on older ones.
                m.register_parameter("bias", None)
            if affine and self.tensors is not None:
                self.copy(m.weight, self.tensors[layer["weight"]])
                if "bias" in layer:
                    self.copy(m.bias, self.tensor(where, layer["bias"], (width,)))
            return m, shape if shape is not None else (width,)
        if kind == "batchnorm":
            affine = "weight" in layer
            if affine != ("bias" in layer):
                raise ExportError(f"{where}: nn.BatchNorm has a weight and a bias or neither")
            image = shape is not None and len(shape) == 3
            features = shape[0] if shape is not None else None
            mean_name = layer.get("running_mean", f"{index}.running_mean")
            var_name = layer.get("running_var", f"{index}.running_var")
            if self.tensors is not None:
                features = self.tensor(where, mean_name, (features,)).shape[0]
            if features is None:
                raise ExportError(f"{where}: the input width is unknown; the spec needs \"input\"")
            cls = nn.BatchNorm2d if image else nn.BatchNorm1d
            m = cls(features, eps=layer.get("eps", 1e-5), affine=affine, dtype=self.dtype)
            if self.tensors is not None:
                self.copy(m.running_mean, self.tensors[mean_name])
                self.copy(m.running_var, self.tensor(where, var_name, (features,)))
                if affine:
                    self.copy(m.weight, self.tensor(where, layer["weight"], (features,)))
                    self.copy(m.bias, self.tensor(where, layer["bias"], (features,)))
            return m, shape if shape is not None else (features,)
        if kind == "dropout":
            return nn.Dropout(layer.get("p", 0.5)), shape
        if kind == "residual":
            body, out = self.build(layer["layers"], shape, f"{index}.")
            if shape is not None and out is not None and tuple(out) != tuple(shape) and \
                    None not in shape and None not in out:
                raise ExportError(f"{where}: the body gives {list(out)} for an input of "
                                  f"{list(shape)}; y = x + body(x) needs them equal")
            return Residual(nn.Sequential(*body)), shape
        raise ExportError(f"{where}: unknown type")  # validate_spec refused it already


def _window_out(where: str, size, kernel, stride, padding, dilation) -> tuple:
    """A window operation's output size, floor((n + 2p − d(k − 1) − 1)/s) + 1 per side."""
    out = []
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        if n is None:
            out.append(None)
            continue
        span = n + 2 * p - d * (k - 1) - 1
        if span < 0:
            raise ExportError(f"{where}: the window ({k} with dilation {d}) is larger than the "
                              f"padded input ({n} + 2·{p})")
        out.append(span // s + 1)
    return tuple(out)


def _spec_tensor_names(layers: list[dict], prefix: str = "") -> set[str]:
    names = set()
    for i, layer in enumerate(layers):
        index = f"{prefix}{i}"
        kind = layer["type"]
        for key in _TENSOR_KEYS.get(kind, ()):
            name = layer.get(key, _default_tensor_name(kind, key, index))
            if name is not None:
                names.add(name)
        if kind == "residual":
            names |= _spec_tensor_names(layer["layers"], f"{index}.")
    return names


def load_model(path: str, return_spec: bool = False):
    """Read a lethe safetensors model back into an nn.Sequential (evaluation mode).

    The model gets the file's dtype. Layer indices follow the spec's layer order
    (model_from_spec), so a file written by export_model from a flat nn.Sequential
    round-trips to the same state_dict names. nn.Softplus() stands in for lethe's exact
    softplus (see the module doc). With return_spec=True returns (model, spec).
    """
    tensors, metadata = read_safetensors(path)
    if "lethe" not in metadata:
        raise ExportError(f"{path}: no __metadata__['lethe'] spec; not a lethe model")
    try:
        spec = json.loads(metadata["lethe"])
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: __metadata__['lethe'] is not valid JSON: {e}") from None
    dtypes = {a.dtype for a in tensors.values()}
    if len(dtypes) != 1:
        raise ExportError(f"{path}: tensors have mixed dtypes {sorted(map(str, dtypes))}")
    dtype = torch.float64 if dtypes.pop() == np.float64 else torch.float32
    model = model_from_spec(spec, dtype, tensors)
    used = _spec_tensor_names(spec["layers"])
    unused = [name for name in tensors if name not in used]
    if unused:  # lethe refuses such files too: a stray tensor means spec and file disagree
        raise ExportError(f"{path}: tensors not named by the spec: {', '.join(unused)}")
    return (model, spec) if return_spec else model


def export_dataset(path: str, X, y, ids=None, compress: bool = True,
                   tokens: bool = False, token_ids: bool = False) -> None:
    """Write a lethe data set (.npz) with the dtypes lethe expects.

    X:   [n, d] (or [n, C, H, W], [n, ...]: lethe reads the trailing dimensions as the
         example's shape, or flattens them); stored float64 unless given float32. With
         tokens=True (a model starting with embedding_bag): [n, L] integer token ids,
         stored int64 (token_ids=True is the same as tokens=True).
    y:   integer (or bool) labels -> int64 [n] for cross_entropy / logistic; float
         targets [n] or [n, k] for mse -> float64 (float32 kept).
    ids: optional [n] unique integers -> int64; by default lethe uses the row index.
    Torch tensors are accepted. The archive is byte-for-byte reproducible (fixed zip
    timestamps), so regenerated files do not show up as changes in version control.
    """
    X = _to_numpy(X)
    y = _to_numpy(y)
    if X.ndim < 2:
        raise ExportError(f"X must be [n, d], got shape {list(X.shape)}")
    n = X.shape[0]
    tokens = tokens or token_ids
    if tokens:
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.integer):
            raise ExportError(f"token ids must be [n, L] integers, got {X.dtype} {list(X.shape)}")
        if X.size and X.min() < 0:
            raise ExportError("token ids must be >= 0")
        X = X.astype(np.int64)
    else:
        X = X.astype(np.float32 if X.dtype == np.float32 else np.float64)
    if y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer):
        if y.ndim != 1:
            raise ExportError(f"integer labels must be [n], got shape {list(y.shape)}")
        y = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating):
        if y.ndim not in (1, 2):
            raise ExportError(f"float targets must be [n] or [n, k], got shape {list(y.shape)}")
        y = y.astype(np.float32 if y.dtype == np.float32 else np.float64)
    else:
        raise ExportError(f"y has unsupported dtype {y.dtype}")
    if y.shape[0] != n:
        raise ExportError(f"X has {n} rows but y has {y.shape[0]}")
    for name, a in (("X", X), ("y", y)):
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ExportError(f"{name} contains NaN or Inf")
    arrays = {"X": X, "y": y}
    if ids is not None:
        ids = _to_numpy(ids)
        if not (np.issubdtype(ids.dtype, np.integer)) or ids.shape != (n,):
            raise ExportError(f"ids must be [n] integers, got {ids.dtype} {list(ids.shape)}")
        ids = ids.astype(np.int64)
        if len(np.unique(ids)) != n:
            raise ExportError("ids must be unique")
        arrays["ids"] = ids
    _write_npz(path, arrays, compress)


def export_features(backbone: nn.Module, data, path: str, labels=None, ids=None,
                    forward=None, batch_size: int = 256, dtype: Any = torch.float64,
                    device=None) -> tuple[int, int]:
    """The head-only route: write a backbone's features of a data set as a lethe data set.

    For a model lethe cannot express whole (a transformer, any backbone with modules the
    exporter refuses): split it into `backbone` (everything up to the penultimate layer)
    and a head (an nn.Sequential lethe can express: a linear layer, a small MLP). This
    runs the backbone in PyTorch — evaluation mode, torch.no_grad(), its training mode
    restored afterwards — and writes its outputs, flattened to [n, d], as X of the .npz at
    `path`, with the labels and ids; export the head with export_model(head, ...). lethe's
    train, influence and unlearning then work on the head alone with the backbone fixed:
    θ is the head's parameters, influence scores say how each example moved the head, and
    an unlearning patch removes an example's effect on the head only; what the backbone
    learned from it stays (docs/formats.md, "The head-only route").

    data:    a tensor (or array) of inputs, batched here by batch_size (then `labels` is
             required), or an iterable of batches (a DataLoader) yielding (x, y) or
             (x, y, ids) (then `labels` and `ids` must be None); x may be a tensor or a
             dict of tensors (a tokenizer's output).
    forward: callable(backbone, x) -> features [batch, ...]; default backbone(x). For a
             Hugging Face encoder e.g. lambda m, x: m(**x).last_hidden_state[:, 0].
    dtype:   the features' dtype in the file (float64 by default, as lethe's analyses
             are exact in f64).
    Returns (n, d).
    """
    target = _resolve_dtype(dtype) or torch.float64
    forward = forward or (lambda m, x: m(x))

    def to_device(x):
        if device is None:
            return x
        if isinstance(x, dict):
            return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in x.items()}
        return x.to(device)

    if isinstance(data, (torch.Tensor, np.ndarray)):
        if labels is None:
            raise ExportError("export_features: data is a tensor, so labels are required")
        inputs = torch.as_tensor(data)
        batches = ((inputs[i:i + batch_size], None, None)
                   for i in range(0, inputs.shape[0], batch_size))
    else:
        if labels is not None or ids is not None:
            raise ExportError("export_features: data yields batches, so labels and ids come "
                              "from them ((x, y) or (x, y, ids)), not from arguments")

        def unpack():
            for batch in data:
                if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                    raise ExportError("export_features: each batch must be (x, y) or (x, y, ids)")
                yield batch[0], batch[1], batch[2] if len(batch) == 3 else None
        batches = unpack()

    features, ys, id_parts = [], [], []
    training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            for x, y, batch_ids in batches:
                f = forward(backbone, to_device(x))
                if not isinstance(f, torch.Tensor):
                    raise ExportError(f"export_features: the backbone gave "
                                      f"{type(f).__name__}, not a tensor; pass forward= to "
                                      "pick the features")
                features.append(f.detach().reshape(f.shape[0], -1).to("cpu", target))
                if y is not None:
                    ys.append(_to_numpy(y))
                if batch_ids is not None:
                    id_parts.append(_to_numpy(batch_ids))
    finally:
        backbone.train(training)
    if not features:
        raise ExportError("export_features: no examples")
    F = torch.cat(features).numpy()
    y_all = _to_numpy(labels) if labels is not None else np.concatenate(ys)
    if id_parts and len(id_parts) != len(features):
        raise ExportError("export_features: some batches have ids and some do not")
    ids_all = ids if ids is not None else (np.concatenate(id_parts) if id_parts else None)
    export_dataset(path, F, y_all, ids_all)
    return F.shape


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _write_npz(path: str, arrays: dict[str, np.ndarray], compress: bool) -> None:
    # Same archive layout as numpy.savez (zip64 members), but with a fixed timestamp
    # instead of the current time so the bytes depend only on the data.
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fid:
                np.lib.format.write_array(fid, np.ascontiguousarray(value), allow_pickle=False)


# ------------------------------------------------------------------------------- CLI

def _torch_load(path: str):
    """torch.load(path) on the CPU, every failure turned into one ExportError line."""
    try:
        return torch.load(path, map_location="cpu")
    except OSError:
        raise  # no such file, permission: main() prints these as they are
    except (AttributeError, ImportError) as e:
        # torch.save(model) pickles a reference to the model's class, not its code:
        # loading needs the class importable under the module name it was defined in
        # (a class from the training script's __main__ never is, here).
        raise ExportError(
            f"{path}: cannot load the pickled model: {e}. torch.save(model) stores only a "
            "reference to the model's class, which must be importable here. Save "
            "model.state_dict() and pass --spec SPEC.json (a lethe spec describing the "
            "layers), or call export_model() from the script that defines the class "
            "(an nn.Sequential of supported modules)") from None
    except Exception as e:  # corrupt, truncated or not a torch file at all
        raise ExportError(f"{path}: not a file torch.load can read "
                          f"({type(e).__name__}: {e})") from None


def _cmd_model(args) -> int:
    obj = _torch_load(args.input)
    if isinstance(obj, nn.Module):
        model = obj
    elif isinstance(obj, dict):
        # A state_dict: the architecture must come from a spec file.
        not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        if not_tensors or not obj:
            raise ExportError(f"{args.input}: a dict but not a state_dict (entries that are not "
                              f"tensors: {', '.join(not_tensors[:5]) or 'none, it is empty'}); "
                              "a training checkpoint? save model.state_dict() itself")
        if not args.spec:
            raise ExportError(f"{args.input} holds a state_dict; pass --spec with the lethe "
                              "spec JSON describing the layers")
        try:
            with open(args.spec) as f:
                spec = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ExportError(f"{args.spec}: not valid JSON: {e}") from None
        tensors = {k: v.detach().cpu().numpy() for k, v in obj.items()}
        model = model_from_spec(spec, next(iter(obj.values())).dtype, tensors)
        if args.input_shape is None and "input" in spec:
            args.input_shape = spec["input"]
        args.loss = args.loss or spec["loss"]
        args.l2 = spec.get("l2", 0.0) if args.l2 is None else args.l2
    else:
        raise ExportError(f"{args.input}: expected a pickled nn.Sequential or a state_dict, "
                          f"got {type(obj).__name__}")
    if not args.loss:
        raise ExportError("--loss is required")
    spec = export_model(model, args.output, args.loss, args.l2 or 0.0, args.dtype,
                        allow_output_activation=args.allow_output_activation,
                        input_shape=args.input_shape)
    print(json.dumps(spec, indent=2))
    return 0


def _cmd_inspect(args) -> int:
    tensors, metadata = read_safetensors(args.file)
    for name, a in tensors.items():
        print(f"{name:30s} {str(a.dtype):8s} {list(a.shape)}")
    for key, value in metadata.items():
        if key == "lethe":
            value = json.dumps(json.loads(value), indent=2)
        print(f"__metadata__[{key!r}]:\n{value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="export_torch.py",
        description="Export PyTorch nn.Sequential models to lethe's safetensors format "
                    "and inspect lethe model files. Loss conventions: mse is 0.5*||f-y||^2 summed "
                    "over outputs; logistic is BCEWithLogits; the objective adds "
                    "(l2/2)*||theta||^2, so SGD weight_decay=wd corresponds to l2=wd.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("model", help="export a torch.save()d nn.Sequential (or a state_dict "
                                     "with --spec) to a lethe safetensors model")
    p.add_argument("input", help="file written by torch.save(model) or torch.save(state_dict)")
    p.add_argument("output", help="the .safetensors file to write")
    p.add_argument("--loss", choices=LOSSES, help="per-example loss (default: the --spec's)")
    p.add_argument("--l2", type=float, default=None, help="penalty (l2/2)*||theta||^2 (default 0)")
    p.add_argument("--dtype", choices=("f32", "f64"), help="convert parameters (default: keep)")
    p.add_argument("--spec", help="lethe spec JSON giving the layers when INPUT is a state_dict")
    p.add_argument("--allow-output-activation", action="store_true",
                   help="export a final nn.Sigmoid in front of --loss logistic/cross_entropy "
                        "(which apply their own sigmoid/softmax); without it such a model is "
                        "refused, since it almost always was trained with nn.BCELoss and is "
                        "lethe's model without that last sigmoid")
    p.add_argument("--input-shape", type=int, nargs="+", metavar="N",
                   help="one example's shape, written as the spec's \"input\": C H W for images "
                        "(required when the model starts with nn.Conv2d or a pooling), L for "
                        "token ids (nn.EmbeddingBag), d for feature vectors")
    p.set_defaults(func=_cmd_model)

    p = sub.add_parser("inspect", help="validate a safetensors file and print its tensors and spec")
    p.add_argument("file")
    p.set_defaults(func=_cmd_inspect)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ExportError, OSError) as e:
        # One line, whatever the message (torch's own errors can span several).
        print(f"export_torch.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
