"""The bit-assignment problem: one precision per block, a pairwise objective, a budget.

Block ``i`` takes one of ``precisions`` (ascending); a choice vector (L,) indexes them.
The predicted loss increase of a choice is a pairwise function

    f(c) = Σ_i cost[i, c_i] + Σ_{i<j} pair[i, c_i, j, c_j],

read off a method's :class:`~impq.estimate.LevelObjective` (``f`` over ladder levels,
:mod:`impq.estimate.forms`): a precision on the ladder takes its level's terms. The budget
is a hard limit on stored bytes, counted with :func:`impq.footprint.quantized_bytes`
(packed codes plus per-group scales and zeros) in integers, so rounding can never let an
assignment exceed it.

IMPQ's binary program is the two-level case: ``f(q) = aᵀq + qᵀKq`` with ``q_i = 1`` for
a block at the low precision, ``a_i = φ_i - Σ_{j≠i} K_ij`` (``cost[i, 1] = a_i + K_ii``,
``pair[i, 1, j, 1] = 2 K_ij``). A two-level ladder extends to precisions off the ladder
with the level

    s(b) = (1/(2^b - 1) - 1/(2^hi - 1)) / (1/(2^lo - 1) - 1/(2^hi - 1)),

proportional to the step of a ``b``-bit round-to-nearest quantizer over a fixed range,
normalised so that ``s(lo) = 1`` and ``s(hi) = 0`` (``hi``/``lo`` = the ladder): ``q_i =
s(b)`` in the same form. With {2, 3, 4, 8}: s = 1, 0.286, 0, -0.235; 8 bits is predicted
slightly better than 4. That is an extrapolation from a formula, never measured; a ladder
of three or more levels is measured at every step and admits only its own precisions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from impq.estimate.forms import level_shapley, level_values, quadratic_form
from impq.estimate.level_objective import LevelObjective
from impq.estimate.result import ShapleyResult
from impq.footprint import budget_bytes, quantized_bytes

__all__ = [
    "BitProblem",
    "budget_bytes",
    "choice_form",
    "degradation_level",
    "problem_from_shapley",
    "warn_few_walks",
]

log = logging.getLogger(__name__)


def degradation_level(bits: int, low_bits: int = 2, high_bits: int = 4) -> float:
    """The level ``s(bits)`` of the module docstring: 1 at ``low_bits``, 0 at ``high_bits``."""
    if low_bits >= high_bits:
        raise ValueError(f"low_bits {low_bits} must be below high_bits {high_bits}")

    def step(b: int) -> float:
        return 1.0 / (2**b - 1)

    return (step(bits) - step(high_bits)) / (step(low_bits) - step(high_bits))


def choice_form(
    objective: LevelObjective, precisions: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``(cost, pair)`` of ``objective`` over ``precisions`` (ascending) instead of levels.

    A precision on the ladder takes its level's terms; with a two-level ladder, others
    are extrapolated by ``s(b)`` (module docstring).

    Raises:
        ValueError: a precision is off a ladder of three or more levels.
    """
    ladder = objective.ladder
    off = [b for b in precisions if b not in ladder]
    if not off:
        levels = np.array([ladder.index(b) for b in precisions])
        return objective.cost[:, levels], objective.pair[:, levels][:, :, :, levels]
    if objective.n_steps > 1:
        raise ValueError(
            f"precisions {off} are not on the ladder {list(ladder)}: with three or more "
            "levels every precision is measured, none is extrapolated; set "
            f"solver.precisions to precisions of spqe.ladder (or null for all of {list(ladder)})"
        )
    hi, lo = ladder
    n = objective.n_blocks
    diag = np.zeros(n) if objective.self_interaction is None else objective.self_interaction
    k = objective.pair[:, 1, :, 1] / 2
    k[np.arange(n), np.arange(n)] = diag
    a = objective.cost[:, 1] - diag
    s = np.array([[degradation_level(b, lo, hi)] for b in precisions])
    return quadratic_form(a[:, None], k[:, None, :, None], s)


def _uniform_bytes(sizes: np.ndarray, precisions: tuple[int, ...]) -> dict[int, int]:
    """Bytes of every block at each precision, from the (L, P) size table."""
    return {p: int(total) for p, total in zip(precisions, sizes.sum(axis=0), strict=True)}


def _checked_precisions(precisions: Any) -> tuple[int, ...]:
    ps = tuple(sorted({int(p) for p in precisions}))
    if len(ps) < 2 or ps[0] <= 0:
        raise ValueError(f"need at least two distinct positive precisions, got {list(precisions)}")
    return ps


def _sizes(block_params: np.ndarray, precisions: tuple[int, ...], group_size: int) -> np.ndarray:
    return np.array(
        [[quantized_bytes(int(n), b, group_size) for b in precisions] for n in block_params],
        dtype=np.int64,
    )


def _checked_params(block_params: np.ndarray) -> np.ndarray:
    params = np.asarray(block_params)
    if (
        not np.all(np.isfinite(params))
        or not np.all(params == np.round(params))
        or params.min() <= 0
    ):
        raise ValueError(f"block_params must be positive integers, got {params.tolist()}")
    return params.astype(np.int64)


@dataclass(frozen=True, eq=False)
class BitProblem:
    """One instance of the bit-assignment program: a method's objective, the precisions a
    block may take and a budget in stored bytes.

    Build it with :meth:`from_objective` or :meth:`build` (from a target average
    precision) or :func:`problem_from_shapley`; the constructor checks the precisions and
    the budget. A choice vector (L,) of integers indexes ``precisions`` per block.

    Attributes:
        source: the objective over its ladder.
        precisions: allowed precisions, ascending.
        group_size: quantization group size used to count bytes.
        budget_bytes: hard limit on the blocks' stored bytes.
        budget_bits: the target average precision the budget came from (or None).
    """

    source: LevelObjective
    precisions: tuple[int, ...]
    group_size: int
    budget_bytes: int
    budget_bits: float | None = None
    block_params: np.ndarray = field(init=False, repr=False)
    """(L,) quantizable parameters per block."""
    sizes: np.ndarray = field(init=False, repr=False)
    """(L, P) stored bytes of block i at ``precisions[k]``."""
    cost: np.ndarray = field(init=False, repr=False)
    """(L, P) objective of block i alone at ``precisions[k]``."""
    pair: np.ndarray = field(init=False, repr=False)
    """(L, P, L, P) pairwise terms between blocks at their precisions (symmetric)."""
    phi: np.ndarray = field(init=False, repr=False)
    """(L,) each block's Shapley value from the top of the ladder to its bottom (the
    greedy solver's ranking)."""

    def __post_init__(self) -> None:
        ps = _checked_precisions(self.precisions)
        if self.group_size <= 0:
            raise ValueError(f"group_size must be positive, got {self.group_size}")
        params = _checked_params(self.source.block_params)
        sizes = _sizes(params, ps, self.group_size)
        cost, pair = choice_form(self.source, ps)
        for name, value in (
            ("precisions", ps),
            ("block_params", params),
            ("sizes", sizes),
            ("cost", cost),
            ("pair", pair),
            ("phi", self._scores()),
        ):
            object.__setattr__(self, name, value)
        lo, hi = self.min_bytes, self.max_bytes
        if not lo <= self.budget_bytes <= hi:
            raise ValueError(
                f"budget of {self.budget_bytes} bytes is infeasible: the blocks take {lo} bytes "
                f"all at {ps[0]} bits and {hi} bytes all at {ps[-1]} bits; choose a budget "
                f"in [{lo}, {hi}] bytes, i.e. [{ps[0]}, {ps[-1]}] average bits"
            )

    def _scores(self) -> np.ndarray:
        """Summed step values, or the objective's own where the method has none."""
        values = self.source.values
        if not np.isfinite(values).all():
            values = level_shapley(self.source.cost, self.source.pair)
        return np.asarray(values.sum(axis=1), dtype=np.float64)

    @classmethod
    def from_objective(
        cls,
        objective: LevelObjective,
        budget_bits: float,
        *,
        precisions: tuple[int, ...] | list[int] | None = None,
        group_size: int = 64,
    ) -> BitProblem:
        """The program of ``objective`` under the target average precision ``budget_bits``.

        Args:
            objective: a method's objective over its ladder.
            budget_bits: target average precision, within the precisions' range.
            precisions: the precisions a block may take (default: the ladder's).
            group_size: quantization group size used to count bytes.

        Raises:
            ValueError: a precision off a ladder of three or more levels, fewer than two
                precisions, or a budget outside ``[min(precisions), max(precisions)]``.
        """
        ps = _checked_precisions(objective.ladder if precisions is None else precisions)
        sizes = _sizes(_checked_params(objective.block_params), ps, group_size)
        b = budget_bytes(budget_bits, _uniform_bytes(sizes, ps))
        return cls(objective, ps, group_size, b, float(budget_bits))

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
        """The program of a two-level objective ``(φ, K)`` measured between ``high_bits``
        and ``low_bits``, under the target average precision ``budget_bits``.

        Raises:
            ValueError: mismatched shapes, non-finite ``phi`` or ``K`` (naming the blocks),
                or a budget outside ``[min(precisions), max(precisions)]`` bits.
        """
        if low_bits >= high_bits:
            raise ValueError(f"low_bits {low_bits} must be below high_bits {high_bits}")
        objective = LevelObjective.from_two_level(
            phi, interactions, block_params, (high_bits, low_bits)
        )
        return cls.from_objective(
            objective, budget_bits, precisions=precisions, group_size=group_size
        )

    def with_budget(self, budget_bits: float) -> BitProblem:
        """The same program under another target average precision."""
        b = budget_bytes(budget_bits, _uniform_bytes(self.sizes, self.precisions))
        return replace(self, budget_bytes=b, budget_bits=float(budget_bits))

    @property
    def n_blocks(self) -> int:
        """Number of decoder blocks L."""
        return int(self.block_params.shape[0])

    @property
    def min_bytes(self) -> int:
        """Stored bytes with every block at the lowest precision (B_low)."""
        return int(self.sizes[:, 0].sum())

    @property
    def max_bytes(self) -> int:
        """Stored bytes with every block at the highest precision (B_high)."""
        return int(self.sizes[:, -1].sum())

    @property
    def interactions(self) -> np.ndarray:
        """(L, L) the interaction matrix K of a two-level objective (``pair / 2``, with
        ``self_interaction`` on the diagonal).

        Raises:
            ValueError: the objective's ladder has three or more levels.
        """
        if self.source.n_steps != 1:
            raise ValueError(
                f"K is the two-level form; the ladder {list(self.source.ladder)} has "
                f"{self.source.n_steps + 1} levels (use pair)"
            )
        k = self.source.pair[:, 1, :, 1] / 2
        diag = self.source.self_interaction
        k[np.arange(self.n_blocks), np.arange(self.n_blocks)] = 0.0 if diag is None else diag
        return k

    @property
    def linear(self) -> np.ndarray:
        """(L,) ``a_i = φ_i - Σ_{j≠i} K_ij`` of a two-level objective (see
        :attr:`interactions`)."""
        return self.source.cost[:, 1] - np.diag(self.interactions)

    def stored_bytes(self, choice: np.ndarray) -> np.ndarray | int:
        """Stored bytes of one choice vector (L,) or of a batch (n, L)."""
        choice = np.asarray(choice)
        total = self.sizes[np.arange(self.n_blocks), choice].sum(axis=-1)
        return int(total) if choice.ndim == 1 else total

    def objective(self, choice: np.ndarray) -> np.ndarray | float:
        """Predicted loss increase of one choice vector or a batch."""
        choice = np.asarray(choice)
        value = level_values(self.cost, self.pair, choice)
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


def warn_few_walks(meta: dict[str, Any], n_blocks: int) -> None:
    """Warn when a covariance objective came from fewer walks than blocks: its pairwise
    terms then have rank at most M - 1 and are mostly noise."""
    perms = meta.get("permutations", meta.get("n_permutations"))
    covariance = meta.get("interaction_source", "covariance") == "covariance"
    if covariance and perms is not None and int(perms) < n_blocks:
        log.warning(
            "SPQE used %s permutations for %d blocks: K has rank <= %s and its quadratic "
            "term is mostly noise; raise spqe.permutations above %d",
            perms, n_blocks, int(perms) - 1, n_blocks,
        )  # fmt: skip


def problem_from_shapley(
    result: ShapleyResult,
    budget_bits: float,
    *,
    precisions: tuple[int, ...] | list[int] = (2, 4),
    group_size: int = 64,
    low_bits: int = 2,
    high_bits: int = 4,
) -> BitProblem:
    """The program of a method's two-level objective ``(φ, K)`` (values and interactions
    of ``result``); warns as :func:`warn_few_walks`.
    """
    warn_few_walks(result.meta, result.n_players)
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
