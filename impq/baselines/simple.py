"""Baselines that need no model pass: isolated Shapley values, random order, uniform
(at fixed bits, and the best that fits)."""

from __future__ import annotations

import numpy as np

from impq.baselines.base import BaselineInputs, Need, assign_by_scores
from impq.solve.problem import BitProblem

__all__ = [
    "RandomBaseline",
    "ShapleyBaseline",
    "UniformBaseline",
    "UniformFitBaseline",
    "uniform_fit_choice",
]


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
        """The level order (:func:`~impq.baselines.base.level_order`) of the Shapley ranking."""
        return assign_by_scores(scores, problem)


class RandomBaseline:
    """A seeded random ranking fed to the same level order."""

    name = "random"
    seeded = True
    needs: frozenset[Need] = frozenset()

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """A random permutation of ``0..L-1`` from ``inputs.seed``."""
        return np.random.default_rng(inputs.seed).permutation(n_blocks).astype(np.float64)

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """The level order of the random ranking."""
        return assign_by_scores(scores, problem)


def uniform_fit_choice(problem: BitProblem) -> np.ndarray:
    """Every block at the highest single precision whose total fits the budget: the
    default a user would otherwise ship.

    With precisions {2, 4} every budget below 4 average bits gives all-2.
    """
    n = problem.n_blocks
    for k in range(len(problem.precisions) - 1, -1, -1):
        choice = np.full(n, k)
        if problem.feasible(choice):
            return choice
    raise ValueError(f"no single precision fits the budget of {problem.budget_bytes} bytes")


class UniformFitBaseline:
    """One precision for every block: the highest that fits the budget (the best uniform
    that fits; also registered as ``uniform``)."""

    name = "uniform-fit"
    seeded = False
    needs: frozenset[Need] = frozenset()

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """All zeros: uniform does not rank blocks."""
        return np.zeros(n_blocks)

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """See :func:`uniform_fit_choice`."""
        return problem.bits(uniform_fit_choice(problem))


class UniformBaseline:
    """Every block at ``bits``, whatever the budget (``uniform-<bits>``): a reference
    point, reported with its own stored bytes, which may exceed the budget."""

    seeded = False
    needs: frozenset[Need] = frozenset()

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.name = f"uniform-{bits}"

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """All zeros: uniform does not rank blocks."""
        return np.zeros(n_blocks)

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """Every block at ``bits``.

        Raises:
            ValueError: ``bits`` is not among the problem's precisions.
        """
        if self.bits not in problem.precisions:
            raise ValueError(
                f"{self.name}: {self.bits} bits is not among solver.precisions "
                f"{list(problem.precisions)}; add it there or drop {self.name}"
            )
        return dict.fromkeys(range(problem.n_blocks), self.bits)
