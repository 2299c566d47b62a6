"""Synthetic games: closed-form answers agree with enumeration; evaluations are counted."""

from __future__ import annotations

import numpy as np
import pytest

from impq.estimate import all_coalitions, exact_values
from impq.game import AdditiveGame, QuadraticGame, RandomGame, check_coalitions


def test_quadratic_closed_form_matches_enumeration() -> None:
    game = QuadraticGame.random(7, np.random.default_rng(3))
    values, sii, _ = exact_values(game)
    np.testing.assert_allclose(values, game.shapley_values(), atol=1e-12)
    np.testing.assert_allclose(sii, game.interaction_index(), atol=1e-12)


def test_additive_game_has_no_interactions() -> None:
    game = AdditiveGame(np.array([1.0, 2.0, 3.0]), constant=5.0)
    values, sii, _ = exact_values(game)
    np.testing.assert_allclose(values, [1, 2, 3])
    np.testing.assert_allclose(sii, 0, atol=1e-12)


def test_evaluations_are_counted_per_row() -> None:
    game = RandomGame(5, np.random.default_rng(0))
    game(all_coalitions(5)[:7])
    game(np.ones(5, dtype=bool))
    assert game.n_evaluations == 8


def test_random_game_is_a_fixed_table() -> None:
    game = RandomGame(4, np.random.default_rng(1))
    c = all_coalitions(4)
    np.testing.assert_array_equal(game(c), game(c))
    assert game(np.zeros((1, 4), bool))[0] == 0.0


def test_wrong_coalition_width_is_an_error() -> None:
    with pytest.raises(ValueError, match="one column per player"):
        check_coalitions(np.zeros((2, 3), bool), 4)
