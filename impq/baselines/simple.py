"""Baselines that need no model pass: isolated Shapley values, random order, uniform."""

from __future__ import annotations

import numpy as np

from impq.baselines.base import BaselineInputs, Need, assign_by_scores
from impq.solve.problem import BitProblem

__all__ = ["RandomBaseline", "ShapleyBaseline", "UniformBaseline", "uniform_assignment"]


class ShapleyBaseline:
    """SPQE Shapley values alone, interactions ignored: what the interactions buy."""

    name = "shapley"
    seeded = False
    needs: frozenset[Need] = frozenset({"shapley"})

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """Each block's Shapley value (NLL increase when it goes to low bits)."""
        inputs.require(self.name, *self.needs)
        assert inputs.shapley is not None
        values = np.asarray(inputs.shapley.values, dtype=np.float64)
        if values.shape != (n_blocks,):
            raise ValueError(f"SPQE result has {values.shape[0]} blocks, the model {n_blocks}")
        return values

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """Greedy budget rule on the Shapley ranking."""
        return assign_by_scores(scores, problem)


class RandomBaseline:
    """A seeded random ranking fed to the same greedy budget rule."""

    name = "random"
    seeded = True
    needs: frozenset[Need] = frozenset()

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """A random permutation of ``0..L-1`` from ``inputs.seed``."""
        return np.random.default_rng(inputs.seed).permutation(n_blocks).astype(np.float64)

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """Greedy budget rule on the random ranking."""
        return assign_by_scores(scores, problem)


def uniform_assignment(problem: BitProblem) -> dict[int, int]:
    """Every block at the highest single precision whose total fits the budget.

    With precisions {2, 4} every budget below 4 average bits gives all-2.
    """
    n = problem.n_blocks
    for k in range(len(problem.precisions) - 1, -1, -1):
        choice = np.full(n, k)
        if problem.feasible(choice):
            return problem.bits(choice)
    raise ValueError(f"no single precision fits the budget of {problem.budget_bytes} bytes")


class UniformBaseline:
    """One precision for every block: the highest that fits the budget."""

    name = "uniform"
    seeded = False
    needs: frozenset[Need] = frozenset()

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """All zeros: uniform does not rank blocks."""
        return np.zeros(n_blocks)

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """See :func:`uniform_assignment`."""
        return uniform_assignment(problem)
