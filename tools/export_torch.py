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

Data sets are ``.npz`` files with ``X`` [n, d] float64 (or float32), ``y`` [n] int64
labels (float [n] or [n, k] targets for mse) and optional ``ids`` [n] int64 (unique).

Use as a module (``sys.path`` must include tools/)::

    from export_torch import export_model, export_dataset, load_model
    spec = export_model(model, "model.safetensors", loss="cross_entropy", l2=1e-3)

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


def model_spec(model: nn.Sequential, loss: str, l2: float = 0.0,
               allow_output_activation: bool = False) -> tuple[dict, list[tuple[str, torch.Tensor]]]:
    """The lethe spec of `model` and its tensors [(name, tensor)] in parameter order.

    Raises ExportError for any module lethe cannot represent, and for a final sigmoid in
    front of a loss that applies its own (see _check_output_activation) unless
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
    _check_output_activation(model, loss, allow_output_activation)

    layers: list[dict] = []
    tensors: list[tuple[str, torch.Tensor]] = []
    seen_linear = False
    for index, (name, module) in enumerate(model.named_children()):
        where = f"layer {name} ({type(module).__name__})"
        if isinstance(module, nn.Flatten):
            # lethe flattens trailing input dims itself, so a leading Flatten is a no-op.
            # Anywhere else it would change semantics lethe cannot express.
            if index != 0 or module.start_dim != 1 or module.end_dim != -1:
                raise ExportError(f"{where}: nn.Flatten is only supported as the first "
                                  "module with the default start_dim=1, end_dim=-1")
            continue
        if isinstance(module, nn.Linear):
            layer = {"type": "linear", "weight": f"{name}.weight"}
            tensors.append((f"{name}.weight", module.weight))
            if module.bias is not None:
                layer["bias"] = f"{name}.bias"
                tensors.append((f"{name}.bias", module.bias))
            layer["out"] = int(module.out_features)
            layers.append(layer)
            seen_linear = True
            continue
        act = _activation_name(module, where)
        if act is None:
            raise ExportError(
                f"{where} is not supported by lethe; supported modules are nn.Linear, "
                "nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU(approximate='none'), nn.Softplus(), "
                "nn.Identity and a leading nn.Flatten")
        layers.append({"type": act})
    if not seen_linear:
        raise ExportError("the model has no nn.Linear layer, so nothing to train")
    # Buffers (e.g. from batch norm) would be silently dropped; refuse rather than lie.
    buffers = [n for n, _ in model.named_buffers()]
    if buffers:
        raise ExportError(f"the model has buffers lethe cannot represent: {', '.join(buffers)}")

    spec = {"format": FORMAT, "layers": layers, "loss": loss, "l2": l2}
    return spec, tensors


# The losses that normalise the network output themselves, and how.
_OWN_NORMALISATION = {"cross_entropy": "a softmax", "logistic": "a sigmoid"}


def _check_output_activation(model: nn.Sequential, loss: str, allow: bool) -> None:
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
    modules = [m for m in model.children() if not isinstance(m, nn.Identity)]
    last = modules[-1] if modules else None
    own = _OWN_NORMALISATION.get(loss)
    if own is None or not isinstance(last, (nn.Sigmoid, nn.Softmax, nn.LogSoftmax)):
        return
    name = next(n for n, m in reversed(list(model.named_children())) if m is last)
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


def validate_spec(spec: dict) -> None:
    """Check a lethe spec dict as strictly as lethe does; raises ExportError.

    Unknown keys are errors (a typo must not silently change the model); "l2" defaults
    to 0 and a linear layer's "weight" to "<layer index>.weight".
    """
    if not isinstance(spec, dict):
        raise ExportError("spec must be a JSON object")
    _check_keys(spec, {"format", "layers", "loss", "l2"}, "spec")
    if spec.get("format") != FORMAT:
        raise ExportError(f"spec \"format\" must be {FORMAT!r}, got {spec.get('format')!r}")
    if spec.get("loss") not in LOSSES:
        raise ExportError(f"spec loss {spec.get('loss')!r} is not one of {', '.join(LOSSES)}")
    l2 = spec.get("l2", 0.0)
    if not isinstance(l2, (int, float)) or isinstance(l2, bool) or not math.isfinite(l2) or l2 < 0:
        raise ExportError(f"spec l2 must be a finite number >= 0, got {l2!r}")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ExportError("spec layers must be a non-empty list")
    names = set()
    for i, layer in enumerate(layers):
        kind = layer.get("type") if isinstance(layer, dict) else None
        where = f"spec layer {i}"
        if kind == "linear":
            _check_keys(layer, {"type", "weight", "bias", "out"}, where)
            for key in ("weight", "bias"):
                if key not in layer and key == "bias":
                    continue
                name = layer.get(key, f"{i}.weight")
                if not isinstance(name, str) or not name:
                    raise ExportError(f"{where}: {key!r} must be a non-empty tensor name")
                if name in names:
                    raise ExportError(f"{where}: tensor {name!r} is used twice")
                names.add(name)
            out = layer.get("out", 1)
            if not isinstance(out, int) or isinstance(out, bool) or out < 1:
                raise ExportError(f"{where}: 'out' must be a positive integer")
        elif kind in ACTIVATIONS:
            _check_keys(layer, {"type"}, where)
        else:
            raise ExportError(f"{where}: unknown type {kind!r} (known: linear, "
                              f"{', '.join(ACTIVATIONS)})")
    if not any(layer["type"] == "linear" for layer in layers):
        raise ExportError("spec needs at least one linear layer")


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
                 dtype: Any = None, allow_output_activation: bool = False) -> dict:
    """Write `model` to `path` as a lethe safetensors model; returns the spec dict.

    model: an nn.Sequential of nn.Linear and activation modules (see the module doc).
    loss:  "cross_entropy", "logistic" or "mse" (see the conventions above).
    l2:    the penalty coefficient: the objective adds (l2/2)‖θ‖² over all parameters.
    dtype: None keeps the model's dtype (all parameters must share one, float32 or
           float64); "f32"/"f64" (or a torch/numpy dtype) converts.
    allow_output_activation: a final nn.Sigmoid in front of cross_entropy or logistic
           (which apply their own softmax / sigmoid) is refused unless this is True: it
           almost always means a model trained with nn.BCELoss, to be exported as
           model[:-1] (see docs/formats.md).
    """
    spec, tensors = model_spec(model, loss, l2, allow_output_activation)
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
    write_safetensors(path, arrays, {"lethe": json.dumps(spec)})
    return spec


def model_from_spec(spec: dict, dtype: Any = torch.float64,
                    tensors: dict[str, np.ndarray] | None = None,
                    in_features: int | None = None) -> nn.Sequential:
    """Build the nn.Sequential a lethe spec describes, layer i of the spec at index i.

    With `tensors` ({name: array}, e.g. from read_safetensors) weights and biases are
    copied from it and layer widths come from the weights. Without, the parameters are
    torch's default initialisation, every linear layer needs "out" and `in_features`
    gives the input width.
    """
    validate_spec(spec)
    target = _resolve_dtype(dtype) or torch.float64
    modules: list[nn.Module] = []
    width = in_features
    for i, layer in enumerate(spec["layers"]):
        kind = layer["type"]
        if kind != "linear":
            modules.append(ACTIVATIONS[kind]())
            continue
        has_bias = "bias" in layer
        weight = layer.get("weight", f"{i}.weight")
        if tensors is not None:
            if weight not in tensors:
                raise ExportError(f"spec layer {i}: weight tensor {weight!r} is missing")
            w = tensors[weight]
            if w.ndim != 2:
                raise ExportError(f"spec layer {i}: weight {weight!r} must be 2-D, got {list(w.shape)}")
            out_f, in_f = w.shape
            if width is not None and in_f != width:
                raise ExportError(f"spec layer {i}: weight is [{out_f}, {in_f}] but the input width is {width}")
            if "out" in layer and layer["out"] != out_f:
                raise ExportError(f"spec layer {i}: 'out' is {layer['out']} but the weight has {out_f} rows")
            if has_bias:
                if layer["bias"] not in tensors:
                    raise ExportError(f"spec layer {i}: bias tensor {layer['bias']!r} is missing")
                if tensors[layer["bias"]].shape != (out_f,):
                    raise ExportError(f"spec layer {i}: bias must have shape [{out_f}]")
        else:
            if width is None or "out" not in layer:
                raise ExportError("without tensors every linear layer needs 'out' and "
                                  "in_features must be given")
            in_f, out_f = width, layer["out"]
        lin = nn.Linear(in_f, out_f, bias=has_bias, dtype=target)
        if tensors is not None:
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(tensors[weight]))
                if has_bias:
                    lin.bias.copy_(torch.from_numpy(tensors[layer["bias"]]))
        modules.append(lin)
        width = out_f
    return nn.Sequential(*modules)


def load_model(path: str, return_spec: bool = False):
    """Read a lethe safetensors model back into an nn.Sequential.

    The model gets the file's dtype. Layer indices follow the spec's layer order, so a
    file written by export_model round-trips to the same state_dict names. nn.Softplus()
    stands in for lethe's exact softplus (see the module doc). With return_spec=True
    returns (model, spec).
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
    used = {layer.get(k, f"{i}.weight") for i, layer in enumerate(spec["layers"])
            if layer["type"] == "linear" for k in ("weight", "bias") if k == "weight" or k in layer}
    unused = [name for name in tensors if name not in used]
    if unused:  # lethe refuses such files too: a stray tensor means spec and file disagree
        raise ExportError(f"{path}: tensors not named by the spec: {', '.join(unused)}")
    return (model, spec) if return_spec else model


def export_dataset(path: str, X, y, ids=None, compress: bool = True,
                   token_ids: bool = False) -> None:
    """Write a lethe data set (.npz) with the dtypes lethe expects.

    X:   [n, d] (or [n, ...], flattened by lethe); stored float64 unless given float32.
         With token_ids=True, X must be integers (token ids [n, L] for a model whose first
         layer is embedding_bag) and is stored int64: lethe reads integer X as ids only.
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
    if token_ids:
        if not np.issubdtype(X.dtype, np.integer):
            raise ExportError(f"token_ids=True needs integer X, got {X.dtype}")
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
        args.loss = args.loss or spec["loss"]
        args.l2 = spec.get("l2", 0.0) if args.l2 is None else args.l2
    else:
        raise ExportError(f"{args.input}: expected a pickled nn.Sequential or a state_dict, "
                          f"got {type(obj).__name__}")
    if not args.loss:
        raise ExportError("--loss is required")
    spec = export_model(model, args.output, args.loss, args.l2 or 0.0, args.dtype,
                        allow_output_activation=args.allow_output_activation)
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
