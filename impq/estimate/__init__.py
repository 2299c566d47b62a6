"""Shapley value and interaction estimators."""

from impq.estimate.base import ESTIMATORS, Estimate, Estimator, get_estimator
from impq.estimate.checkpoint import Checkpoint
from impq.estimate.exact import MAX_EXACT_PLAYERS, ExactEstimator, all_coalitions, exact_values
from impq.estimate.permutation import (
    PermutationSampling,
    PermutationSamplingSII,
    PermutationWalk,
    cap_nonfinite,
    covariance_interactions,
)
from impq.estimate.result import ShapleyResult

__all__ = [
    "ESTIMATORS",
    "MAX_EXACT_PLAYERS",
    "Checkpoint",
    "Estimate",
    "Estimator",
    "ExactEstimator",
    "PermutationSampling",
    "PermutationSamplingSII",
    "PermutationWalk",
    "ShapleyResult",
    "all_coalitions",
    "cap_nonfinite",
    "covariance_interactions",
    "exact_values",
    "get_estimator",
]
