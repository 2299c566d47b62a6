"""Search tests run torch on one thread (tiny model games on a shared 2-core machine);
the level games the ladder searches are tested on."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from impq.game import LevelGame
from impq.search.coalition import levels_of
from impq.solve.problem import BitProblem


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs torch on one thread."""


def random_level_game(n: int, n_levels: int, seed: int) -> LevelGame:
    """A random pairwise game over level vectors (0 = top): costs growing with the level
    and pairwise terms between blocks' levels."""
    return LevelGame.random(n, n_levels, np.random.default_rng(seed), scale=0.05)


def level_optimum(game: LevelGame, problem: BitProblem) -> float:
    """The lowest value of any choice vector within the budget, by enumeration."""
    p = len(problem.precisions)
    every = np.array(list(itertools.product(range(p), repeat=problem.n_blocks)))
    fits = problem.stored_bytes(every) <= problem.budget_bytes
    return float(game.value_function(levels_of(problem, every[fits])).min())


@pytest.fixture
def level_game() -> Callable[[int, int, int], LevelGame]:
    """:func:`random_level_game`, for tests of searches over more than two precisions."""
    return random_level_game


@pytest.fixture
def optimum() -> Callable[[LevelGame, BitProblem], float]:
    """:func:`level_optimum`."""
    return level_optimum
