"""Stored size of quantized weights: the packed codes plus what a backend keeps beside them.

Two accountings, one formula:

- the solver's, :func:`quantized_bytes` (= :data:`SOLVER`): codes packed at ``bits`` plus a
  16-bit scale and a 16-bit zero per group. It prices every block of the bit program.
- a backend's own, :class:`Footprint`: what that backend really writes for one linear
  (its codes as the library packs them, the per-group scale and zero at their stored
  width, per-column or per-linear extras). ``Backend.footprint`` returns it; the backends'
  tests hold it equal to the bytes they store at every precision they support.

A budget of ``b`` average bits is a byte count interpolated between all blocks at the
lowest and at the highest precision (:func:`budget_bytes`), in the
bytes of whichever footprint is asked. A footprint affine in the bits with a slope
proportional to the weights (codes ``n b / 8``, packed zeros ``n b / (8 g)``; scales and
per-column extras do not depend on ``b``) loses its constant part in the interpolation,
so an assignment within the solver's byte budget is within that backend's byte budget of
the same average bits: GPTQ's at every precision (widths in multiples of 32), HQQ's and
quanto's at 2 and 4 bits. HQQ's 3-bit codes (10 to an int32 word: 3.2 bits a weight and
more) lie above that line and quanto's 8-bit blocks (one scale per row, no groups) below
it, so with 3 bits between HQQ's lowest and highest precision, or 4 between quanto's 2
and 8, an assignment within the solver's budget can be over the backend's
(``tests/unit/backends/test_footprint.py`` checks every assignment of a small model and
records where).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["GROUP_META_BYTES", "SOLVER", "Footprint", "budget_bytes", "quantized_bytes"]

GROUP_META_BYTES = 4
"""One float16 scale and one float16 zero point per group of weights (the solver's)."""


@dataclass(frozen=True)
class Footprint:
    """Bytes a backend stores for one quantized linear: packed codes and what sits beside.

    The parts are methods (:meth:`codes`, :meth:`scales`, :meth:`zeros`) so that a
    backend whose layout changes with the bits (HQQ's 3-bit words, quanto's 8-bit rows,
    GPTQ's int32 words) overrides the part that differs.

    Attributes:
        scale_bytes: bytes of the scale of each group.
        zero_bytes: bytes of the zero (shift) of each group.
        column_bytes: bytes per input column (GPTQ's int32 ``g_idx``).
        linear_bytes: bytes per linear (quanto's input and output scales).
    """

    scale_bytes: int = 2
    zero_bytes: int = 2
    column_bytes: int = 0
    linear_bytes: int = 0

    def linear(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """Stored bytes of one ``out_features x in_features`` linear at ``bits`` bits.

        Raises:
            ValueError: non-positive bits or group size, or a group size that does not
                divide ``in_features`` (groups run along the input dimension).
        """
        if bits <= 0 or group_size <= 0:
            raise ValueError(f"bits and group_size must be positive, got {bits}, {group_size}")
        if in_features % group_size:
            raise ValueError(
                f"group size {group_size} does not divide the input width {in_features}"
            )
        shape = (out_features, in_features, bits, group_size)
        return (
            self.codes(*shape)
            + self.scales(*shape)
            + self.zeros(*shape)
            + in_features * self.column_bytes
            + self.linear_bytes
        )

    def codes(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """Bytes of the codes: ``bits`` per weight, packed without gaps."""
        return -(-out_features * in_features * bits // 8)

    def scales(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """Bytes of the scales: one per group of ``group_size`` weights."""
        return out_features * in_features // group_size * self.scale_bytes

    def zeros(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """Bytes of the zeros (shifts): one per group of ``group_size`` weights."""
        return out_features * in_features // group_size * self.zero_bytes


SOLVER = Footprint()
"""The solver's accounting as a :class:`Footprint`: 16-bit scale and zero per group."""


def quantized_bytes(n_weights: int, bits: int, group_size: int) -> int:
    """Bytes needed to store ``n_weights`` at ``bits`` bits in groups of ``group_size``.

    This is the accounting the budget uses (:data:`SOLVER` for a whole block: codes
    packed at ``bits`` bits, an fp16 scale and zero per group). Backends report their
    own measured size beside it.
    """
    if bits <= 0 or group_size <= 0:
        raise ValueError(f"bits and group_size must be positive, got {bits}, {group_size}")
    groups = -(-n_weights // group_size)
    return -(-n_weights * bits // 8) + groups * GROUP_META_BYTES


def budget_bytes(avg_bits: float, min_bytes: int, max_bytes: int, lo: int, hi: int) -> int:
    """Byte budget for a target average precision, interpolated between all-lo and all-hi.

    ``B = B_lo + (avg_bits - lo) / (hi - lo) * (B_hi - B_lo)``, rounded down, computed in
    exact rational arithmetic on the decimal form of ``avg_bits`` so that ``avg_bits = lo``
    gives ``B_lo`` and ``avg_bits = hi`` gives ``B_hi`` exactly.

    Raises:
        ValueError: ``avg_bits`` is not finite or lies outside ``[lo, hi]``.
    """
    if not math.isfinite(avg_bits) or not lo <= avg_bits <= hi:
        raise ValueError(
            f"budget {avg_bits} average bits is infeasible: with precisions {lo}..{hi} the "
            f"feasible range is [{lo}, {hi}] bits, i.e. {min_bytes} to {max_bytes} bytes"
        )
    frac = (Fraction(repr(float(avg_bits))) - lo) / (hi - lo)
    return min_bytes + int(frac * (max_bytes - min_bytes))
