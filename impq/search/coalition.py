"""Coalitions (``True`` = block at low bits) as choice vectors of a two-precision problem."""

from __future__ import annotations

import numpy as np

from impq.solve.problem import BitProblem

__all__ = ["choice_of", "coalition_of", "require_two_precisions"]


def require_two_precisions(problem: BitProblem) -> None:
    """Raise ValueError unless ``problem`` has exactly two precisions (low and high)."""
    if len(problem.precisions) != 2:
        raise ValueError(
            f"a coalition is a set of blocks at low bits; the problem has precisions "
            f"{list(problem.precisions)} (use exactly two)"
        )


def choice_of(problem: BitProblem, coalitions: np.ndarray) -> np.ndarray:
    """Choice vector(s) of ``problem`` (index into its precisions) of boolean coalition(s)."""
    require_two_precisions(problem)
    return (~np.asarray(coalitions, dtype=bool)).astype(np.int64)


def coalition_of(problem: BitProblem, bits: dict[int, int]) -> np.ndarray:
    """The coalition of an assignment ``{block: bits}`` (blocks at the lower precision)."""
    require_two_precisions(problem)
    return problem.choice(bits) == 0
