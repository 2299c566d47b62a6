"""The search seeded by impq: it starts from the given candidates, never ends worse than
the best of them on the selection game, picks on the held-back game within one budget."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from impq.baselines.base import budget_problem
from impq.game import Game
from impq.search import seeded
from impq.search.coalition import levels_of
from impq.solve.problem import BitProblem


def _problem(n: int, budget: float) -> BitProblem:
    return budget_problem(np.full(n, 4096), budget, (4, 3, 2))


def _starts(problem: BitProblem) -> dict[str, np.ndarray]:
    n = problem.n_blocks
    return {
        "impq": levels_of(problem, np.full(n, 1)),
        "surrogate": levels_of(problem, np.array([2, 0] * (n // 2))),
        "verified": levels_of(problem, np.full(n, 1)),  # the same point as impq
    }


def test_the_first_selection_is_among_the_starts(
    level_game: Callable[[int, int, int], Game],
) -> None:
    game = level_game(6, 3, 1)
    problem = _problem(6, 3.0)
    starts = _starts(problem)
    result = seeded(game, problem, starts, 2)  # pays for the two distinct starts only
    values = {n: float(game.value_function(c[None].astype(np.int64))[0]) for n, c in starts.items()}
    best = min(values, key=lambda n: values[n])
    assert result.started_from == best and result.evaluations == 2
    assert result.search.value == pytest.approx(values[best])
    assert result.final is None


@pytest.mark.parametrize("seed", range(3))
def test_it_never_ends_worse_than_its_best_start_and_finds_small_optima(
    seed: int,
    level_game: Callable[[int, int, int], Game],
    optimum: Callable[[Game, BitProblem], float],
) -> None:
    game = level_game(6, 3, 10 + seed)
    problem = _problem(6, 2.75)
    starts = {"a": levels_of(problem, np.array([1, 1, 0, 0, 0, 2]))}
    start_value = float(game.value_function(starts["a"][None].astype(np.int64))[0])
    result = seeded(game, problem, starts, 300, offspring=12, seed=seed)
    assert problem.feasible(result.choice)
    assert result.search.history[0] == pytest.approx(start_value)
    assert result.search.value == pytest.approx(optimum(game, problem), abs=1e-12)


class _Shifted(Game):
    """``game`` with one point made much cheaper: a held-back game that disagrees."""

    def __init__(self, game: Game, point: np.ndarray) -> None:
        super().__init__(game.n_players, game.n_levels)
        self.game, self.point = game, point

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        values = self.game.value_function(coalitions)
        return np.where((coalitions == self.point).all(axis=1), values - 10.0, values)


def test_the_final_pick_is_made_on_the_held_back_game_within_the_budget(
    level_game: Callable[[int, int, int], Game],
) -> None:
    game = level_game(6, 3, 2)
    problem = _problem(6, 3.0)
    plain = seeded(game, problem, _starts(problem), 60, offspring=6, seed=0)
    second = plain.search.known[1]  # second best on the selection game
    held_back = _Shifted(game, levels_of(problem, second).astype(np.int64))
    result = seeded(
        game, problem, _starts(problem), 60, offspring=6, seed=0, held_back=held_back, final=3
    )
    assert result.final is not None and held_back.n_evaluations == 3
    assert result.evaluations == result.search.evaluations + 3 <= 60
    np.testing.assert_array_equal(result.choice, second)
    assert result.final.pick.name == "seeded#2" and result.final.reference.name == "seeded"


def test_bad_arguments_are_errors(level_game: Callable[[int, int, int], Game]) -> None:
    game = level_game(4, 3, 0)
    problem = _problem(4, 3.0)
    with pytest.raises(ValueError, match="at least one start"):
        seeded(game, problem, {}, 10)
    with pytest.raises(ValueError, match="over the budget"):
        seeded(game, problem, {"x": levels_of(problem, np.full(4, 2))}, 10)
    with pytest.raises(ValueError, match="do not pay"):
        seeded(game, problem, _starts(problem), 4, held_back=game, final=4)
