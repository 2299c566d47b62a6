"""The baseline protocol, its registry and the shared rule from scores to assignments.

A baseline ranks blocks by an isolated metric (no interactions) and hands the ranking to
the solver module's greedy budget rule; uniform is the one rule-based exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn

from impq.estimate.result import ShapleyResult
from impq.registry import Registry
from impq.solve.greedy import greedy_assignment
from impq.solve.problem import BitProblem

__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineInputs",
    "Need",
    "assign_by_scores",
    "get_baseline",
    "parse_baseline",
]

Need = Literal["model", "calibration", "shapley"]


@dataclass(frozen=True)
class BaselineInputs:
    """What a baseline may read; the stage fills only what the chosen baselines need.

    Attributes:
        model: the float model.
        calibration: (n, seqlen) calibration token ids.
        shapley: the SPQE result.
        seed: seed of the random baseline.
        batch_size: calibration rows per forward pass.
    """

    model: nn.Module | None = None
    calibration: torch.Tensor | None = None
    shapley: ShapleyResult | None = None
    seed: int = 0
    batch_size: int = 8

    def require(self, baseline: str, *needs: Need) -> None:
        """Raise ValueError naming what ``baseline`` needs and is missing."""
        missing = sorted(n for n in needs if getattr(self, n) is None)
        if missing:
            raise ValueError(f"baseline {baseline!r} needs {missing}, which were not given")


class Baseline(Protocol):
    """An isolated-metric baseline: block scores, then an assignment under a budget."""

    name: str
    needs: frozenset[Need]
    seeded: bool
    """Whether the scores depend on ``inputs.seed``: such a baseline may be run as
    replicates ``<name>-<k>`` (seed ``eval.seed + k``)."""

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """(L,) importance per block; higher keeps more bits."""
        ...

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """The assignment ``{block: bits}`` for ``problem``'s budget."""
        ...


def assign_by_scores(scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
    """The greedy budget rule of :mod:`impq.solve.greedy` (shared by every ranking)."""
    return greedy_assignment(scores, problem)


BASELINES = Registry(
    "baseline",
    {
        "lim": "impq.baselines.lim:LimBaseline",
        "zd": "impq.baselines.zd:ZdBaseline",
        "zd-tuned": "impq.baselines.zd:ZdTunedBaseline",
        "shapley": "impq.baselines.simple:ShapleyBaseline",
        "uniform": "impq.baselines.simple:UniformBaseline",
        "random": "impq.baselines.simple:RandomBaseline",
    },
)
"""Baseline name -> ``module:class``; the one place where baselines are registered."""


def parse_baseline(method: str) -> tuple[str, int | None]:
    """``(registered name, replicate)`` of a method name: ``"lim"`` -> ``("lim", None)``,
    ``"random-2"`` -> ``("random", 2)`` (replicates exist for seeded baselines only).

    Raises:
        ValueError: ``method`` is neither a registered baseline nor a replicate of a
            seeded one; the message lists the valid names.
    """
    if method in BASELINES:
        return method, None
    base, _, index = method.rpartition("-")
    if base in BASELINES and index.isdigit() and get_baseline(base).seeded:
        return base, int(index)
    seeded = sorted(n for n in BASELINES if get_baseline(n).seeded)
    raise ValueError(
        f"unknown baseline {method!r}; choose from {sorted(BASELINES)} "
        f"(seeded ones also as <name>-<k>: {[f'{n}-0' for n in seeded]})"
    )


def get_baseline(name: str) -> Baseline:
    """The baseline registered as ``name`` (a replicate ``<name>-<k>`` gives ``<name>``).

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    if name not in BASELINES and name.rpartition("-")[0] in BASELINES:
        name = parse_baseline(name)[0]
    baseline: Baseline = BASELINES.load(name)()
    return baseline
