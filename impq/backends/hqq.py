"""HQQ backend: one ``HQQLinear`` per linear of each block, at 2 or 4 bits."""

from __future__ import annotations

from typing import Any

import torch

from impq.backends.base import check_bits, check_group_size

__all__ = ["HqqBackend"]


def _weight_params(bits: int, group_size: int) -> dict[str, Any]:
    """HQQ's own per-weight settings for ``bits`` (what ``BaseQuantizeConfig`` yields)."""
    from hqq.core.quantize import BaseQuantizeConfig

    params: dict[str, Any] = BaseQuantizeConfig(nbits=bits, group_size=group_size)[
        "weight_quant_params"
    ]
    return params


class HqqBackend:
    """Replaces each linear of a block by an ``HQQLinear`` at 2 or 4 bits."""

    name = "hqq"
    supported_bits = frozenset({2, 4})

    @torch.no_grad()
    def dequantize_weight(self, weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
        """``weight`` through HQQ's optimized group-wise quantizer at ``bits``, dequantized."""
        check_bits(self.name, bits, self.supported_bits)
        check_group_size(self.name, weight, group_size)
        from hqq.core.quantize import Quantizer

        params = {**_weight_params(bits, group_size), "bitpack": False}
        compute = torch.float32 if weight.dtype == torch.float32 else weight.dtype
        w_q, meta = Quantizer.quantize(
            weight, compute_dtype=compute, device=str(weight.device), **params
        )
        out = Quantizer.dequantize(w_q, meta)
        return out.to(dtype=weight.dtype, device=weight.device).reshape(weight.shape)
