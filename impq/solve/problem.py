"""The bit-assignment problem: a quadratic objective over per-block precisions and a budget.

The core is IMPQ's binary quadratic program. Block ``i`` carries a degradation level
``q_i`` (1 at the SPQE low precision, 0 at the SPQE high precision) and the predicted
loss increase of an assignment is

    f(q) = a^T q + q^T K q,   a_i = phi_i - sum_{j != i} K_ij,

with ``phi`` the Shapley values and ``K`` the interaction matrix of one method's
interaction model (:mod:`impq.estimate.objectives`: the paper's covariance form, the
Shapley interaction index halved, or a fitted quadratic surrogate). The budget is a hard limit on stored bytes, counted
with :func:`impq.footprint.quantized_bytes` (packed codes plus per-group scales and zeros)
in integers, so rounding can never let an assignment exceed it.

More than two precisions use the same objective with one choice per block and the level

    s(b) = (1/(2^b - 1) - 1/(2^hi - 1)) / (1/(2^lo - 1) - 1/(2^hi - 1)),

proportional to the step of a ``b``-bit round-to-nearest quantizer over a fixed range,
normalised so that ``s(lo) = 1`` and ``s(hi) = 0`` (``lo``/``hi`` = the precisions SPQE
measured, 2 and 4 by default). With {2, 3, 4, 8}: s = 1, 0.286, 0, -0.235; 8 bits is
predicted slightly better than 4. With precisions {lo, hi} this is exactly the binary
program.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from impq.estimate.result import ShapleyResult
from impq.footprint import budget_bytes, quantized_bytes

__all__ = [
    "BitProblem",
    "budget_bytes",
    "degradation_level",
    "problem_from_shapley",
]

log = logging.getLogger(__name__)


def degradation_level(bits: int, low_bits: int = 2, high_bits: int = 4) -> float:
    """The level ``s(bits)`` of the module docstring: 1 at ``low_bits``, 0 at ``high_bits``."""
    if low_bits >= high_bits:
        raise ValueError(f"low_bits {low_bits} must be below high_bits {high_bits}")

    def step(b: int) -> float:
        return 1.0 / (2**b - 1)

    return (step(bits) - step(high_bits)) / (step(low_bits) - step(high_bits))


def _nonfinite_blocks(arr: np.ndarray) -> list[int]:
    bad = ~np.isfinite(arr)
    if arr.ndim == 2:
        bad = bad.any(axis=1) | bad.any(axis=0)
    return [int(i) for i in np.flatnonzero(bad)]


def _checked(
    phi: Any, interactions: Any, block_params: Any, precisions: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """Validated, normalised copies of the inputs (K symmetrised, precisions sorted)."""
    phi = np.asarray(phi, dtype=np.float64)
    k = np.asarray(interactions, dtype=np.float64)
    params = np.asarray(block_params)
    if phi.ndim != 1 or phi.shape[0] == 0:
        raise ValueError(f"phi must be a non-empty vector, got shape {phi.shape}")
    n = phi.shape[0]
    if k.shape != (n, n):
        raise ValueError(f"interactions K has shape {k.shape}, expected ({n}, {n}) for {n} blocks")
    if params.shape != (n,):
        raise ValueError(f"block_params has shape {params.shape}, expected ({n},) for {n} blocks")
    if bad := _nonfinite_blocks(phi):
        raise ValueError(f"phi (Shapley values) is NaN or infinite for blocks {bad}")
    if bad := _nonfinite_blocks(k):
        raise ValueError(f"interactions K hold NaN or infinite entries for blocks {bad}")
    if (
        not np.all(np.isfinite(params))
        or not np.all(params == np.round(params))
        or params.min() <= 0
    ):
        raise ValueError(f"block_params must be positive integers, got {params.tolist()}")
    ps = tuple(sorted({int(p) for p in precisions}))
    if len(ps) < 2 or ps[0] <= 0:
        raise ValueError(f"need at least two distinct positive precisions, got {list(precisions)}")
    return phi, (k + k.T) / 2, params.astype(np.int64), ps


def _sizes(block_params: np.ndarray, precisions: tuple[int, ...], group_size: int) -> np.ndarray:
    return np.array(
        [[quantized_bytes(int(n), b, group_size) for b in precisions] for n in block_params],
        dtype=np.int64,
    )


@dataclass(frozen=True, eq=False)
class BitProblem:
    """One instance of the bit-assignment program.

    Build it with :meth:`build` (from a target average precision) or
    :func:`problem_from_shapley`; the constructor checks shapes, values and the budget.
    A choice vector (L,) of integers indexes ``precisions`` per block.

    Attributes:
        phi: (L,) Shapley values (loss increase when the block goes to ``low_bits``).
        interactions: (L, L) interaction matrix K (symmetrised).
        block_params: (L,) quantizable parameters per block.
        precisions: allowed precisions, ascending.
        group_size: quantization group size used to count bytes.
        budget_bytes: hard limit on the blocks' stored bytes.
        budget_bits: the target average precision the budget came from (or None).
        low_bits: precision of level 1 (what SPQE lowered blocks to).
        high_bits: precision of level 0 (what SPQE started from).
    """

    phi: np.ndarray
    interactions: np.ndarray
    block_params: np.ndarray
    precisions: tuple[int, ...]
    group_size: int
    budget_bytes: int
    budget_bits: float | None = None
    low_bits: int = 2
    high_bits: int = 4
    sizes: np.ndarray = field(init=False, repr=False)
    """(L, P) stored bytes of block i at ``precisions[k]``."""
    levels: np.ndarray = field(init=False, repr=False)
    """(P,) degradation level s(b) of each precision."""
    linear: np.ndarray = field(init=False, repr=False)
    """(L,) linear coefficients a_i = phi_i - sum_{j != i} K_ij."""

    def __post_init__(self) -> None:
        phi, k, params, ps = _checked(
            self.phi, self.interactions, self.block_params, self.precisions
        )
        if self.group_size <= 0:
            raise ValueError(f"group_size must be positive, got {self.group_size}")
        sizes = _sizes(params, ps, self.group_size)
        levels = np.array([degradation_level(b, self.low_bits, self.high_bits) for b in ps])
        for name, value in (
            ("phi", phi),
            ("interactions", k),
            ("block_params", params),
            ("precisions", ps),
            ("sizes", sizes),
            ("levels", levels),
            ("linear", phi - (k.sum(axis=1) - np.diag(k))),
        ):
            object.__setattr__(self, name, value)
        lo, hi = self.min_bytes, self.max_bytes
        if not lo <= self.budget_bytes <= hi:
            raise ValueError(
                f"budget of {self.budget_bytes} bytes is infeasible: the blocks take {lo} bytes "
                f"all at {ps[0]} bits and {hi} bytes all at {ps[-1]} bits; choose a budget "
                f"in [{lo}, {hi}] bytes, i.e. [{ps[0]}, {ps[-1]}] average bits"
            )

    @classmethod
    def build(
        cls,
        phi: Any,
        interactions: Any,
        block_params: Any,
        budget_bits: float,
        *,
        precisions: tuple[int, ...] | list[int] = (2, 4),
        group_size: int = 64,
        low_bits: int = 2,
        high_bits: int = 4,
    ) -> BitProblem:
        """A problem whose budget is the target average precision ``budget_bits``.

        Raises:
            ValueError: mismatched shapes, non-finite ``phi`` or ``K`` (naming the blocks),
                or a budget outside ``[min(precisions), max(precisions)]`` bits.
        """
        _, _, params, ps = _checked(phi, interactions, block_params, precisions)
        sizes = _sizes(params, ps, group_size)
        b = budget_bytes(
            budget_bits, int(sizes[:, 0].sum()), int(sizes[:, -1].sum()), ps[0], ps[-1]
        )
        return cls(
            phi, interactions, block_params, ps, group_size, b, float(budget_bits),
            low_bits, high_bits,
        )  # fmt: skip

    def with_budget(self, budget_bits: float) -> BitProblem:
        """The same program under another target average precision."""
        b = budget_bytes(
            budget_bits, self.min_bytes, self.max_bytes, self.precisions[0], self.precisions[-1]
        )
        return replace(self, budget_bytes=b, budget_bits=float(budget_bits))

    @property
    def n_blocks(self) -> int:
        """Number of decoder blocks L."""
        return int(self.phi.shape[0])

    @property
    def min_bytes(self) -> int:
        """Stored bytes with every block at the lowest precision (B_low)."""
        return int(self.sizes[:, 0].sum())

    @property
    def max_bytes(self) -> int:
        """Stored bytes with every block at the highest precision (B_high)."""
        return int(self.sizes[:, -1].sum())

    def stored_bytes(self, choice: np.ndarray) -> np.ndarray | int:
        """Stored bytes of one choice vector (L,) or of a batch (n, L)."""
        choice = np.asarray(choice)
        total = self.sizes[np.arange(self.n_blocks), choice].sum(axis=-1)
        return int(total) if choice.ndim == 1 else total

    def objective(self, choice: np.ndarray) -> np.ndarray | float:
        """Predicted loss increase a^T q + q^T K q of one choice vector or a batch."""
        choice = np.asarray(choice)
        q = self.levels[choice]
        value = q @ self.linear + np.einsum("...i,...i->...", q @ self.interactions, q)
        return float(value) if choice.ndim == 1 else value

    def feasible(self, choice: np.ndarray) -> bool:
        """Whether a choice vector fits the budget."""
        return int(self.stored_bytes(choice)) <= self.budget_bytes

    def bits(self, choice: np.ndarray) -> dict[int, int]:
        """The assignment ``{block: bits}`` of a choice vector."""
        return {i: self.precisions[int(c)] for i, c in enumerate(np.asarray(choice))}

    def choice(self, bits: dict[int, int]) -> np.ndarray:
        """The choice vector of an assignment ``{block: bits}``.

        Raises:
            ValueError: a block is missing or its bits are not among ``precisions``.
        """
        if sorted(bits) != list(range(self.n_blocks)):
            raise ValueError(f"assignment must cover blocks 0..{self.n_blocks - 1}")
        bad = {i: b for i, b in bits.items() if b not in self.precisions}
        if bad:
            raise ValueError(f"bits {bad} are not among the precisions {self.precisions}")
        return np.array([self.precisions.index(bits[i]) for i in range(self.n_blocks)])

    def avg_bits(self, choice: np.ndarray) -> float:
        """Parameter-weighted average bits of a choice vector."""
        b = np.asarray(self.precisions, dtype=np.float64)[np.asarray(choice)]
        return float(b @ self.block_params / self.block_params.sum())


def problem_from_shapley(
    result: ShapleyResult,
    budget_bits: float,
    *,
    precisions: tuple[int, ...] | list[int] = (2, 4),
    group_size: int = 64,
    low_bits: int = 2,
    high_bits: int = 4,
) -> BitProblem:
    """The program of a method's objective ``(φ, K)`` (values and interactions of
    ``result``, as the ``interactions`` stage writes them per method).

    Warns when a covariance ``K`` came from fewer permutations than blocks: it then has
    rank at most M - 1 and its quadratic term is mostly noise.
    """
    n = result.n_players
    perms = result.meta.get("permutations", result.meta.get("n_permutations"))
    covariance = result.meta.get("interaction_source", "covariance") == "covariance"
    if covariance and perms is not None and int(perms) < n:
        log.warning(
            "SPQE used %s permutations for %d blocks: K has rank <= %s and its quadratic "
            "term is mostly noise; raise spqe.permutations above %d",
            perms, n, int(perms) - 1, n,
        )  # fmt: skip
    return BitProblem.build(
        result.values,
        result.interactions,
        result.block_params,
        budget_bits,
        precisions=precisions,
        group_size=group_size,
        low_bits=low_bits,
        high_bits=high_bits,
    )
