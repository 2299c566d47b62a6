"""Stored size of quantized weights: the packed codes plus what a backend keeps beside them.

Two accountings, one formula:

- the solver's, :func:`quantized_bytes` (= :data:`SOLVER`): codes packed at ``bits`` plus a
  16-bit scale and a 16-bit zero per group. It prices every block of the bit program.
- a backend's own, :class:`Footprint`: what that backend really writes for one linear
  (its codes as the library packs them, the per-group scale and zero at their stored
  width, per-column or per-linear extras). ``Backend.footprint`` returns it; the backends'
  tests hold it equal to the bytes they store at every precision they support.

A budget of ``b`` average bits is the bytes of the uniform model at ``b``: the uniform
sizes at the precisions, interpolated between the two around ``b`` (:func:`budget_bytes`),
in the bytes of whichever footprint is asked. A footprint affine in the bits with a slope
proportional to the weights (codes ``n b / 8``, packed zeros ``n b / (8 g)``; scales and
per-column extras do not depend on ``b``) loses its constant part in the interpolation,
so an assignment within the solver's byte budget is within that backend's byte budget of
the same average bits: GPTQ's at every precision (widths in multiples of 32). HQQ's 3-bit
codes (10 to an int32 word: 3.2 bits a weight and more) and quanto's 8-bit blocks (one
scale per row, no groups) are not on that line; where the uniform sizes bend downward
(each step's bytes per bit no larger than the step below's: HQQ over {2, 3, 4}, quanto
over {2, 4, 8}) an assignment within the solver's budget is still within the backend's,
and where they bend upward (HQQ's 3 and 8 bits together) it can be over
(``tests/unit/backends/test_footprint.py`` checks every assignment of a small model and
records where).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise

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


def budget_bytes(avg_bits: float, uniform_bytes: Mapping[int, int]) -> int:
    """Byte budget of a target average precision: the uniform model's bytes at
    ``avg_bits``, interpolated between the two precisions around it.

    ``uniform_bytes`` maps each precision to the bytes of every block at it. Between
    neighbouring precisions ``p < q``: ``B = B_p + (avg_bits - p) / (q - p) * (B_q - B_p)``,
    rounded down, in exact rational arithmetic on the decimal form of ``avg_bits``, so a
    budget at a precision is exactly that uniform model's bytes (the best uniform model
    that fits always fits, in any footprint). With two precisions, or a footprint affine
    in the bits, this is the straight line between the lowest and the highest precision.

    Raises:
        ValueError: fewer than two precisions, or ``avg_bits`` is not finite or lies
            outside ``[min, max]`` of the precisions.
    """
    ps = sorted(uniform_bytes)
    if len(ps) < 2:
        raise ValueError(f"a budget needs at least two precisions, got {ps}")
    lo, hi = ps[0], ps[-1]
    if not math.isfinite(avg_bits) or not lo <= avg_bits <= hi:
        raise ValueError(
            f"budget {avg_bits} average bits is infeasible: with precisions {ps} the "
            f"feasible range is [{lo}, {hi}] bits, i.e. {uniform_bytes[lo]} to "
            f"{uniform_bytes[hi]} bytes"
        )
    bits = Fraction(repr(float(avg_bits)))
    p, q = next((p, q) for p, q in pairwise(ps) if bits <= q)
    frac = (bits - p) / (q - p)
    return uniform_bytes[p] + int(frac * (uniform_bytes[q] - uniform_bytes[p]))
