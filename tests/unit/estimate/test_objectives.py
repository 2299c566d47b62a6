"""Interaction models: the identities of the paper and SII forms, the significance filter,
and the surrogate against exact games."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from impq.config import SpqeConfig
from impq.estimate import (
    OBJECTIVES,
    LevelObjective,
    PermutationSampling,
    PermutationSamplingSII,
    all_coalitions,
    exact_values,
    get_objective,
    objective_methods,
    objectives_for,
    walks_from_samples,
)
from impq.estimate.objectives import fdr_pairs, sii_objective, walk_coalitions
from impq.estimate.surrogate import fit_quadratic
from impq.game import Game, QuadraticGame, RandomGame
from impq.solve import BitProblem


def _problem(phi: np.ndarray, k: np.ndarray) -> BitProblem:
    n = len(phi)
    return BitProblem.build(phi, k, [64] * n, 3.0)


def _solvable(objective: LevelObjective) -> BitProblem:
    """The program of an objective of a synthetic game (nominal ladder (1, 0)) as if it
    had been measured between 4 and 2 bits."""
    return BitProblem.from_objective(replace(objective, ladder=(4, 2)), 3.0)


def _choices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every coalition (rows) and its choice vector (choice 0 = low bits = in S)."""
    s = all_coalitions(n)
    return s, (~s).astype(np.int64)


@pytest.mark.parametrize("n", [2, 3, 5, 7, 10])
def test_sii_form_equals_the_game_on_every_coalition_of_a_pairwise_game(n: int) -> None:
    for seed in range(3):
        game = QuadraticGame.random(n, np.random.default_rng(100 * n + seed), scale=1.0)
        game.constant = 3.7
        phi, sii, v = exact_values(game)
        problem = _problem(*sii_objective(phi, sii))
        assert np.all(np.diag(problem.interactions) == 0)
        s, choice = _choices(n)
        gain = v[s.astype(np.int64) @ (1 << np.arange(n))] - v[0]
        np.testing.assert_allclose(problem.objective(choice), gain, rtol=0, atol=1e-9)


def test_unhalved_sii_is_wrong_on_every_proper_coalition_with_a_pair() -> None:
    game = QuadraticGame.random(6, np.random.default_rng(0), scale=1.0)
    phi, sii, v = exact_values(game)
    s, choice = _choices(6)
    gain = v[s.astype(np.int64) @ (1 << np.arange(6))] - v[0]
    err = np.abs(_problem(phi, sii).objective(choice) - gain)
    size = s.sum(axis=1)
    assert (err[(size >= 2) & (size < 6)] > 1e-3).all()
    np.testing.assert_allclose(err[(size == 0) | (size == 6)], 0.0, atol=1e-9)  # efficiency


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_paper_form_is_a_mean_variance_rule(alpha: float) -> None:
    game = RandomGame(7, np.random.default_rng(3))
    sampler = PermutationSampling()
    walks = sampler.walks(sampler.sample(game, sampler.budget_for(7, 20), 1))
    fit = get_objective("impq").build(walks, SpqeConfig(alpha=alpha)).objective
    c = np.cov(walks.marginals, rowvar=False)
    np.testing.assert_allclose(c.sum(axis=1), 0.0, atol=1e-12 * np.abs(c).max())
    problem = _solvable(fit)
    phi = fit.values[:, 0]
    np.testing.assert_allclose(problem.linear, phi + (1 - alpha) * np.diag(c), atol=1e-12)
    np.testing.assert_array_equal(problem.phi, walks.marginals.mean(axis=0))
    s, choice = _choices(7)
    x = s.astype(np.float64)
    var = np.var(walks.marginals @ x.T, axis=0, ddof=1)
    expected = x @ phi + x @ np.diag(c) + (1 - alpha) * var
    np.testing.assert_allclose(problem.objective(choice), expected, atol=1e-10)


def test_fdr_filter_drops_nan_se_and_rare_pairs_and_controls_multiplicity() -> None:
    n = 30
    rng = np.random.default_rng(0)
    estimate = np.zeros((n, n))
    se = np.ones((n, n))
    count = np.full((n, n), 50)
    iu, ju = np.triu_indices(n, 1)
    z = rng.normal(size=len(iu))  # pure noise: 435 null pairs
    estimate[iu, ju] = estimate[ju, iu] = z
    naive = int((np.abs(z) >= 2).sum())
    assert naive > 5  # what a per-entry |K| >= 2 SE filter keeps: noise
    assert not fdr_pairs(estimate, se, count, fdr=0.1, min_count=2).any()
    # strong pairs are found; an untestable one is not, however large
    estimate[0, 1] = estimate[1, 0] = 8.0
    estimate[2, 3] = estimate[3, 2] = 8.0
    se[2, 3] = se[3, 2] = np.nan
    estimate[4, 5] = estimate[5, 4] = 1000.0
    count[4, 5] = count[5, 4] = 3
    keep = fdr_pairs(estimate, se, count, fdr=0.1, min_count=5)
    assert keep[0, 1] and keep[1, 0]
    assert not keep[2, 3] and not keep[4, 5]
    assert not keep.diagonal().any()
    assert fdr_pairs(estimate, se, count, fdr=0.1, min_count=3)[4, 5]
    # fdr 1 keeps every testable pair
    every = fdr_pairs(estimate, se, count, fdr=1.0, min_count=2)
    assert every.sum() == 2 * (len(iu) - 1)


def test_sii_objective_from_walks_is_exact_on_the_pairs_it_keeps() -> None:
    game = QuadraticGame.random(6, np.random.default_rng(2))
    sampler = PermutationSamplingSII()
    walks = sampler.walks(sampler.sample(game, sampler.budget_for(6, 12), 0))
    cfg = SpqeConfig(min_pair_samples=3)
    fit = get_objective("sii").build(walks, cfg)
    k, count = _solvable(fit.objective).interactions, np.zeros((6, 6), int)
    for perm in walks.permutations:
        for a, b in itertools.pairwise(perm):
            count[a, b] += 1
            count[b, a] += 1
    off = ~np.eye(6, dtype=bool)
    kept = off & (count >= 3)
    # exact deltas: zero SE, so every pair sampled often enough passes the filter
    np.testing.assert_allclose(k[kept], game.pairwise[kept] / 2, atol=1e-12)
    assert np.all(k[off & ~kept] == 0) and (off & ~kept).any()
    assert fit.metrics["sii_pairs_kept"] == kept.sum() // 2
    assert fit.objective.meta["objective"] == "sii"


def test_sii_needs_sii_walks() -> None:
    game = QuadraticGame.random(5, np.random.default_rng(0))
    walks = PermutationSampling().walks(PermutationSampling().sample(game, 50, 0))
    with pytest.raises(ValueError, match=r"spqe\.walks: sii"):
        get_objective("sii").build(walks, SpqeConfig())
    assert objectives_for("prefix") == ["impq", "surrogate"]
    assert objectives_for("sii") == list(OBJECTIVES)
    assert objective_methods(["lim", "surrogate", "impq"], "prefix") == ["surrogate", "impq"]
    with pytest.raises(ValueError, match=r"method 'sii' needs spqe.walks in \['sii'\]"):
        objective_methods(["impq", "sii"], "prefix")
    with pytest.raises(ValueError, match=r"unknown objective 'nope'; choose from \[.*'impq'"):
        get_objective("nope")


@pytest.mark.parametrize("cls", [PermutationSampling, PermutationSamplingSII])
def test_surrogate_recovers_a_pairwise_game_exactly(cls) -> None:
    game = QuadraticGame.random(8, np.random.default_rng(5), scale=0.5)
    game.constant = 4.0
    sampler = cls()
    walks = walks_from_samples(sampler.sample(game, sampler.budget_for(8, 16), 0))
    fit = get_objective("surrogate").build(walks, SpqeConfig())
    problem = _solvable(fit.objective)
    np.testing.assert_allclose(problem.interactions, game.pairwise / 2, atol=1e-9)
    np.testing.assert_allclose(problem.linear, game.linear, atol=1e-9)
    np.testing.assert_allclose(problem.phi, game.shapley_values(), atol=1e-9)
    assert fit.metrics["surrogate_cv_r2"] == pytest.approx(1.0, abs=1e-12)
    assert fit.metrics["additive_cv_r2"] < 1.0 - 1e-6


class _ThirdOrder(Game):
    """Positive linear and pairwise terms plus strong three-way terms."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        super().__init__(n)
        self.base = QuadraticGame.random(n, rng, scale=0.3)
        self.triples = [tuple(rng.choice(n, 3, replace=False)) for _ in range(2 * n)]
        self.weights = rng.normal(0.0, 1.5, len(self.triples))

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        v = self.base.value_function(coalitions)
        for (i, j, k), w in zip(self.triples, self.weights, strict=True):
            v = v + w * (coalitions[:, i] & coalitions[:, j] & coalitions[:, k])
        return v


def test_surrogate_beats_the_additive_fit_on_held_out_coalitions() -> None:
    rng = np.random.default_rng(7)
    game = _ThirdOrder(8, rng)
    sampler = PermutationSampling()
    walks = sampler.walks(sampler.sample(game, sampler.budget_for(8, 24), 3))
    rows, values, groups = walk_coalitions(walks)
    fit = fit_quadratic(rows, values, groups)
    held = rng.random((400, 8)) < 0.5
    truth = game(held)

    def r2(pred: np.ndarray) -> float:
        return 1 - np.sum((truth - pred) ** 2) / np.sum((truth - truth.mean()) ** 2)

    additive = fit_quadratic(rows, values, groups, relative_ridges=(1e12,))
    assert np.abs(additive.pair).max() < 1e-6  # a huge penalty is the additive model
    assert r2(fit.predict(held)) > r2(additive.predict(held)) + 0.05
    assert fit.cv_r2 > fit.additive_cv_r2
    assert 0 < fit.ridge < np.inf  # neither least squares nor additive: a real trade-off


class _Overflowing(Game):
    def __init__(self) -> None:
        super().__init__(6)
        self.base = QuadraticGame.random(6, np.random.default_rng(0))

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        v = self.base.value_function(coalitions) + 4.0
        size = coalitions.sum(axis=1)
        return np.where(size >= 5, np.nan, np.where(size >= 4, np.inf, v))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_copes_with_capped_nonfinite_values(name: str) -> None:
    sampler = PermutationSamplingSII()
    walks = sampler.walks(sampler.sample(_Overflowing(), sampler.budget_for(6, 12), 0))
    assert walks.n_nonfinite > 0
    fit = get_objective(name).build(walks, SpqeConfig())
    assert np.isfinite(fit.objective.values).all()
    assert all(np.isfinite(v) for v in fit.metrics.values())
    problem = _solvable(fit.objective)  # a valid program
    assert np.isfinite(problem.interactions).all()
