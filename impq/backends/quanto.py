"""optimum-quanto backend: qint2 / qint4 weights per decoder block, frozen."""

from __future__ import annotations

from typing import Any

import torch

from impq.backends.base import check_bits, check_group_size

__all__ = ["QuantoBackend"]


def _qtype(bits: int) -> Any:
    from optimum.quanto import qint2, qint4

    return {2: qint2, 4: qint4}[bits]


class QuantoBackend:
    """Quantizes the linears of each block with optimum-quanto at 2 or 4 bits."""

    name = "quanto"
    supported_bits = frozenset({2, 4})

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
