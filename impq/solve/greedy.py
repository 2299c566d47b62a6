"""Greedy knapsack by score: the rule the isolated-metric baselines use."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from impq.config import SolverConfig
from impq.solve.base import Solution, make_solution
from impq.solve.problem import BitProblem

__all__ = ["GreedySolver", "greedy_assignment", "greedy_choice"]


def greedy_choice(scores: np.ndarray, problem: BitProblem) -> np.ndarray:
    """Choice vector of :func:`greedy_assignment`."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (problem.n_blocks,):
        raise ValueError(f"scores has shape {scores.shape}, expected ({problem.n_blocks},)")
    if bad := [int(i) for i in np.flatnonzero(~np.isfinite(scores))]:
        raise ValueError(f"scores are NaN or infinite for blocks {bad}")
    choice = np.zeros(problem.n_blocks, dtype=np.int64)
    slack = problem.budget_bytes - problem.min_bytes
    for i in np.argsort(-scores, kind="stable"):
        extra = problem.sizes[i] - problem.sizes[i, 0]
        fits = np.flatnonzero(extra <= slack)
        choice[i] = fits[-1]
        slack -= int(extra[choice[i]])
    return choice


def greedy_assignment(scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
    """Give the most important blocks the most bits the budget allows.

    Every block starts at the lowest precision. Blocks are visited by decreasing score
    (a higher score means more important, ties broken by block index), and each is raised
    to the highest precision that still fits the remaining budget; a block that does not
    fit keeps its precision and the next one is tried. Only ``problem``'s precisions,
    sizes and budget are used, not its objective, so any per-block metric (LIM, ZD,
    Shapley values, ...) can be ranked this way.

    Args:
        scores: (L,) importance per block; higher = keeps more bits.
        problem: gives the blocks' sizes, the precisions and the byte budget.

    Returns:
        The assignment ``{block: bits}``; its stored bytes never exceed the budget.

    Raises:
        ValueError: ``scores`` has the wrong shape or holds NaN or infinite values.
    """
    return problem.bits(greedy_choice(scores, problem))


@dataclass(frozen=True)
class GreedySolver:
    """Ranks blocks by their Shapley value alone, summed over the ladder's steps
    (ignores interactions), and gives the most important the most bits that fit."""

    name: str = "greedy"

    @classmethod
    def from_config(cls, config: SolverConfig) -> GreedySolver:
        """The solver (it has no settings)."""
        return cls()

    def solve(self, problem: BitProblem) -> Solution:
        """Greedy assignment by :attr:`BitProblem.phi`."""
        start = time.perf_counter()
        choice = greedy_choice(problem.phi, problem)
        return make_solution(problem, choice, self.name, time.perf_counter() - start)
