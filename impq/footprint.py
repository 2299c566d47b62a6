"""Stored size of quantized weights: the packed codes plus per-group scales and zeros."""

from __future__ import annotations

__all__ = ["GROUP_META_BYTES", "quantized_bytes"]

GROUP_META_BYTES = 4
"""One float16 scale and one float16 zero point per group of weights."""


def quantized_bytes(n_weights: int, bits: int, group_size: int) -> int:
    """Bytes needed to store ``n_weights`` at ``bits`` bits in groups of ``group_size``.

    This is the accounting the budget uses: what a backend really stores for a
    group-wise affine quantizer (codes packed at ``bits`` bits, an fp16 scale and zero
    per group). Backends report their own measured size beside it.
    """
    if bits <= 0 or group_size <= 0:
        raise ValueError(f"bits and group_size must be positive, got {bits}, {group_size}")
    groups = -(-n_weights // group_size)
    return -(-n_weights * bits // 8) + groups * GROUP_META_BYTES
