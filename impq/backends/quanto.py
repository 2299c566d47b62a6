"""optimum-quanto backend: qint2 / qint4 weights per decoder block, frozen.

Quanto picks its own group size (128, or a smaller multiple of 32 dividing the input
width); this backend overrides it with the requested one before freezing, so the
stored scales and shifts really are per ``group_size`` weights. Scales and shifts are
kept in the model's dtype (float32 on CPU), i.e. 8 bytes of metadata per group where the
footprint model counts 4 (fp16 scale + zero).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impq.backends.base import assigned_linears, check_bits, check_group_size, stored_tensor_bytes
from impq.backends.checkpoint import load_rest, read_checkpoint, skeleton, write_checkpoint
from impq.models import decoder_blocks, get_layout

__all__ = ["QuantoBackend"]

log = logging.getLogger(__name__)


def _qtype(bits: int) -> Any:
    from optimum.quanto import qint2, qint4

    return {2: qint2, 4: qint4}[bits]


def _quantize_modules(model: nn.Module, bits_of: dict[str, int], group_size: int) -> None:
    """Swap the named linears for quanto modules at their bits and group size (unfrozen)."""
    from optimum.quanto import quantize

    for bits in sorted(set(bits_of.values())):
        names = [name for name, b in bits_of.items() if b == bits]
        quantize(model, weights=_qtype(bits), include=names)
    for name in bits_of:
        module: Any = model.get_submodule(name)
        module.weight_group_size = group_size
        module.forward = _inference_mode_safe(module.forward)


def _inference_mode_safe(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward`` run outside inference mode (under no_grad) when called inside it.

    A view of a quanto weight (``t()``) inside ``torch.inference_mode`` fails with
    "Cannot set version_counter for inference tensor" when the weight was made outside
    it (pytorch/pytorch#170419, optimum-quanto#304); perplexity runs in inference mode.
    """

    @functools.wraps(forward)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_inference_mode_enabled():
            return forward(*args, **kwargs)
        with torch.inference_mode(False), torch.no_grad():
            return forward(*args, **kwargs)

    return wrapped


def _quantized_modules(model: nn.Module) -> dict[str, Any]:
    """Quanto modules with frozen (quantized) weights inside the decoder blocks."""
    from optimum.quanto import QModuleMixin, QTensor

    prefix = get_layout(model).blocks + "."
    decoder_blocks(model)
    return {
        name: m
        for name, m in model.named_modules()
        if name.startswith(prefix)
        and isinstance(m, QModuleMixin)
        and isinstance(getattr(m, "weight", None), QTensor)
    }


class QuantoBackend:
    """Quantizes the linears of each block with optimum-quanto at 2 or 4 bits."""

    name = "quanto"
    supported_bits = frozenset({2, 4})
    data_free = True

    @torch.no_grad()
    def dequantize_weight(self, weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
        """``weight`` through quanto's group-wise affine quantizer at ``bits``, dequantized."""
        check_bits(self.name, bits, self.supported_bits)
        check_group_size(self.name, weight, group_size)
        from optimum.quanto.tensor.optimizers import MaxOptimizer
        from optimum.quanto.tensor.weights import quantize_weight

        qtype = _qtype(bits)
        scale, shift = MaxOptimizer()(weight, qtype=qtype, axis=0, group_size=group_size)
        q = quantize_weight(
            weight,
            qtype=qtype,
            axis=0,
            scale=scale,
            shift=shift,
            group_size=group_size,
            optimized=False,
        )
        return q.dequantize().to(dtype=weight.dtype, device=weight.device).reshape(weight.shape)

    @torch.no_grad()
    def quantize(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None = None,
    ) -> nn.Module:
        """Quantize the assigned blocks' linears in place and freeze them; return ``model``.

        ``calibration`` is not used: quanto's weight quantization is data-free.
        """
        from optimum.quanto import freeze

        targets = assigned_linears(self.name, model, assignment, group_size, self.supported_bits)
        _quantize_modules(model, {name: bits for name, (_, bits) in targets.items()}, group_size)
        freeze(model)
        log.info("quanto: quantized %d linears in %d blocks", len(targets), len(assignment))
        return model

    def stored_bytes(self, model: nn.Module) -> int:
        """Bytes of the packed codes, scales and shifts of every frozen quanto linear."""
        return stored_tensor_bytes(
            _quantized_modules(model).values(), lambda key: key.startswith("weight")
        )

    def save(self, model: nn.Module, path: Path) -> None:
        """Write config, the quantized state dict and the per-module qtypes and group size."""
        modules = _quantized_modules(model)
        if not modules:
            raise ValueError("the model has no frozen quanto linears; quantize it first")
        bits = {name: int(m.weight_qtype.bits) for name, m in modules.items()}
        group = {int(m.weight_group_size) for m in modules.values()}
        if len(group) != 1:
            raise ValueError(f"quanto linears have several group sizes {sorted(group)}")
        quant = {"backend": self.name, "group_size": group.pop(), "bits": bits}
        write_checkpoint(path, model, model.state_dict(), quant)

    @torch.no_grad()
    def load(self, path: Path, device: torch.device | str = "cpu") -> nn.Module:
        """Rebuild the model from config and quantized tensors (no float weights needed)."""
        config, state, quant = read_checkpoint(path, self.name)
        model = skeleton(config)
        bits_of = {str(k): int(v) for k, v in quant["bits"].items()}
        _quantize_modules(model, bits_of, int(quant["group_size"]))
        load_rest(model, state, skip=set())
        missing = [n for n in bits_of if n not in _quantized_modules(model)]
        if missing:
            raise ValueError(f"{path}: no quantized weights for {missing[:3]}")
        return model.to(device).eval()
