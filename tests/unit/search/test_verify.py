"""The verified pick: candidate order, one-swap neighbours, the budget, never worse."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from impq.game import Game, QuadraticGame, RandomGame
from impq.search.coalition import choice_of, levels_of
from impq.search.verify import Candidate, best_swap, candidates, verified_pick
from impq.solve.greedy import greedy_choice
from impq.solve.problem import BitProblem


def _problem(game: QuadraticGame, sizes: np.ndarray, budget: float) -> BitProblem:
    """The exact program of a pairwise game: objective = v(S) - v(empty)."""
    return BitProblem.build(game.linear, game.pairwise / 2, sizes, budget)


def _coalition(choice: np.ndarray) -> np.ndarray:
    return np.asarray(choice) == 0


def test_best_swap_is_the_lowest_feasible_neighbour_by_enumeration() -> None:
    rng = np.random.default_rng(0)
    game = QuadraticGame.random(7, rng)
    sizes = rng.choice([4096, 8192], size=7)
    problem = _problem(game, sizes, 3.0)
    start = _coalition(greedy_choice(rng.random(7), problem))
    found = best_swap(problem, start)
    best = np.inf
    for i, j in itertools.product(np.flatnonzero(start), np.flatnonzero(~start)):
        c = start.copy()
        c[i], c[j] = False, True
        choice = (~c).astype(int)
        if problem.feasible(choice):
            best = min(best, float(problem.objective(choice)))
    assert found is not None
    assert float(problem.objective((~found).astype(int))) == pytest.approx(best)
    assert problem.feasible((~found).astype(int))
    assert (found != start).sum() == 2
    assert best_swap(problem, np.zeros(7, dtype=bool)) is None  # nothing to raise


def test_candidates_come_reference_first_then_methods_then_swaps_by_objective() -> None:
    rng = np.random.default_rng(1)
    game = QuadraticGame.random(8, rng)
    problem = _problem(game, np.full(8, 4096), 3.0)
    methods = {
        name: _coalition(greedy_choice(rng.random(8), problem)) for name in ("lim", "impq", "zd")
    }
    methods["dup"] = methods["lim"].copy()
    cands = candidates(problem, methods, reference="impq")
    names = [c.name for c in cands]
    assert names[:3] == ["impq", "lim", "zd"] and "dup" not in names
    swaps = [c for c in cands if c.name.endswith("+swap")]
    objectives = [problem.objective((~c.coalition).astype(int)) for c in swaps]
    assert objectives == sorted(objectives)
    assert len({c.coalition.tobytes() for c in cands}) == len(cands)
    with pytest.raises(ValueError, match="not among"):
        candidates(problem, methods, reference="sii")
    with pytest.raises(ValueError, match="over the budget"):
        candidates(problem, {"impq": np.zeros(8, dtype=bool)}, reference="impq")


@pytest.mark.parametrize("seed", range(20))
def test_never_worse_than_the_objectives_choice(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 8
    game = QuadraticGame.random(n, rng)
    problem = _problem(game, rng.choice([4096, 8192], size=n), 2.75)
    # the objective's choice: the exact optimum of the program; the others: random orders
    every = np.array(list(itertools.product([0, 1], repeat=n)))
    fits = every[problem.stored_bytes(every) <= problem.budget_bytes]
    reference = _coalition(fits[np.argmin(problem.objective(fits))])
    methods = {"impq": reference}
    methods |= {f"r{k}": _coalition(greedy_choice(rng.random(n), problem)) for k in range(4)}
    held_back: Game = RandomGame(n, rng)  # data the objective knows nothing about
    cands = candidates(problem, methods, reference="impq")
    budget = int(rng.integers(1, len(cands) + 2))
    pick = verified_pick(held_back, cands, budget)
    assert pick.value <= pick.reference_value
    assert pick.reference.name == "impq"
    assert pick.evaluations == held_back.n_evaluations == min(budget, len(cands))
    assert pick.value == min(pick.values.values())
    assert len(pick.values) + len(pick.skipped) == len(cands)


def test_ties_and_non_finite_values_keep_the_reference() -> None:
    class _Table(Game):
        def __init__(self, values: list[float]) -> None:
            super().__init__(2)
            self.values = values

        def value_function(self, coalitions: np.ndarray) -> np.ndarray:
            return np.array(self.values[: len(coalitions)])

    a, b, c = (Candidate(n, np.array(x)) for n, x in (("a", [1, 0]), ("b", [0, 1]), ("c", [1, 1])))
    pick = verified_pick(_Table([1.0, 1.0, np.nan]), [a, b, c], 3)
    assert pick.pick.name == "a" and not pick.differs
    pick = verified_pick(_Table([1.0, 0.5, -np.inf]), [a, b, c], 3)
    assert pick.pick.name == "b" and pick.differs
    with pytest.raises(ValueError, match="at least 1"):
        verified_pick(_Table([1.0]), [a], 0)


def test_best_level_step_over_three_precisions_by_enumeration() -> None:
    rng = np.random.default_rng(4)
    n = 6
    game = QuadraticGame.random(n, rng)
    problem = BitProblem.build(
        game.linear, game.pairwise / 2, rng.choice([4096, 8192], size=n), 3.1,
        precisions=(2, 3, 4),
    )  # fmt: skip
    start = np.array([0, 1, 2, 1, 0, 2])
    assert problem.feasible(start)
    ladder = (4, 3, 2)  # the objective is the two-level form extrapolated to 3 bits
    found = best_swap(problem, levels_of(problem, start, ladder), ladder)
    best, want = np.inf, None
    for i, j in itertools.permutations(range(n), 2):
        c = start.copy()
        c[i] += 1
        c[j] -= 1
        valid = c[i] <= 2 and c[j] >= 0 and problem.feasible(c)
        if valid and float(problem.objective(c)) < best:
            best, want = float(problem.objective(c)), c
    assert found is not None and want is not None
    assert found.dtype == np.uint8  # levels of a three-level ladder: 0 = 4 bits
    np.testing.assert_array_equal(choice_of(problem, found, ladder), want)
    # on a wider ladder the same neighbour, as that ladder's levels
    wide = best_swap(problem, levels_of(problem, start, (8, 4, 3, 2)), (8, 4, 3, 2))
    assert wide is not None
    np.testing.assert_array_equal(choice_of(problem, wide, (8, 4, 3, 2)), want)
    cands = candidates(problem, {"impq": levels_of(problem, start, ladder)}, "impq", ladder)
    assert [c.name for c in cands] == ["impq", "impq+swap"]
    np.testing.assert_array_equal(cands[1].coalition, found)
