"""Objectives over ladder walks, end to end: a synthetic 3-level game -> walks -> every
objective -> the program -> a feasible assignment on the ladder; one step is today's."""

from __future__ import annotations

import numpy as np
import pytest

from impq.config import SpqeConfig
from impq.estimate import (
    AdditiveObjective,
    LevelObjective,
    PermutationSampling,
    covariance_interactions,
    exact_ladder_values,
    get_objective,
    walks_from_samples,
)
from impq.estimate.objectives import Objective
from impq.estimate.permutation import Walks
from impq.game import LevelGame, RandomGame
from impq.solve import BitProblem
from impq.solve.anneal import AnnealSolver
from impq.solve.exact import ExactSolver, brute_force_choice


def _walks(game: LevelGame | RandomGame, n_walks: int, seed: int = 0) -> Walks:
    sampler = PermutationSampling()
    budget = sampler.budget_for(game.n_players, n_walks, game.n_levels - 1)
    return walks_from_samples(sampler.sample(game, budget, seed))


def _ladder_game(n: int, seed: int, scale: float = 0.3) -> LevelGame:
    game = LevelGame.random(n, 3, np.random.default_rng(seed), scale=scale)
    game.ladder = (4, 3, 2)  # the precisions of its levels, as a model game has them
    return game


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_paper_objective_of_one_step_is_todays_form(alpha: float) -> None:
    walks = _walks(RandomGame(6, np.random.default_rng(1)), 15)
    fit = get_objective("impq").build(walks, SpqeConfig(alpha=alpha)).objective
    k, k_se = covariance_interactions(walks.marginals, alpha)
    m = walks.n_permutations
    today = LevelObjective.from_two_level(
        walks.marginals.mean(axis=0),
        k,
        np.ones(6),
        walks.ladder,
        phi_se=walks.marginals.std(axis=0, ddof=1) / np.sqrt(m),
        interactions_se=k_se,
    )
    for name in ("cost", "pair", "values", "values_se", "pair_se", "self_interaction"):
        np.testing.assert_allclose(getattr(fit, name), getattr(today, name), rtol=1e-12, atol=0)


def test_objectives_over_a_ladder_hold_the_step_values() -> None:
    game = _ladder_game(5, seed=2)
    walks = _walks(game, 30)
    assert walks.ladder == (4, 3, 2) and walks.n_steps == 2
    step_means = walks.step_marginals.mean(axis=0)
    for objective in (get_objective("impq"), AdditiveObjective()):
        fit = objective.build(walks, SpqeConfig()).objective
        np.testing.assert_array_equal(fit.values, step_means)
        assert fit.ladder == (4, 3, 2) and fit.self_interaction is None
    additive = AdditiveObjective().build(walks, SpqeConfig()).objective
    np.testing.assert_allclose(additive.cost[:, 2], step_means.sum(axis=1), rtol=1e-14)
    assert not additive.pair.any()


def test_surrogate_recovers_a_pairwise_ladder_game_from_walks() -> None:
    game = _ladder_game(6, seed=3, scale=0.5)
    fit = get_objective("surrogate").build(_walks(game, 40), SpqeConfig())
    np.testing.assert_allclose(fit.objective.cost, game.cost, atol=1e-6)
    np.testing.assert_allclose(fit.objective.pair, game.pair, atol=1e-6)
    exact, _ = exact_ladder_values(game)
    np.testing.assert_allclose(fit.objective.values, exact, atol=1e-6)
    assert fit.metrics["surrogate_cv_r2"] == pytest.approx(1.0, abs=1e-9)
    assert fit.metrics["additive_cv_r2"] < 1.0 - 1e-6


@pytest.mark.parametrize(
    "objective", [get_objective("impq"), get_objective("surrogate"), AdditiveObjective()]
)
def test_ladder_game_to_a_feasible_assignment_on_the_ladder(objective: Objective) -> None:
    game = _ladder_game(7, seed=4)
    fit = objective.build(_walks(game, 14), SpqeConfig())
    sizes = np.random.default_rng(0).integers(1, 5, 7) * 4096
    problem = BitProblem.from_objective(fit.to_objective(sizes, {"run": 1}), 3.0)
    assert problem.precisions == (2, 3, 4)
    best = float(problem.objective(brute_force_choice(problem)))
    for solver in (AnnealSolver(num_reads=16, num_sweeps=300), ExactSolver(brute_force_max=1)):
        sol = solver.solve(problem)
        assert sol.stored_bytes <= problem.budget_bytes
        assert set(sol.bits.values()) <= {2, 3, 4}
        assert sol.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match=r"precisions \[8\] are not on the ladder"):
        BitProblem.from_objective(fit.to_objective(sizes), 3.0, precisions=[2, 4, 8])
