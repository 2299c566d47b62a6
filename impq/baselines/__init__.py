"""Isolated-metric baselines (LIM, ZD, isolated Shapley, uniform, random)."""

from impq.baselines.base import (
    BASELINES,
    Baseline,
    BaselineInputs,
    assign_by_scores,
    get_baseline,
    parse_baseline,
)

__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineInputs",
    "assign_by_scores",
    "get_baseline",
    "parse_baseline",
]
