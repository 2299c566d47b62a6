"""Baselines over more than two precisions: level orders, uniform at fixed bits and the
best uniform that fits, and method names that cannot be confused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from impq.baselines import BASELINES, get_baseline, level_order, parse_baseline
from impq.solve.greedy import greedy_choice
from impq.solve.problem import BitProblem


def _problem(budget: float, params: list[int], precisions: tuple[int, ...]) -> BitProblem:
    n = len(params)
    return BitProblem.build(
        np.zeros(n), np.zeros((n, n)), params, budget, precisions=precisions, group_size=64
    )


@pytest.mark.parametrize("seed", range(8))
def test_two_precisions_give_the_greedy_knapsack(seed: int) -> None:
    rng = np.random.default_rng(seed)
    params = rng.choice([4096, 8192, 12288], size=9).tolist()
    for budget in (2.0, 2.4, 3.0, 3.7, 4.0):
        problem = _problem(budget, params, (2, 4))
        scores = rng.normal(size=9)
        scores[rng.integers(9)] = scores[0]  # a tie, broken by block index in both
        np.testing.assert_array_equal(level_order(scores, problem), greedy_choice(scores, problem))


def test_the_level_order_raises_one_step_per_pass_in_rank_order() -> None:
    # four equal blocks at 2/3/4 bits; a step 2->3 or 3->4 costs the same bytes here
    problem = _problem(3.25, [4096] * 4, (2, 3, 4))
    step = int(problem.sizes[0, 1] - problem.sizes[0, 0])
    assert int(problem.sizes[0, 2] - problem.sizes[0, 1]) == step
    scores = np.array([0.1, 0.9, 0.5, 0.3])  # rank: 1, 2, 3, 0
    choice = level_order(scores, problem)
    # slack = 5 steps: pass 1 raises all four to 3 bits, pass 2 block 1 to 4 bits
    assert problem.bits(choice) == {0: 3, 1: 4, 2: 3, 3: 3}
    assert problem.feasible(choice)
    # a smaller budget: 3 steps, the three top-ranked blocks reach 3 bits, none 4
    small = problem.with_budget(2.75)
    assert small.bits(level_order(scores, small)) == {0: 2, 1: 3, 2: 3, 3: 3}


def test_a_step_that_does_not_fit_is_skipped_for_a_smaller_one() -> None:
    params = [12288, 4096, 4096]
    problem = _problem(2.0, params, (2, 3, 4))
    # room for exactly one 2->3 step of a small block
    small_step = int(problem.sizes[1, 1] - problem.sizes[1, 0])
    problem = replace(problem, budget_bytes=problem.min_bytes + small_step)
    choice = level_order(np.array([3.0, 2.0, 1.0]), problem)
    assert problem.bits(choice) == {0: 2, 1: 3, 2: 2}


def test_uniform_fit_is_the_highest_precision_that_fits_and_uniform_its_alias() -> None:
    params = [4096, 8192, 4096, 12288]
    for budget, want in ((2.0, 2), (2.99, 2), (3.0, 3), (3.5, 3), (4.0, 4)):
        problem = _problem(budget, params, (2, 3, 4))
        for name in ("uniform-fit", "uniform"):
            bits = get_baseline(name).assign(np.zeros(4), problem)
            assert set(bits.values()) == {want}, (name, budget)


def test_uniform_at_fixed_bits_ignores_the_budget() -> None:
    problem = _problem(2.5, [4096, 8192, 4096], (2, 3, 4, 8))
    for bits in (2, 3, 4, 8):
        baseline = get_baseline(f"uniform-{bits}")
        assert baseline.name == f"uniform-{bits}" and not baseline.seeded
        assignment = baseline.assign(baseline.scores(None, 3), problem)  # type: ignore[arg-type]
        assert assignment == dict.fromkeys(range(3), bits)
    over = problem.stored_bytes(problem.choice(dict.fromkeys(range(3), 8)))
    assert over > problem.budget_bytes  # a reference point, reported with its own bytes
    with pytest.raises(ValueError, match=r"not among solver\.precisions"):
        get_baseline("uniform-6").assign(np.zeros(3), problem)


def test_method_names_are_unambiguous() -> None:
    assert parse_baseline("uniform-3") == ("uniform-3", None)
    assert parse_baseline("uniform-fit") == ("uniform-fit", None)
    assert parse_baseline("uniform") == ("uniform", None)
    assert parse_baseline("random-3") == ("random", 3)
    assert get_baseline("random-3").name == "random"
    # the fixed-bits family is never a seeded baseline: <name>-<k> has one reading
    assert not any(get_baseline(n).seeded for n in BASELINES if n.startswith("uniform"))
    for bad in ("uniform-0", "uniform-x", "uniform-3-1", "lim-3"):
        with pytest.raises(ValueError, match=r"uniform-<bits>"):
            parse_baseline(bad)
