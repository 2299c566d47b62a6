"""EvoPress over three and four precisions: level-step mutations within the budget, the
optimum of small level games, starting points, checkpoints, and old two-precision states."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from impq.baselines.base import budget_problem
from impq.game import Game
from impq.search import SearchState, Stage, evopress
from impq.search.coalition import choice_of, levels_of
from impq.search.evopress import mutate, random_feasible
from impq.solve.problem import BitProblem


def _problem(sizes: np.ndarray, budget: float, precisions: tuple[int, ...]) -> BitProblem:
    """The budget alone, over the ladder of ``precisions`` (descending)."""
    return budget_problem(sizes, budget, sorted(precisions, reverse=True))


def test_levels_and_choices_are_one_conversion() -> None:
    problem = _problem(np.full(3, 4096), 3.0, (2, 3, 4))
    wide = budget_problem(np.full(3, 4096), 3.0, (8, 4, 3, 2), precisions=(2, 3, 4))
    choice = np.array([0, 1, 2])
    assert levels_of(problem, choice).tolist() == [2, 1, 0]
    assert levels_of(problem, choice, ladder=(8, 4, 3, 2)).tolist() == [3, 2, 1]
    assert levels_of(wide, choice).tolist() == [3, 2, 1]  # the objective's ladder
    np.testing.assert_array_equal(choice_of(problem, levels_of(problem, choice)), choice)
    two = _problem(np.full(3, 4096), 3.0, (2, 4))
    assert levels_of(two, np.array([0, 1, 1])).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="not on the game's ladder"):
        levels_of(problem, choice, ladder=(4, 2))
    with pytest.raises(ValueError, match="levels"):
        choice_of(problem, np.array([3, 0, 0]))


@pytest.mark.parametrize("seed", range(4))
def test_finds_the_optimum_of_small_three_level_games(
    seed: int,
    level_game: Callable[[int, int, int], Game],
    optimum: Callable[[Game, BitProblem], float],
) -> None:
    rng = np.random.default_rng(seed)
    n = 6
    game = level_game(n, 3, seed)
    sizes = np.full(n, 4096) if seed % 2 else rng.choice([4096, 8192], size=n)
    for budget in (2.5, 3.0, 3.5):
        problem = _problem(sizes, budget, (2, 3, 4))
        result = evopress(game, problem, 400, offspring=12, initial=8, seed=seed)
        assert problem.feasible(result.choice)
        assert result.value == pytest.approx(optimum(game, problem), abs=1e-12), budget
        np.testing.assert_array_equal(result.coalition, levels_of(problem, result.choice))
        assert result.known_values[0] == result.value  # known: lowest first
        assert np.array_equal(result.known[0], result.choice)


def test_level_steps_of_equal_blocks_keep_the_bytes() -> None:
    # equal blocks and equal byte steps (2 -> 3 -> 4 bits): every mutant is step swaps
    problem = _problem(np.full(10, 4096), 3.2, (2, 3, 4))
    rng = np.random.default_rng(0)
    parent = random_feasible(problem, rng)
    assert problem.feasible(parent) and parent.dtype == np.int64
    seen_middle = False
    for _ in range(300):
        child = mutate(parent, problem, rng)
        if child is None:
            continue
        assert problem.feasible(child)
        assert np.abs(child - parent).sum() <= 6
        assert child.sum() == parent.sum()  # one step up for every step down
        seen_middle |= bool(((child == 1) != (parent == 1)).any())
    assert seen_middle


def test_mixed_steps_stay_within_the_budget() -> None:
    rng = np.random.default_rng(1)
    problem = _problem(rng.choice([4096, 8192, 12288], 12), 3.6, (2, 3, 4, 8))
    for _ in range(20):
        start = random_feasible(problem, rng)
        assert problem.feasible(start)
        for _ in range(20):
            child = mutate(start, problem, rng)
            assert child is None or problem.feasible(child)


def test_random_starts_begin_at_the_smallest_uniform_that_reaches_the_budget() -> None:
    problem = _problem(np.full(8, 4096), 2.5, (2, 3, 4, 8))
    rng = np.random.default_rng(0)
    for _ in range(20):
        start = random_feasible(problem, rng)
        assert set(start.tolist()) <= {0, 1}  # from all-3 down to 2, never 4 or 8


def test_a_search_from_given_starts_selects_among_them_first(
    level_game: Callable[[int, int, int], Game],
) -> None:
    n = 6
    game = level_game(n, 3, 0)
    problem = _problem(np.full(n, 4096), 3.0, (2, 3, 4))
    starts = [np.full(n, 1), np.array([2, 0, 2, 0, 1, 1]), np.full(n, 1)]
    states: list[SearchState] = []
    evopress(game, problem, 20, offspring=4, starts=starts, seed=0, on_generation=states.append)
    first = states[0]
    values = game.value_function(levels_of(problem, np.array(starts[:2])))
    assert first.value == pytest.approx(values.min())
    assert first.evaluations_per_stage == [2]  # the duplicate is scored once
    with pytest.raises(ValueError, match="over the budget"):
        evopress(game, problem, 20, starts=[np.full(n, 2)])
    with pytest.raises(ValueError, match="choice vector"):
        evopress(game, problem, 20, starts=[np.full(n, 3)])


def test_a_three_level_search_resumed_ends_as_an_uninterrupted_one(
    level_game: Callable[[int, int, int], Game],
) -> None:
    game = level_game(8, 3, 4)
    problem = _problem(np.full(8, 4096), 2.75, (2, 3, 4))

    def run(resume: SearchState | None, stop: int | None) -> tuple[object, list[SearchState]]:
        states: list[SearchState] = []
        rng = np.random.default_rng(3)

        def record(state: SearchState) -> None:
            states.append(state)
            if len(states) == stop:
                raise KeyboardInterrupt

        stages = [Stage(game, 3), Stage(game, 1)]
        try:
            result = evopress(
                stages, problem, 120, offspring=6, initial=4, seed=rng, resume=resume,
                on_generation=record,
            )  # fmt: skip
        except KeyboardInterrupt:
            return None, states
        return result, states

    full, _ = run(None, None)
    _, seen = run(None, 3)
    resumed, _ = run(SearchState.from_arrays(seen[-1].to_arrays()), None)
    assert full is not None and resumed is not None
    assert np.array_equal(resumed.choice, full.choice)  # type: ignore[attr-defined]
    assert resumed.history == full.history  # type: ignore[attr-defined]


def test_a_two_precision_state_of_boolean_coalitions_still_loads() -> None:
    coalition = np.array([True, False, True])
    arrays = SearchState(
        parent=coalition, value=1.0, history=[1.0], generations=0,
        evaluations_per_stage=[1], known=coalition[None], known_values=np.array([1.0]),
        rng_state=dict(np.random.default_rng(0).bit_generator.state),
    ).to_arrays()  # fmt: skip
    state = SearchState.from_arrays(arrays)
    assert state.parent.tolist() == [0, 1, 0] and state.known.tolist() == [[0, 1, 0]]
