"""HQQ backend: one ``HQQLinear`` per linear of each block, at 2 or 4 bits.

The transformers integration of HQQ takes one setting for the whole model, so each
linear is replaced directly by an ``HQQLinear`` with its block's ``BaseQuantizeConfig``.
Codes are bit-packed (4 per byte at 2 bits, 2 per byte at 4 bits); scales and zeros stay
in the compute dtype (the model's dtype, float32 by default): 8 bytes per group where the footprint model counts
4. Runs on CPU and CUDA with HQQ's PyTorch backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impq.backends.base import (
    UnsupportedError,
    assigned_linears,
    check_bits,
    check_group_size,
    set_submodule,
    stored_tensor_bytes,
)
from impq.backends.checkpoint import load_rest, read_checkpoint, skeleton, write_checkpoint
from impq.models import get_layout

__all__ = ["HqqBackend"]

log = logging.getLogger(__name__)

_STORED = ("W_q", "scale", "zero", "scale_q", "zero_q")
"""HQQLinear state-dict entries that hold the weight (the rest is small metadata)."""


def _weight_params(bits: int, group_size: int) -> dict[str, Any]:
    """HQQ's own per-weight settings for ``bits`` (what ``BaseQuantizeConfig`` yields)."""
    params: dict[str, Any] = _quant_config(bits, group_size)["weight_quant_params"]
    return params


def _quant_config(bits: int, group_size: int) -> dict[str, Any]:
    from hqq.core.quantize import BaseQuantizeConfig

    config: dict[str, Any] = BaseQuantizeConfig(nbits=bits, group_size=group_size)
    return config


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_device(device: torch.device) -> None:
    if device.type not in ("cpu", "cuda"):
        raise UnsupportedError(f"backend 'hqq' runs on ['cpu', 'cuda'], not {device.type!r}")


def _hqq_modules(model: nn.Module) -> dict[str, Any]:
    from hqq.core.quantize import HQQLinear

    prefix = get_layout(model).blocks + "."
    return {
        n: m for n, m in model.named_modules() if n.startswith(prefix) and isinstance(m, HQQLinear)
    }


class HqqBackend:
    """Replaces each linear of a block by an ``HQQLinear`` at 2 or 4 bits."""

    name = "hqq"
    supported_bits = frozenset({2, 4})
    data_free = True

    @torch.no_grad()
    def dequantize_weight(self, weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
        """``weight`` through HQQ's optimized group-wise quantizer at ``bits``, dequantized."""
        check_bits(self.name, bits, self.supported_bits)
        check_group_size(self.name, weight, group_size)
        from hqq.core.quantize import Quantizer

        params = {**_weight_params(bits, group_size), "bitpack": False}
        w_q, meta = Quantizer.quantize(
            weight, compute_dtype=weight.dtype, device=str(weight.device), **params
        )
        out = Quantizer.dequantize(w_q, meta)
        return out.to(dtype=weight.dtype, device=weight.device).reshape(weight.shape)

    @torch.no_grad()
    def quantize(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None = None,
    ) -> nn.Module:
        """Replace the assigned blocks' linears by ``HQQLinear`` in place; return ``model``.

        ``calibration`` is not used: HQQ is data-free.

        Raises:
            UnsupportedError: bits, group size, architecture or device not supported.
        """
        from hqq.core.quantize import HQQLinear

        targets = assigned_linears(self.name, model, assignment, group_size, self.supported_bits)
        device = _device_of(model)
        dtype = next(model.parameters()).dtype
        _check_device(device)
        for name, (linear, bits) in targets.items():
            hqq = HQQLinear(
                linear,
                quant_config=_quant_config(bits, group_size),
                compute_dtype=dtype,
                device=str(device),
            )
            set_submodule(model, name, hqq)
        log.info("hqq: quantized %d linears in %d blocks", len(targets), len(assignment))
        return model

    def stored_bytes(self, model: nn.Module) -> int:
        """Bytes of the packed codes, scales and zeros of every ``HQQLinear`` in the blocks."""
        return stored_tensor_bytes(_hqq_modules(model).values(), _STORED.__contains__)

    def save(self, model: nn.Module, path: Path) -> None:
        """Write config, every tensor (HQQ's own state dicts included) and the bits map."""
        modules = _hqq_modules(model)
        if not modules:
            raise ValueError("the model has no HQQLinear layers; quantize it first")
        bits = {n: int(m.meta["nbits"]) for n, m in modules.items()}
        groups = {int(m.meta["group_size"]) for m in modules.values()}
        quant = {"backend": self.name, "group_size": groups.pop(), "bits": bits}
        write_checkpoint(path, model, model.state_dict(), quant)

    @torch.no_grad()
    def load(self, path: Path, device: torch.device | str = "cpu") -> nn.Module:
        """Rebuild the model from config, float tensors and the HQQ layers' state dicts."""
        from hqq.core.quantize import HQQLinear

        config, state, quant = read_checkpoint(path, self.name)
        device = torch.device(device)
        model = skeleton(config).to(device)
        dtype = next(model.parameters()).dtype
        _check_device(device)
        group_size = int(quant["group_size"])
        for name, bits in quant["bits"].items():
            prefix = name + "."
            sub = {k[len(prefix) :]: state.pop(k) for k in list(state) if k.startswith(prefix)}
            hqq = HQQLinear(
                None,
                quant_config=_quant_config(int(bits), group_size),
                compute_dtype=dtype,
                device=str(device),
                initialize=False,
            )
            hqq.load_state_dict({k: v.to(device) for k, v in sub.items()})
            set_submodule(model, name, hqq)
        load_rest(model, state, skip={n + "." for n in quant["bits"]})
        return model.eval()
