"""lethe.Model ↔ torch, by the exporter's rules (tools/export_torch.py, imported, not copied):
tensor names are the nn.Sequential's state_dict names, the spec is the exporter's."""
from __future__ import annotations

import json


def _exporter():
    from . import export_torch  # tools/export_torch.py (linked into the package by the build)
    return export_torch


def from_torch(module, loss: str, l2: float = 0.0, dtype=None, allow_output_activation: bool = False,
               input_shape=None, name: str = "<torch module>"):
    """A lethe.Model from an nn.Sequential in memory: what export_model would write, read by
    the engine's own loader (every check a file gets). Raises export_torch.ExportError (a
    ValueError) for modules the exporter refuses, lethe.Error for what the engine refuses."""
    from . import _lethe
    spec, arrays = _exporter().model_arrays(module, loss, l2, dtype, allow_output_activation,
                                            input_shape)
    return _lethe.Model._from_arrays(json.dumps(spec), list(arrays), name)


def state_dict(model) -> dict:
    """{state_dict name: torch tensor}: the model's tensors in its dtype (a frozen layer's too)."""
    import torch
    return {name: torch.from_numpy(array) for name, array in model.tensors().items()}


def to_torch(model, module=None):
    """Copies the model's tensors into `module` (its state_dict names, shapes checked) and
    returns it; without a module, builds the nn.Sequential the spec describes
    (export_torch.model_from_spec)."""
    import torch
    tensors = model.tensors()
    if module is None:
        dtype = torch.float32 if model.dtype == "f32" else torch.float64
        return _exporter().model_from_spec(model.spec, dtype, tensors)
    own = module.state_dict()
    for name, array in tensors.items():
        if name not in own:
            raise ValueError(f"to_torch: the module has no tensor {name!r} (its state_dict: "
                             f"{', '.join(list(own)[:8])}{', ...' if len(own) > 8 else ''})")
        if tuple(own[name].shape) != array.shape:
            raise ValueError(f"to_torch: tensor {name!r} has shape {tuple(own[name].shape)} in the "
                             f"module but {array.shape} in the model")
    with torch.no_grad():
        for name, array in tensors.items():
            own[name].copy_(torch.from_numpy(array))
    return module
