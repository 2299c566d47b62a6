"""HQQ backend: one ``HQQLinear`` per linear of each block, at 2, 3, 4 or 8 bits.

The transformers integration of HQQ takes one setting for the whole model, so each
linear is replaced directly by an ``HQQLinear`` with its block's ``BaseQuantizeConfig``
(groups along the input, ``axis=1``). Codes are bit-packed: 4 per byte at 2 bits, 2 per
byte at 4 bits, one byte each at 8 bits, and at 3 bits 10 codes per int32 word, one from
each of 10 groups, the groups padded to a multiple of 10 (:func:`code_bytes`: at least
3.2 bits a weight; :class:`HqqFootprint` counts it). HQQ keeps scales and
zeros in the compute dtype; this backend stores them in float16 whatever the model's
dtype (a float32 model computes in float32 with 16-bit scales and zeros), so a group
costs the 4 bytes the budget counts. HQQ's own loader reads such a checkpoint and casts
them to its compute dtype, which changes no value. Runs on CPU and CUDA with HQQ's
PyTorch backend.

Checkpoints are HQQ's own format (``AutoHQQHFModel.save_quantized``: ``config.json`` and
``qmodel.pt``), loaded without impq by ``AutoHQQHFModel.from_quantized``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
from impq.footprint import Footprint
from impq.models import ExpertLinears, get_layout

__all__ = ["META_DTYPE", "HqqBackend", "HqqFootprint", "code_bytes"]

log = logging.getLogger(__name__)

META_DTYPE = torch.float16
"""Stored dtype of HQQ's per-group scales and zeros when the model's dtype is wider."""

_STORED = ("W_q", "scale", "zero")
"""HQQLinear state-dict tensors that hold the weight (the rest is small metadata)."""


_WORD_CODES = {3: 10}
"""Bits -> codes HQQ packs per int32 word, one from each of that many groups (3 bits)."""


def code_bytes(n_weights: int, bits: int, group_size: int) -> int:
    """Bytes of the packed codes HQQ stores for ``n_weights`` at ``bits`` in groups of
    ``group_size`` (groups along the input, as this backend quantizes).

    At 3 bits one int32 word holds one code of each of 10 groups (2 bits unused) and
    the groups are padded to a multiple of 10: ``4 * group_size * ceil(groups / 10)``.
    The other widths pack without gaps.
    """
    per_word = _WORD_CODES.get(bits)
    if per_word is None:
        return -(-n_weights * bits // 8)
    return 4 * group_size * -(-(n_weights // group_size) // per_word)


@dataclass(frozen=True)
class HqqFootprint(Footprint):
    """HQQ's codes (:func:`code_bytes`) and a 16-bit scale and zero per group."""

    def codes(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """Bytes of the codes as HQQ packs them (:func:`code_bytes`)."""
        return code_bytes(out_features * in_features, bits, group_size)


def _weight_params(bits: int, group_size: int) -> dict[str, Any]:
    """HQQ's own per-weight settings for ``bits`` (what ``BaseQuantizeConfig`` yields)."""
    params: dict[str, Any] = _quant_config(bits, group_size)["weight_quant_params"]
    return params


def _quant_config(bits: int, group_size: int) -> dict[str, Any]:
    from hqq.core.quantize import BaseQuantizeConfig

    config: dict[str, Any] = BaseQuantizeConfig(nbits=bits, group_size=group_size, axis=1)
    return config


def _sixteen_bit(meta: dict[str, Any]) -> None:
    """Store the group scales and zeros of ``meta`` in 16 bits (in place)."""
    for key in ("scale", "zero"):
        value = meta[key]
        if value.element_size() > 2:
            meta[key] = value.to(META_DTYPE)


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
    """Replaces each linear of a block by an ``HQQLinear`` at 2, 3, 4 or 8 bits."""

    name = "hqq"
    supported_bits = frozenset({2, 3, 4, 8})
    data_free = True

    @torch.no_grad()
    def dequantize_weight(self, weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
        """``weight`` through HQQ's optimized group-wise quantizer at ``bits``, dequantized
        with the 16-bit scales and zeros the backend stores."""
        check_bits(self.name, bits, self.supported_bits)
        check_group_size(self.name, weight, group_size)
        from hqq.core.quantize import Quantizer

        params = {**_weight_params(bits, group_size), "bitpack": False}
        w_q, meta = Quantizer.quantize(
            weight, compute_dtype=weight.dtype, device=str(weight.device), **params
        )
        _sixteen_bit(meta)
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
            _sixteen_bit(hqq.meta)
            set_submodule(model, name, hqq)
        log.info("hqq: quantized %d linears in %d blocks", len(targets), len(assignment))
        return model

    def stored_bytes(self, model: nn.Module) -> int:
        """Bytes of the packed codes, scales and zeros of every ``HQQLinear`` in the blocks."""
        return stored_tensor_bytes(_hqq_modules(model).values(), _STORED.__contains__)

    def footprint(self, model: nn.Module) -> Footprint:
        """Packed codes (:func:`code_bytes`) plus a 16-bit scale and a 16-bit zero per
        group."""
        return HqqFootprint(scale_bytes=2, zero_bytes=2)

    def save(self, model: nn.Module, path: Path) -> None:
        """Write HQQ's own checkpoint (``config.json`` + ``qmodel.pt``) to ``path``."""
        from hqq.models.hf.base import AutoHQQHFModel

        if not _hqq_modules(model):
            raise ValueError("the model has no HQQLinear layers; quantize it first")
        split = [n for n, m in model.named_modules() if isinstance(m, ExpertLinears)]
        if split:
            raise UnsupportedError(
                f"hqq cannot save {split[0]} (mixture-of-experts weights split per expert): "
                "HQQ's loader (AutoHQQHFModel.from_quantized) rebuilds transformers' fused "
                "experts, so the checkpoint would not load; save MoE models with quanto or gptq"
            )
        Path(path).mkdir(parents=True, exist_ok=True)
        AutoHQQHFModel.save_quantized(model, str(path))

    @torch.no_grad()
    def load(self, path: Path, device: torch.device | str = "cpu") -> nn.Module:
        """Load a checkpoint with HQQ's ``AutoHQQHFModel.from_quantized``.

        The compute dtype is the checkpoint's (``config.json``); the scales and zeros are
        put back in 16 bits, as :meth:`quantize` keeps them (HQQ's loader widens them to
        the compute dtype, which changes no value).

        Raises:
            FileNotFoundError: ``path`` holds no HQQ checkpoint.
        """
        from hqq.models.hf.base import AutoHQQHFModel
        from transformers import AutoConfig

        path = Path(path)
        for name in ("config.json", "qmodel.pt"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name}: missing; is {path} an HQQ checkpoint?")
        device = torch.device(device)
        _check_device(device)
        dtype = getattr(AutoConfig.from_pretrained(str(path)), "dtype", None) or torch.float32
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        model: nn.Module = AutoHQQHFModel.from_quantized(
            str(path), compute_dtype=dtype, device=str(device)
        )
        for module in _hqq_modules(model).values():
            _sixteen_bit(module.meta)
        return model.eval()
