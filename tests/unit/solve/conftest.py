"""Random bit-assignment programs shaped like SPQE output."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from impq.solve import BitProblem
from impq.solve.synthetic import synthetic_shapley

MakeProblem = Callable[..., BitProblem]


def random_problem(
    n: int,
    budget: float,
    seed: int,
    *,
    precisions: tuple[int, ...] = (2, 4),
    equal_sizes: bool = False,
) -> BitProblem:
    """A program from a synthetic SPQE result with uneven (or equal) block sizes."""
    rng = np.random.default_rng(seed)
    sizes = 4096 if equal_sizes else rng.integers(1, 9, n) * 4096
    r = synthetic_shapley(n, block_params=sizes, seed=seed)
    return BitProblem.build(r.values, r.interactions, r.block_params, budget, precisions=precisions)


@pytest.fixture
def make_problem() -> MakeProblem:
    """``make_problem(n, budget, seed, precisions=..., equal_sizes=...)``."""
    return random_problem
