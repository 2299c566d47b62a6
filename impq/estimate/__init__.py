"""Shapley value and interaction estimators, and the interaction models built from them."""

from impq.estimate.base import ESTIMATORS, Estimate, Estimator, get_estimator
from impq.estimate.checkpoint import Checkpoint
from impq.estimate.exact import (
    MAX_EXACT_PLAYERS,
    ExactEstimator,
    all_coalitions,
    all_level_vectors,
    exact_ladder_values,
    exact_values,
)
from impq.estimate.level_objective import LevelObjective
from impq.estimate.objectives import (
    OBJECTIVES,
    AdditiveObjective,
    Objective,
    ObjectiveFit,
    get_objective,
    objective_methods,
    objectives_for,
)
from impq.estimate.permutation import (
    WALK_SAMPLERS,
    PermutationSampling,
    PermutationSamplingSII,
    PermutationWalk,
    Walks,
    cap_nonfinite,
    covariance_interactions,
    pair_statistics,
    walks_from_samples,
)
from impq.estimate.result import ShapleyResult
from impq.estimate.surrogate import QuadraticFit, fit_quadratic

__all__ = [
    "ESTIMATORS",
    "MAX_EXACT_PLAYERS",
    "OBJECTIVES",
    "WALK_SAMPLERS",
    "AdditiveObjective",
    "Checkpoint",
    "Estimate",
    "Estimator",
    "ExactEstimator",
    "LevelObjective",
    "Objective",
    "ObjectiveFit",
    "PermutationSampling",
    "PermutationSamplingSII",
    "PermutationWalk",
    "QuadraticFit",
    "ShapleyResult",
    "Walks",
    "all_coalitions",
    "all_level_vectors",
    "cap_nonfinite",
    "covariance_interactions",
    "exact_ladder_values",
    "exact_values",
    "fit_quadratic",
    "get_estimator",
    "get_objective",
    "objective_methods",
    "objectives_for",
    "pair_statistics",
    "walks_from_samples",
]
