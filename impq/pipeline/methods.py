"""Which stage writes each method's assignments, and where (the sweep and verify read them).

A method of ``eval.methods`` is an objective method (:data:`impq.estimate.OBJECTIVES`:
``impq``, ``sii``, ``surrogate``; stage ``assign``), ``evopress`` (stage ``evopress``),
``verified`` (stage ``verify``), ``seeded`` (stage ``seeded``) or a baseline (stage ``baselines``: a
registered name, ``<name>-<k>`` for a replicate of a seeded one such as ``random-1``, or
``uniform-<bits>``, every block at ``<bits>``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from impq.baselines import BASELINES, parse_baseline
from impq.config import Params
from impq.estimate import OBJECTIVES
from impq.pipeline import paths

__all__ = [
    "IMPQ_VARIANTS",
    "SEARCHES",
    "STAGE_METHODS",
    "assignment_input_path",
    "check_methods",
    "is_baseline",
]

STAGE_METHODS: dict[str, Callable[[Params, float], Path]] = {
    "evopress": paths.evopress_assignment_path,
    "verified": paths.verify_assignment_path,
    "seeded": paths.seeded_assignment_path,
}
"""Method written by a stage of its own -> that stage's ``(params, budget) -> path``."""

SEARCHES = ("evopress", "seeded")
"""Methods that search the game with evaluations of their own, so are no candidates of
the verified pick: EvoPress is the competitor at equal cost, and the seeded search starts
from the verified pick (its stage runs after ``verify``)."""


IMPQ_VARIANTS = (*OBJECTIVES, "verified", "seeded")
"""The methods that are impq's own picks: every objective's, the verified pick and the
search seeded by them (the results compare each with uniform, the isolated baselines and
EvoPress)."""


def is_baseline(method: str) -> bool:
    """Whether ``method`` is written by the ``baselines`` stage."""
    try:
        parse_baseline(method)
    except ValueError:
        return False
    return True


def _unknown(methods: list[str]) -> ValueError:
    return ValueError(
        f"eval.methods: unknown {methods}; choose from "
        f"{[*OBJECTIVES, *STAGE_METHODS, *sorted(BASELINES)]} "
        "(seeded baselines as <name>-<k>, e.g. random-0; uniform-<bits> for every block at "
        "<bits>)"
    )


def check_methods(params: Params) -> None:
    """Raise ValueError naming every method of ``eval.methods`` that no stage writes."""
    unknown = [
        m
        for m in params.eval.methods
        if m not in OBJECTIVES and m not in STAGE_METHODS and not is_baseline(m)
    ]
    if unknown:
        raise _unknown(unknown)


def assignment_input_path(params: Params, method: str, budget: float) -> Path:
    """The assignment file of ``method`` at ``budget``, whichever stage writes it.

    Raises:
        ValueError: no stage writes ``method``.
    """
    if method in OBJECTIVES:
        return paths.assignment_path(params, budget, method)
    if method in STAGE_METHODS:
        return STAGE_METHODS[method](params, budget)
    if not is_baseline(method):
        raise _unknown([method])
    return paths.baseline_path(params, budget, method)
