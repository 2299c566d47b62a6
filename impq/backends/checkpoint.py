"""A quantized checkpoint on disk: model config, flat tensors and the backend's settings.

Layout of a checkpoint folder::

    config.json          the transformers config (rebuilds the float skeleton)
    model.safetensors    every tensor of the state dict, tied duplicates stored once
    quantization.json    backend name, group size, assignment, backend-specific map
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impq.artifacts import SCHEMA_VERSION, write_json, write_tensors

__all__ = ["load_rest", "read_checkpoint", "skeleton", "write_checkpoint"]

_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"
_QUANT = "quantization.json"


def _unique(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without tensors that share storage with an earlier one (tied)."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        tensor = value.detach()
        ident = (
            tensor.untyped_storage().data_ptr(),
            int(tensor.storage_offset()),
            tuple(int(d) for d in tensor.shape),
        )
        if tensor.numel() and ident in seen:
            continue
        seen.add(ident)
        out[key] = tensor.cpu().contiguous()
    return out


def write_checkpoint(
    path: str | Path, model: nn.Module, state: dict[str, torch.Tensor], quant: dict[str, Any]
) -> Path:
    """Write ``model``'s config, ``state`` and the quantization settings ``quant``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no transformers config to save")
    config.to_json_file(str(path / _CONFIG))
    write_tensors(path / _WEIGHTS, _unique(state), {"backend": str(quant.get("backend"))})
    write_json(path / _QUANT, quant)
    return path


def read_checkpoint(
    path: str | Path, backend: str
) -> tuple[Any, dict[str, torch.Tensor], dict[str, Any]]:
    """The config, tensors and quantization settings of a checkpoint written by ``backend``.

    Raises:
        FileNotFoundError: a file of the checkpoint is missing.
        ValueError: the checkpoint was written by another backend or schema.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig

    path = Path(path)
    for name in (_CONFIG, _WEIGHTS, _QUANT):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name}: missing; is {path} a saved checkpoint?")
    quant = json.loads((path / _QUANT).read_text())
    if quant.get("backend") != backend or quant.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path} holds a {quant.get('backend')!r} checkpoint (schema "
            f"{quant.get('schema_version')}); load it with that backend"
        )
    return AutoConfig.from_pretrained(str(path)), load_file(str(path / _WEIGHTS)), quant


def skeleton(config: Any) -> nn.Module:
    """A float model of ``config`` in eval mode, to be filled from a checkpoint.

    Its experts are split like :func:`impq.models.load_model` splits them, so the module
    names match those of the model that was saved.
    """
    from transformers import AutoModelForCausalLM

    from impq.models import unfuse_experts

    model: nn.Module = AutoModelForCausalLM.from_config(config)
    unfuse_experts(model)
    return model.eval()


def load_rest(model: nn.Module, state: dict[str, torch.Tensor], skip: set[str]) -> None:
    """Load the non-quantized tensors, allowing only tied or ``skip``-prefixed gaps."""
    result = model.load_state_dict(state, strict=False)
    tied = _tied_keys(model)
    missing = [k for k in result.missing_keys if k not in tied and not k.startswith(tuple(skip))]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"checkpoint does not match the model: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def _tied_keys(model: nn.Module) -> set[str]:
    """State dict keys whose tensor shares storage with an earlier key."""
    state = model.state_dict(keep_vars=True)
    kept = _unique(dict(state))
    return set(state) - set(kept)
