from collections.abc import Callable
from typing import Any

import pytest

from impq.backends import get_backend
from impq.baselines.base import get_baseline
from impq.estimate.base import get_estimator
from impq.estimate.objectives import get_objective
from impq.solve.base import get_solver


@pytest.mark.parametrize(
    ("get", "kind", "known"),
    [
        (get_backend, "backend", "quanto"),
        (get_baseline, "baseline", "lim"),
        (get_estimator, "estimator", "permutation"),
        (get_objective, "objective", "impq"),
        (get_solver, "solver", "anneal"),
    ],
)
def test_unknown_names_list_the_choices(get: Callable[[str], Any], kind: str, known: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown {kind} 'nope'; choose from \[.*'{known}'"):
        get("nope")
    assert get(known) is not None
