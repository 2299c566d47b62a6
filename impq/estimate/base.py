"""What every estimator returns, the estimator protocol and the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from impq.estimate.result import ShapleyResult
from impq.game.base import Game
from impq.registry import Registry

__all__ = ["ESTIMATORS", "Estimate", "Estimator", "get_estimator"]


@dataclass
class Estimate:
    """Shapley values and pairwise interactions of a game, with standard errors.

    Attributes:
        values: (L,) Shapley values.
        values_se: (L,) standard errors of ``values`` (zero when exact).
        interactions: (L, L) symmetric interaction matrix.
        interactions_se: (L, L) standard errors of ``interactions`` (NaN when unknown).
        n_evaluations: value-function evaluations spent.
        marginals: (M, L) marginal contribution of each player in each sampled
            permutation (None for estimators that do not sample permutations).
        meta: JSON-safe details (estimator, permutations, non-finite counts, ...).
    """

    values: np.ndarray
    values_se: np.ndarray
    interactions: np.ndarray
    interactions_se: np.ndarray
    n_evaluations: int
    marginals: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_result(
        self, block_params: np.ndarray | None = None, meta: dict[str, Any] | None = None
    ) -> ShapleyResult:
        """The shared artifact type, with ``block_params`` (ones when not given)."""
        n = len(self.values)
        params = np.ones(n, dtype=np.int64) if block_params is None else np.asarray(block_params)
        return ShapleyResult(
            values=self.values,
            values_se=self.values_se,
            interactions=self.interactions,
            interactions_se=self.interactions_se,
            block_params=params,
            meta={**self.meta, "n_evaluations": self.n_evaluations, **(meta or {})},
        )


@runtime_checkable
class Estimator(Protocol):
    """Estimates Shapley values and interactions of a game within an evaluation budget."""

    name: str

    def estimate(self, game: Game, budget: int, rng: np.random.Generator) -> Estimate:
        """Spend at most ``budget`` evaluations of ``game``; draw randomness from ``rng``."""
        ...


ESTIMATORS = Registry(
    "estimator",
    {
        "permutation": "impq.estimate.permutation:PermutationSampling",
        "permutation-sii": "impq.estimate.permutation:PermutationSamplingSII",
        "exact": "impq.estimate.exact:ExactEstimator",
    },
)
"""Estimator name -> ``module:class``; the one place where estimators are registered."""


def get_estimator(name: str, **options: Any) -> Estimator:
    """The estimator registered as ``name``, built with ``options``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    estimator: Estimator = ESTIMATORS.load(name)(**options)
    return estimator
