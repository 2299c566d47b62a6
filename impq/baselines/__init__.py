"""Isolated-metric baselines (LIM, ZD, isolated Shapley, random) as level orders, and
uniform (at fixed bits, and the best that fits)."""

from impq.baselines.base import (
    BASELINES,
    FIXED_BITS,
    Baseline,
    BaselineInputs,
    assign_by_scores,
    get_baseline,
    level_order,
    parse_baseline,
)

__all__ = [
    "BASELINES",
    "FIXED_BITS",
    "Baseline",
    "BaselineInputs",
    "assign_by_scores",
    "get_baseline",
    "level_order",
    "parse_baseline",
]
