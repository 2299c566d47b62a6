"""Ladder walks: [4, 2] is today's permutation walk to the bit; longer ladders against the
exact (player, step) Shapley values under precedence constraints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from impq.estimate import (
    PermutationSampling,
    PermutationSamplingSII,
    exact_ladder_values,
    exact_values,
    walks_from_samples,
)
from impq.estimate.permutation import seeded_permutations
from impq.game import LevelGame, QuadraticGame, RandomGame


def _todays_permutations(seed: int, indices: range, n: int) -> np.ndarray:
    """The permutations as sampled before ladders (one step per player)."""
    return np.stack([np.random.default_rng([seed, k]).permutation(n) for k in indices])


def _todays_coalitions(perm: np.ndarray) -> np.ndarray:
    n = len(perm)
    steps = np.zeros((n - 1, n), dtype=bool)
    for t in range(n - 1):
        steps[t:, perm[t]] = True
    return steps


@pytest.mark.parametrize("seed", [0, 5, 123456789])
def test_one_step_walk_orders_are_todays_permutations(seed: int) -> None:
    ours = seeded_permutations(seed, range(3, 12), 9)
    assert ours.dtype == _todays_permutations(seed, range(3, 12), 9).dtype
    np.testing.assert_array_equal(ours, _todays_permutations(seed, range(3, 12), 9))
    np.testing.assert_array_equal(ours, seeded_permutations(seed, range(3, 12), 9, steps=1))


def test_a_two_level_game_samples_todays_walks_bit_for_bit() -> None:
    game, twin = RandomGame(7, np.random.default_rng(3)), RandomGame(7, np.random.default_rng(3))
    sampler = PermutationSampling()
    samples = sampler.sample(game, sampler.budget_for(7, 11), 42)

    perms = _todays_permutations(42, range(11), 7)
    endpoints = twin(np.array([np.zeros(7, bool), np.ones(7, bool)]))
    walks = np.stack([twin(_todays_coalitions(p)) for p in perms])
    prefix = np.column_stack([np.full(11, endpoints[0]), walks, np.full(11, endpoints[1])])
    marginals = np.empty(perms.shape)
    np.put_along_axis(marginals, perms, np.diff(prefix, axis=1), axis=1)

    np.testing.assert_array_equal(samples["permutations"], perms)
    assert samples["walks"].tobytes() == walks.tobytes()
    assert samples["endpoints"].tobytes() == endpoints.tobytes()
    view = sampler.walks(samples)
    assert view.marginals.tobytes() == marginals.tobytes()
    assert view.n_steps == 1 and view.step_marginals.shape == (11, 7, 1)
    assert view.coalitions.dtype == bool
    np.testing.assert_array_equal(view.coalitions, np.stack([_todays_coalitions(p) for p in perms]))
    assert game.n_evaluations == twin.n_evaluations == 2 + 11 * 6


def test_ladder_walks_step_every_block_once_per_rung() -> None:
    game = LevelGame.random(5, 4, np.random.default_rng(0))
    sampler = PermutationSampling()
    samples = sampler.sample(game, sampler.budget_for(5, 6, 3), 1)
    assert game.n_evaluations == 2 + 6 * (5 * 3 - 1)
    walks = walks_from_samples(samples)
    assert walks.n_steps == 3 and walks.ladder == (3, 2, 1, 0)  # nominal: no precisions
    assert walks.permutations.shape == (6, 15) and walks.coalitions.shape == (6, 14, 5)
    assert walks.coalitions.dtype == np.uint8
    for order, rows in zip(walks.permutations, walks.coalitions, strict=True):
        np.testing.assert_array_equal(np.bincount(order), [3] * 5)
        steps = np.diff(np.vstack([np.zeros(5), rows, np.full(5, 3)]), axis=0)
        assert (steps.sum(axis=1) == 1).all()  # one block one level lower per step
        np.testing.assert_array_equal(steps.argmax(axis=1), order)
    full = game(np.full(5, 3))[0] - game(np.zeros(5, int))[0]
    np.testing.assert_allclose(walks.step_marginals.sum(axis=(1, 2)), full)
    np.testing.assert_array_equal(walks.marginals, walks.step_marginals.sum(axis=2))


def _brute_force_ladder_values(game: LevelGame) -> np.ndarray:
    """Average step marginals over every distinct order of the multiset."""
    n, steps = game.n_players, game.n_levels - 1
    orders = set(itertools.permutations(np.repeat(np.arange(n), steps).tolist()))
    total = np.zeros((n, steps))
    for order in orders:
        x = np.zeros(n, dtype=np.int64)
        before = game(x)[0]
        for i in order:
            x[i] += 1
            after = game(x)[0]
            total[i, x[i] - 1] += after - before
            before = after
    return total / len(orders)


@pytest.mark.parametrize(("n", "levels"), [(3, 3), (2, 4), (4, 2)])
def test_exact_ladder_values_equal_brute_force_enumeration(n: int, levels: int) -> None:
    game = LevelGame.random(n, levels, np.random.default_rng(n * levels), third_order=0.5)
    values, v = exact_ladder_values(game)
    np.testing.assert_allclose(values, _brute_force_ladder_values(game), rtol=1e-12, atol=1e-12)
    assert v.shape == (levels**n,)


def test_exact_ladder_values_of_two_levels_are_the_shapley_values() -> None:
    game = QuadraticGame.random(6, np.random.default_rng(1))
    values, _ = exact_ladder_values(game)
    np.testing.assert_allclose(values[:, 0], exact_values(game)[0], rtol=1e-12)
    np.testing.assert_allclose(values[:, 0], game.shapley_values(), rtol=1e-12)


@pytest.mark.parametrize("n", [4, 6])
def test_walk_estimates_converge_to_the_exact_ladder_values(n: int) -> None:
    game = LevelGame.random(n, 3, np.random.default_rng(7), scale=0.5, third_order=0.3)
    exact, _ = exact_ladder_values(game)
    sampler = PermutationSampling()
    walks = walks_from_samples(sampler.sample(game, sampler.budget_for(n, 600, 2), 11))
    mean = walks.step_marginals.mean(axis=0)
    se = walks.step_marginals.std(axis=0, ddof=1) / np.sqrt(walks.n_permutations)
    z = np.abs(mean - exact) / se
    assert z.max() < 4.5, z
    assert np.abs(mean - exact).max() > 0  # a sampled estimate, not the exact answer


def test_a_tolerance_stop_uses_the_step_values_standard_errors() -> None:
    game = LevelGame.random(4, 3, np.random.default_rng(2))
    sampler = PermutationSampling(tolerance=0.05)
    walks = walks_from_samples(sampler.sample(game, sampler.budget_for(4, 5000, 2), 0))
    se = walks.step_marginals.std(axis=0, ddof=1) / np.sqrt(walks.n_permutations)
    assert se.max() < 0.05 < walks.n_permutations
    shorter = walks.step_marginals[:-1]
    assert (shorter.std(axis=0, ddof=1) / np.sqrt(len(shorter))).max() >= 0.05


def test_sii_walks_over_a_ladder_are_an_error() -> None:
    game = LevelGame.random(4, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="two-level ladders only"):
        PermutationSamplingSII().sample(game, 1000, 0)


def test_a_recorded_ladder_run_answers_a_rerun_entirely() -> None:
    from impq.estimate.recorded import RecordedGame, recorded_coalitions

    game = LevelGame.random(4, 3, np.random.default_rng(5))
    sampler = PermutationSampling()
    first = sampler.sample(game, sampler.budget_for(4, 5, 2), 3)
    rows, values = recorded_coalitions(first)
    assert rows.dtype == np.uint8 and rows.shape == (2 + 5 * 7, 4)
    inner = LevelGame(game.cost, game.pair)
    recorded = RecordedGame(inner, rows, values)
    again = sampler.sample(recorded, sampler.budget_for(4, 5, 2), 3)
    assert inner.n_evaluations == 0 and recorded.n_recorded_answers == 2 + 5 * 7
    for key in first:
        np.testing.assert_array_equal(again[key], first[key])
