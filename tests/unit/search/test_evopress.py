"""EvoPress: optimum of small exact games, the byte budget, the evaluation count and
resuming from a checkpoint."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from impq.estimate.checkpoint import Checkpoint
from impq.game import Game, QuadraticGame, RandomGame
from impq.search import SearchState, Stage, evopress
from impq.search.evopress import EvoPressResult, mutate, random_feasible
from impq.solve.problem import BitProblem


def _problem(sizes: np.ndarray, budget: float) -> BitProblem:
    n = len(sizes)
    return BitProblem.build(np.zeros(n), np.zeros((n, n)), sizes, budget)


def _bytes(problem: BitProblem, coalition: np.ndarray) -> int:
    return int(problem.stored_bytes((~coalition).astype(int)))


def _optimum(game: Game, problem: BitProblem) -> float:
    """The lowest value of any coalition within the budget, by enumeration."""
    every = np.array(list(itertools.product([False, True], repeat=problem.n_blocks)))
    fits = problem.stored_bytes((~every).astype(int)) <= problem.budget_bytes
    return float(game.value_function(every[fits]).min())


class _Noisy(Game):
    """``game`` plus fresh Gaussian noise on every call (a low-fidelity stage)."""

    def __init__(self, game: Game, scale: float, seed: int | np.random.Generator) -> None:
        super().__init__(game.n_players)
        self.game, self.scale = game, scale
        self.rng = np.random.default_rng(seed)

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        values = self.game.value_function(coalitions)
        return values + self.rng.normal(0.0, self.scale, size=len(values))


@pytest.mark.parametrize("seed", range(6))
def test_finds_the_optimum_of_small_pairwise_games(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 8
    game = QuadraticGame.random(n, rng)
    sizes = np.full(n, 4096) if seed % 2 else rng.choice([4096, 8192], size=n)
    for budget in (2.5, 3.0, 3.5):
        problem = _problem(sizes, budget)
        result = evopress(game, problem, 2 + 2 * n * (n - 1), seed=seed)
        assert result.value == pytest.approx(_optimum(game, problem), abs=1e-12), budget
        assert result.value == pytest.approx(float(game.value_function(result.coalition[None])[0]))


def test_finds_the_optimum_of_a_random_table_game_through_noisy_stages() -> None:
    n = 8
    game = RandomGame(n, np.random.default_rng(3))
    problem = _problem(np.full(n, 4096), 3.0)
    stages = [Stage(_Noisy(game, 0.3, 0), 4, tokens=10), Stage(game, 1, tokens=100)]
    result = evopress(stages, problem, 600, offspring=12, seed=1)
    assert result.value == pytest.approx(_optimum(game, problem))


@pytest.mark.parametrize("budget_evals", [3, 7, 40, 354])
@pytest.mark.parametrize("sizes", ["equal", "mixed"])
def test_respects_the_byte_budget_and_the_evaluation_count(budget_evals: int, sizes: str) -> None:
    n = 12
    rng = np.random.default_rng(0)
    block_sizes = np.full(n, 8192) if sizes == "equal" else rng.choice([4096, 8192, 12288], n)
    problem = _problem(block_sizes, 2.75)
    full = QuadraticGame.random(n, rng)
    cheap, mid = _Noisy(full, 0.5, 1), _Noisy(full, 0.1, 2)
    stages = [Stage(cheap, 4, 64), Stage(mid, 2, 256), Stage(full, 1, 1024)]
    result = evopress(stages, problem, budget_evals, offspring=8, initial=6, seed=0)
    spent = [cheap.n_evaluations, mid.n_evaluations, full.n_evaluations]
    assert result.evaluations_per_stage == spent
    assert result.evaluations == sum(spent) <= budget_evals
    # a generation of 8 offspring costs at most 8 + 4 + 2 evaluations: the rest is used
    assert result.evaluations > budget_evals - 14
    assert result.tokens == 64 * spent[0] + 256 * spent[1] + 1024 * spent[2]
    assert _bytes(problem, result.coalition) <= problem.budget_bytes
    assert result.history == sorted(result.history, reverse=True)  # elitist: never worse
    assert len(result.history) == result.generations + 1


class _Interrupted(Exception):
    pass


def _noisy_search(
    game: Game,
    problem: BitProblem,
    resume: SearchState | None = None,
    stop_after: int | None = None,
) -> tuple[EvoPressResult | None, list[SearchState]]:
    """A two-stage search whose cheap stage draws its noise from the search's generator;
    interrupted after ``stop_after`` states have been handed out."""
    rng = np.random.default_rng(7)
    stages = [Stage(_Noisy(game, 0.05, rng), 3), Stage(game, 1)]
    states: list[SearchState] = []

    def record(state: SearchState) -> None:
        states.append(state)
        if len(states) == stop_after:
            raise _Interrupted

    try:
        result = evopress(
            stages, problem, 150, offspring=6, initial=6, seed=rng, resume=resume,
            on_generation=record,
        )  # fmt: skip
    except _Interrupted:
        return None, states
    return result, states


@pytest.mark.parametrize("stop_after", [1, 4, 11])
def test_a_search_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(
    stop_after: int, tmp_path: Path
) -> None:
    game = QuadraticGame.random(12, np.random.default_rng(5))
    problem = _problem(np.full(12, 4096), 2.5)
    full, states = _noisy_search(game, problem)
    assert full is not None and len(states) == full.generations + 1 > 11
    assert states[-1].evaluations_per_stage == full.evaluations_per_stage

    _, seen = _noisy_search(game, problem, stop_after=stop_after)
    checkpoint = Checkpoint(tmp_path / "search.npz", "key")
    checkpoint.save(seen[-1].to_arrays())
    saved = checkpoint.load()
    assert saved is not None
    resumed, _ = _noisy_search(game, problem, resume=SearchState.from_arrays(saved))
    assert resumed is not None
    assert np.array_equal(resumed.coalition, full.coalition)
    assert resumed.value == full.value and resumed.history == full.history
    assert resumed.evaluations_per_stage == full.evaluations_per_stage
    assert resumed.generations == full.generations


def test_a_state_of_another_search_is_refused() -> None:
    game = QuadraticGame.random(12, np.random.default_rng(5))
    _, states = _noisy_search(game, _problem(np.full(12, 4096), 2.5), stop_after=2)
    with pytest.raises(ValueError, match="another search"):
        evopress(game, _problem(np.full(12, 4096), 2.5), 150, resume=states[-1])  # one stage


def test_mutations_of_equal_blocks_are_swaps_that_keep_the_bytes() -> None:
    problem = _problem(np.full(10, 4096), 3.0)
    rng = np.random.default_rng(0)
    parent = random_feasible(problem, rng)
    assert _bytes(problem, parent) == problem.budget_bytes  # five low, five high: exact
    for _ in range(200):
        child = mutate(parent, problem, rng)
        if child is not None:
            assert child.sum() == parent.sum()
            assert _bytes(problem, child) == _bytes(problem, parent)


def test_bad_arguments_are_errors() -> None:
    problem = _problem(np.full(4, 4096), 3.0)
    game = QuadraticGame.random(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="last keeps 1"):
        evopress([Stage(game, 2)], problem, 100)
    with pytest.raises(ValueError, match="players"):
        evopress(QuadraticGame.random(5, np.random.default_rng(0)), problem, 100)
    with pytest.raises(ValueError, match="do not pay"):
        evopress([Stage(game, 2), Stage(game, 1)], problem, 1)
    three = BitProblem.build(np.zeros(4), np.zeros((4, 4)), [4096] * 4, 3.0, precisions=[2, 3, 4])
    with pytest.raises(ValueError, match="not on the game's ladder"):
        evopress(game, three, 100, ladder=(4, 2))
