"""Permutation estimators: convergence to exact answers, budgets, stopping, checkpoints."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from impq.estimate import (
    Checkpoint,
    PermutationSampling,
    PermutationSamplingSII,
    ShapleyResult,
    covariance_interactions,
    exact_values,
    get_estimator,
)
from impq.game import Game, QuadraticGame, RandomGame


def _errors(estimator, game, exact, budgets, seed=0):
    out = []
    for budget in budgets:
        est = estimator.estimate(game, budget, np.random.default_rng(seed))
        out.append((np.abs(est.values - exact).max(), est))
    return out


@pytest.mark.parametrize("make", [QuadraticGame.random, RandomGame])
@pytest.mark.parametrize("cls", [PermutationSampling, PermutationSamplingSII])
def test_values_converge_within_standard_errors(make, cls) -> None:
    game = make(7, np.random.default_rng(11))
    exact, _, _ = exact_values(game)
    estimator = cls()
    budgets = [estimator.budget_for(7, m) for m in (10, 100, 2000)]
    results = _errors(estimator, game, exact, budgets)
    errs = [e for e, _ in results]
    assert errs[0] > errs[1] > errs[2]
    for err, est in results[1:]:  # with 10 permutations the SE itself is too noisy
        z = np.abs(est.values - exact) / est.values_se
        assert z.max() < 4.5, (err, z)


def test_sii_estimator_converges_to_the_exact_interaction_index() -> None:
    game = RandomGame(6, np.random.default_rng(5))
    _, sii, _ = exact_values(game)
    estimator = PermutationSamplingSII()
    errs = []
    for m in (20, 400, 4000):
        est = estimator.estimate(game, estimator.budget_for(6, m), np.random.default_rng(1))
        off = ~np.eye(6, dtype=bool)
        errs.append(np.abs(est.interactions - sii)[off].max())
        if m == 4000:
            z = np.abs(est.interactions - sii)[off] / est.interactions_se[off]
            assert z.max() < 4.5
    assert errs[0] > errs[1] > errs[2]


def test_sii_is_exact_on_a_quadratic_game() -> None:
    game = QuadraticGame.random(6, np.random.default_rng(2))
    est = PermutationSamplingSII().estimate(game, 2 + 200 * 10, np.random.default_rng(0))
    np.testing.assert_allclose(est.interactions, game.interaction_index(), atol=1e-12)


def test_covariance_k_converges_to_the_covariance_over_all_permutations() -> None:
    game = QuadraticGame.random(5, np.random.default_rng(4), scale=1.0)
    perms = np.array(list(itertools.permutations(range(5))))
    # marginal of player perms[k, t] = b_i + sum of Q with the players before it
    full = np.empty(perms.shape)
    for k, perm in enumerate(perms):
        for t, i in enumerate(perm):
            full[k, i] = game.linear[i] + game.pairwise[i, perm[:t]].sum()
    exact_c = np.cov(full, rowvar=False, bias=True)
    alpha = 0.3
    exact_k = (1 - alpha) * exact_c + alpha * np.diag(np.diag(exact_c))
    estimator = PermutationSampling(alpha=alpha)
    errs = []
    for m in (20, 200, 3000):
        est = estimator.estimate(game, estimator.budget_for(5, m), np.random.default_rng(3))
        errs.append(np.abs(est.interactions - exact_k).max())
        if m == 3000:
            assert (np.abs(est.interactions - exact_k) / est.interactions_se).max() < 4.5
    assert errs[0] > errs[1] > errs[2]


def test_covariance_interactions_shrink_the_off_diagonal() -> None:
    x = np.random.default_rng(0).normal(size=(50, 4))
    k, se = covariance_interactions(x, 0.5)
    c = np.cov(x, rowvar=False)
    np.testing.assert_allclose(np.diag(k), np.diag(c))
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(k[off], 0.5 * c[off])
    assert (se > 0).all()


@pytest.mark.parametrize("cls", [PermutationSampling, PermutationSamplingSII])
@pytest.mark.parametrize("budget", [30, 57, 100, 1001])
def test_budget_is_respected(cls, budget) -> None:
    game = RandomGame(8, np.random.default_rng(0))
    est = cls().estimate(game, budget, np.random.default_rng(0))
    assert game.n_evaluations == est.n_evaluations <= budget
    assert budget - est.n_evaluations < cls().evaluations_per_permutation(8)


def test_a_budget_below_two_permutations_is_an_error() -> None:
    game = RandomGame(8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 16 evaluations"):
        PermutationSampling().estimate(game, 15, np.random.default_rng(0))


def test_marginals_of_each_permutation_sum_to_the_grand_coalition_gain() -> None:
    game = RandomGame(6, np.random.default_rng(2))
    est = PermutationSampling().estimate(game, 200, np.random.default_rng(0))
    v_full = game(np.ones(6, bool))[0]
    np.testing.assert_allclose(est.marginals.sum(axis=1), v_full)


def test_tolerance_stops_early_with_every_se_below_it() -> None:
    game = QuadraticGame.random(6, np.random.default_rng(0))
    budget = PermutationSampling().budget_for(6, 5000)
    est = PermutationSampling(tolerance=0.02).estimate(game, budget, np.random.default_rng(0))
    assert est.values_se.max() < 0.02
    assert est.n_evaluations < budget
    assert est.meta["permutations"] >= 10


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    game = RandomGame(6, np.random.default_rng(0))
    a = PermutationSampling().estimate(game, 300, np.random.default_rng(7))
    b = PermutationSampling().estimate(game, 300, np.random.default_rng(7))
    c = PermutationSampling().estimate(game, 300, np.random.default_rng(8))
    np.testing.assert_array_equal(a.marginals, b.marginals)
    assert not np.array_equal(a.marginals, c.marginals)


class _Overflowing(Game):
    """NLL-like values that overflow to inf (and NaN) once 4 or more players are low."""

    def __init__(self) -> None:
        super().__init__(6)
        self.base = QuadraticGame.random(6, np.random.default_rng(0))

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        v = self.base.value_function(coalitions)
        size = coalitions.sum(axis=1)
        return np.where(size >= 5, np.nan, np.where(size >= 4, np.inf, v))


def test_nonfinite_values_are_capped_and_counted() -> None:
    game = _Overflowing()
    est = PermutationSampling().estimate(game, 2 + 20 * 5, np.random.default_rng(0))
    assert np.isfinite(est.values).all() and np.isfinite(est.interactions).all()
    assert est.meta["n_nonfinite"] == 1 + 20 * 2  # v(N), and two walk steps per permutation
    np.testing.assert_allclose(est.marginals.sum(axis=1), est.meta["value_full"])


class _Crashing(Game):
    """A game that raises after a given number of evaluations (a killed process)."""

    def __init__(self, inner: Game, crash_after: int | None) -> None:
        super().__init__(inner.n_players)
        self.inner, self.crash_after = inner, crash_after

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        if self.crash_after is not None and self.n_evaluations >= self.crash_after:
            raise KeyboardInterrupt
        return self.inner.value_function(coalitions)


@pytest.mark.parametrize("cls", [PermutationSampling, PermutationSamplingSII])
def test_resume_from_checkpoint_gives_the_uninterrupted_result(tmp_path: Path, cls) -> None:
    inner = RandomGame(6, np.random.default_rng(0))
    budget = cls().budget_for(6, 30)
    whole = cls().estimate(inner, budget, np.random.default_rng(3))

    ckpt = Checkpoint(tmp_path / "ckpt.npz", key="k")
    with pytest.raises(KeyboardInterrupt):
        cls(checkpoint=ckpt).estimate(_Crashing(inner, 60), budget, np.random.default_rng(3))
    saved = ckpt.load()
    assert saved is not None and 0 < len(saved["permutations"]) < 30

    resumed_game = _Crashing(inner, None)
    resumed = cls(checkpoint=ckpt).estimate(resumed_game, budget, np.random.default_rng(3))
    assert resumed_game.n_evaluations < budget - 2  # the saved permutations were not redone
    np.testing.assert_array_equal(resumed.marginals, whole.marginals)
    np.testing.assert_array_equal(resumed.interactions, whole.interactions)
    assert resumed.n_evaluations == whole.n_evaluations


def test_a_checkpoint_under_another_key_is_ignored(tmp_path: Path, caplog) -> None:
    game = RandomGame(5, np.random.default_rng(0))
    PermutationSampling(checkpoint=Checkpoint(tmp_path / "c.npz", "old")).estimate(
        game, 50, np.random.default_rng(0)
    )
    fresh = RandomGame(5, np.random.default_rng(0))
    PermutationSampling(checkpoint=Checkpoint(tmp_path / "c.npz", "new")).estimate(
        fresh, 50, np.random.default_rng(0)
    )
    assert fresh.n_evaluations == 50 - (50 - 2) % 4
    assert "other params" in caplog.text


def test_registry_lists_choices_on_an_unknown_name() -> None:
    assert isinstance(get_estimator("permutation", alpha=0.2), PermutationSampling)
    with pytest.raises(ValueError, match="exact"):
        get_estimator("kernelshap")


def test_result_files_are_byte_identical(tmp_path: Path) -> None:
    game = RandomGame(5, np.random.default_rng(0))
    est = PermutationSampling().estimate(game, 50, np.random.default_rng(0))
    a = est.to_result(meta={"x": 1}).save(tmp_path / "a.npz")
    b = est.to_result(meta={"x": 1}).save(tmp_path / "b.npz")
    assert a.read_bytes() == b.read_bytes()
    back = ShapleyResult.load(a)
    np.testing.assert_array_equal(back.interactions, est.interactions)
    assert back.meta["n_evaluations"] == est.n_evaluations


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_assembling_samples_with_another_alpha_equals_a_fresh_estimate(alpha: float) -> None:
    game = QuadraticGame.random(6, np.random.default_rng(4))
    budget = PermutationSampling().budget_for(6, 15)
    samples = PermutationSampling(alpha=0.5).sample(game, budget, np.random.default_rng(2))
    before = game.n_evaluations
    assembled = PermutationSampling(alpha=alpha).assemble(samples)
    assert game.n_evaluations == before  # assembly evaluates nothing
    fresh = PermutationSampling(alpha=alpha).estimate(game, budget, np.random.default_rng(2))
    assert assembled.meta == fresh.meta and assembled.meta["alpha"] == alpha
    for name in ("values", "values_se", "interactions", "interactions_se", "marginals"):
        np.testing.assert_array_equal(getattr(assembled, name), getattr(fresh, name), name)
    if alpha != 0.5:
        other = PermutationSampling(alpha=0.5).assemble(samples)
        assert not np.array_equal(other.interactions, assembled.interactions)


def test_assembling_another_estimators_walks_is_an_error() -> None:
    game = QuadraticGame.random(5, np.random.default_rng(0))
    samples = PermutationSamplingSII().sample(game, 2 + 4 * 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="not sampled by permutation"):
        PermutationSampling().assemble(samples)


def test_permutation_k_depends_on_seed_and_index_only() -> None:
    from impq.estimate.permutation import seeded_permutations

    whole = seeded_permutations(5, range(10), 7)
    chunk = seeded_permutations(5, range(6, 10), 7)
    assert np.array_equal(whole[6:], chunk)
    assert not np.array_equal(whole, seeded_permutations(6, range(10), 7))
    assert all(sorted(p) == list(range(7)) for p in whole)
    game = RandomGame(7, np.random.default_rng(0))
    est = PermutationSampling().sample(game, PermutationSampling().budget_for(7, 4), 5)
    assert np.array_equal(est["permutations"], whole[:4])


def test_prefix_walks_top_up_to_the_sii_walks_of_a_fresh_run() -> None:
    from impq.estimate.recorded import RecordedGame, recorded_coalitions

    game = RandomGame(7, np.random.default_rng(1))
    prefix = PermutationSampling().sample(game, PermutationSampling().budget_for(7, 9), 4)
    sii = PermutationSamplingSII()
    fresh = sii.sample(game, sii.budget_for(7, 9), 4)
    inner = RandomGame(7, np.random.default_rng(1))
    topped = sii.sample(RecordedGame(inner, *recorded_coalitions(prefix)), sii.budget_for(7, 9), 4)
    assert inner.n_evaluations <= 9 * 6  # only S ∪ {b}: never a prefix, never an endpoint
    for name in fresh:
        np.testing.assert_array_equal(topped[name], fresh[name])
    # an SII record answers a prefix run entirely
    again = RandomGame(7, np.random.default_rng(1))
    redo = PermutationSampling().sample(
        RecordedGame(again, *recorded_coalitions(fresh)), PermutationSampling().budget_for(7, 9), 4
    )
    assert again.n_evaluations == 0
    np.testing.assert_array_equal(redo["walks"], prefix["walks"])
