"""The baseline protocol, its registry and the shared rule from scores to assignments.

A baseline ranks blocks by an isolated metric (no interactions) and hands the ranking to
:func:`level_order`; the uniform baselines are the rule-based exceptions.

**Method names.** A registered name (:data:`BASELINES`) is a baseline; ``<name>-<k>`` with
``<name>`` a *seeded* baseline is its replicate ``k`` (``random-1``: seed ``eval.seed +
1``); ``uniform-<bits>`` (:data:`FIXED_BITS`) is every block at ``<bits>``. No seeded
baseline is a fixed-bits family, so the two forms never meet: ``uniform-3`` is 3 bits,
``random-3`` a replicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn

from impq.estimate.level_objective import LevelObjective
from impq.estimate.result import ShapleyResult
from impq.registry import Registry
from impq.solve.problem import BitProblem

__all__ = [
    "BASELINES",
    "FIXED_BITS",
    "Baseline",
    "BaselineInputs",
    "Need",
    "assign_by_scores",
    "budget_problem",
    "fixed_bits",
    "get_baseline",
    "level_order",
    "parse_baseline",
]

Need = Literal["model", "calibration", "shapley"]


@dataclass(frozen=True)
class BaselineInputs:
    """What a baseline may read; the stage fills only what the chosen baselines need.

    Attributes:
        model: the float model.
        calibration: (n, seqlen) calibration token ids.
        shapley: the SPQE result.
        seed: seed of the random baseline.
        batch_size: calibration rows per forward pass.
    """

    model: nn.Module | None = None
    calibration: torch.Tensor | None = None
    shapley: ShapleyResult | None = None
    seed: int = 0
    batch_size: int = 8

    def require(self, baseline: str, *needs: Need) -> None:
        """Raise ValueError naming what ``baseline`` needs and is missing."""
        missing = sorted(n for n in needs if getattr(self, n) is None)
        if missing:
            raise ValueError(f"baseline {baseline!r} needs {missing}, which were not given")


class Baseline(Protocol):
    """An isolated-metric baseline: block scores, then an assignment under a budget."""

    name: str
    needs: frozenset[Need]
    seeded: bool
    """Whether the scores depend on ``inputs.seed``: such a baseline may be run as
    replicates ``<name>-<k>`` (seed ``eval.seed + k``)."""

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """(L,) importance per block; higher keeps more bits."""
        ...

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """The assignment ``{block: bits}`` for ``problem``'s budget."""
        ...


def budget_problem(
    block_params: Sequence[int] | np.ndarray,
    budget_bits: float,
    ladder: Sequence[int] = (4, 2),
    *,
    precisions: Sequence[int] | None = None,
    group_size: int = 64,
) -> BitProblem:
    """A program of the byte budget alone (a zero objective over ``ladder``): all that the
    rankings and the searches on the game read (sizes, precisions, budget, ladder).

    Args:
        block_params: (L,) quantizable parameters per block.
        budget_bits: target average precision.
        ladder: the game's ladder, strictly descending.
        precisions: the precisions a block may take (default: the ladder's).
        group_size: quantization group size used to count bytes.
    """
    n, width = len(block_params), len(ladder)
    if width == 2:  # precisions off a two-level ladder stay allowed (extrapolated)
        return BitProblem.build(
            np.zeros(n), np.zeros((n, n)), block_params, budget_bits,
            precisions=tuple(ladder if precisions is None else precisions),
            group_size=group_size, low_bits=ladder[1], high_bits=ladder[0],
        )  # fmt: skip
    pair = np.zeros((n, width, n, width))
    objective = LevelObjective(
        tuple(ladder), np.zeros((n, width)), pair, np.zeros((n, width - 1)),
        np.full((n, width - 1), np.nan), np.full(pair.shape, np.nan), np.asarray(block_params),
    )  # fmt: skip
    return BitProblem.from_objective(
        objective,
        budget_bits,
        precisions=None if precisions is None else tuple(precisions),
        group_size=group_size,
    )


def level_order(scores: np.ndarray, problem: BitProblem) -> np.ndarray:
    """The choice vector of a ranking: upgrade the highest-scored blocks first, one
    precision step at a time, while the budget allows.

    Every block starts at the lowest precision. A pass visits the blocks by decreasing
    score (ties by block index) and raises each by one step (to the next of
    ``problem.precisions``) if that step's extra bytes fit in what is left of the budget;
    a block whose step does not fit is skipped, and the next one is tried. Passes repeat
    until one raises nothing. With two precisions this is one pass: each block in rank
    order goes to the high precision if it fits (the greedy knapsack of
    :func:`impq.solve.greedy.greedy_choice`). With more, the budget is spread a step at a
    time: the top-ranked blocks reach the second precision before any reaches the third.
    Only the problem's precisions, sizes and budget are used, not its objective.

    Raises:
        ValueError: ``scores`` has the wrong shape or holds NaN or infinite values.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (problem.n_blocks,):
        raise ValueError(f"scores has shape {scores.shape}, expected ({problem.n_blocks},)")
    if bad := [int(i) for i in np.flatnonzero(~np.isfinite(scores))]:
        raise ValueError(f"scores are NaN or infinite for blocks {bad}")
    top = len(problem.precisions) - 1
    choice = np.zeros(problem.n_blocks, dtype=np.int64)
    slack = problem.budget_bytes - problem.min_bytes
    order = np.argsort(-scores, kind="stable")
    raised = True
    while raised:
        raised = False
        for i in order:
            if choice[i] == top:
                continue
            step = int(problem.sizes[i, choice[i] + 1] - problem.sizes[i, choice[i]])
            if step <= slack:
                choice[i] += 1
                slack -= step
                raised = True
    return choice


def assign_by_scores(scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
    """The assignment of :func:`level_order` (the rule every ranking baseline shares)."""
    return problem.bits(level_order(scores, problem))


BASELINES = Registry(
    "baseline",
    {
        "lim": "impq.baselines.lim:LimBaseline",
        "zd": "impq.baselines.zd:ZdBaseline",
        "zd-tuned": "impq.baselines.zd:ZdTunedBaseline",
        "shapley": "impq.baselines.simple:ShapleyBaseline",
        "uniform-fit": "impq.baselines.simple:UniformFitBaseline",
        "uniform": "impq.baselines.simple:UniformFitBaseline",
        "random": "impq.baselines.simple:RandomBaseline",
    },
)
"""Baseline name -> ``module:class``; the one place where baselines are registered.
``uniform`` is ``uniform-fit`` under its older name (configs that say ``uniform`` keep
their artifacts and rows)."""

FIXED_BITS = Registry("baseline", {"uniform": "impq.baselines.simple:UniformBaseline"})
"""Family -> ``module:class`` of the baselines named ``<family>-<bits>``: the class is
built with ``bits``."""


def fixed_bits(method: str) -> tuple[str, int] | None:
    """``(family, bits)`` of a ``<family>-<bits>`` name of :data:`FIXED_BITS`, else None."""
    family, _, bits = method.rpartition("-")
    if family in FIXED_BITS and bits.isdigit() and int(bits) > 0:
        return family, int(bits)
    return None


def parse_baseline(method: str) -> tuple[str, int | None]:
    """``(baseline name, replicate)`` of a method name: ``"lim"`` -> ``("lim", None)``,
    ``"random-2"`` -> ``("random", 2)`` (replicates exist for seeded baselines only),
    ``"uniform-3"`` -> ``("uniform-3", None)`` (every block at 3 bits).

    Raises:
        ValueError: ``method`` is neither a registered baseline, a replicate of a seeded
            one nor ``uniform-<bits>``; the message lists the valid names.
    """
    if method in BASELINES or fixed_bits(method) is not None:
        return method, None
    base, _, index = method.rpartition("-")
    if base in BASELINES and index.isdigit() and get_baseline(base).seeded:
        return base, int(index)
    seeded = sorted(n for n in BASELINES if get_baseline(n).seeded)
    raise ValueError(
        f"unknown baseline {method!r}; choose from {sorted(BASELINES)} "
        f"(seeded ones also as <name>-<k>: {[f'{n}-0' for n in seeded]}; "
        f"{[f'{f}-<bits>' for f in FIXED_BITS]} for every block at <bits>)"
    )


def get_baseline(name: str) -> Baseline:
    """The baseline named ``name`` (a replicate ``<name>-<k>`` gives ``<name>``;
    ``uniform-<bits>`` the uniform baseline at those bits).

    Raises:
        ValueError: ``name`` is not a baseline; the message lists the valid names.
    """
    if fixed := fixed_bits(name):
        family, bits = fixed
        built: Baseline = FIXED_BITS.load(family)(bits)
        return built
    if name not in BASELINES and name.rpartition("-")[0] in BASELINES:
        name = parse_baseline(name)[0]
    baseline: Baseline = BASELINES.load(name)()
    return baseline
