"""Exact enumeration: the Shapley axioms hold and the budget is checked."""

from __future__ import annotations

import numpy as np
import pytest

from impq.estimate import ExactEstimator, all_coalitions, exact_values
from impq.game import QuadraticGame, RandomGame


def test_gray_code_covers_every_coalition_once_one_flip_at_a_time() -> None:
    c = all_coalitions(6)
    masks = c.astype(np.int64) @ (1 << np.arange(6))
    assert sorted(masks.tolist()) == list(range(64))
    assert (np.abs(np.diff(c.astype(int), axis=0)).sum(axis=1) == 1).all()


def test_efficiency_and_symmetry_on_a_random_game() -> None:
    game = RandomGame(6, np.random.default_rng(0))
    values, sii, v = exact_values(game)
    assert values.sum() == pytest.approx(v[-1] - v[0])
    np.testing.assert_allclose(sii, sii.T)
    assert game.n_evaluations == 64


def test_exact_estimator_needs_the_whole_enumeration() -> None:
    game = QuadraticGame.random(5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="32 evaluations"):
        ExactEstimator().estimate(game, 31, np.random.default_rng(0))
    est = ExactEstimator().estimate(game, 32, np.random.default_rng(0))
    assert est.n_evaluations == game.n_evaluations == 32
    np.testing.assert_allclose(est.values, game.shapley_values())


def test_too_many_players_is_refused() -> None:
    game = QuadraticGame(np.ones(15))
    with pytest.raises(ValueError, match="≤ 14 players"):
        exact_values(game)
