"""Search tests run torch on one thread (tiny model games on a shared 2-core machine);
the level games the ladder searches are tested on."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from impq.game import Game
from impq.search.coalition import levels_of
from impq.solve.problem import BitProblem


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LevelGame(Game):
    """A random pairwise game over level vectors (0 = top): a cost per (block, level) and
    a term per pair of blocks and their levels; counts its evaluations."""

    def __init__(self, n: int, n_levels: int, seed: int) -> None:
        super().__init__(n)
        rng = np.random.default_rng(seed)
        self.n_levels = n_levels
        self.cost = np.cumsum(np.abs(rng.normal(0.3, 0.2, (n, n_levels))), axis=1)
        self.cost[:, 0] = 0.0
        self.pair = np.triu(rng.normal(0.0, 0.05, (n, n)), 1)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        levels = np.asarray(coalitions).astype(np.int64)
        assert levels.ndim == 2 and levels.shape[1] == self.n_players
        assert levels.min() >= 0 and levels.max() < self.n_levels
        self.n_evaluations += len(levels)
        return self.value_function(levels)

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        x = np.asarray(coalitions, dtype=np.int64)
        main = self.cost[np.arange(self.n_players), x].sum(axis=-1)
        depth = x.astype(np.float64)
        return 3.0 + main + np.einsum("ci,ij,cj->c", depth, self.pair, depth)


def level_optimum(game: LevelGame, problem: BitProblem) -> float:
    """The lowest value of any choice vector within the budget, by enumeration."""
    p = len(problem.precisions)
    every = np.array(list(itertools.product(range(p), repeat=problem.n_blocks)))
    fits = problem.stored_bytes(every) <= problem.budget_bytes
    return float(game.value_function(levels_of(problem, every[fits])).min())


@pytest.fixture
def level_game() -> type[LevelGame]:
    """:class:`LevelGame`, for tests of searches over more than two precisions."""
    return LevelGame


@pytest.fixture
def optimum() -> Callable[[LevelGame, BitProblem], float]:
    """:func:`level_optimum`."""
    return level_optimum
