"""Games over levels: level matrices are checked, the synthetic level game is exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from impq.estimate import all_level_vectors
from impq.game import LevelGame, check_coalitions


def test_level_matrices_are_checked_and_typed() -> None:
    levels = np.array([[0, 1, 2], [2, 2, 0]])
    out = check_coalitions(levels, 3, n_levels=3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, levels)
    assert check_coalitions(np.array([[0, 1, 1]]), 3).dtype == bool
    assert check_coalitions(np.array([[True, False, True]]), 3, n_levels=4).dtype == np.uint8
    for bad, value in (([[0, 3, 1]], "3"), ([[0, -1, 1]], "-1"), ([[0, 0.5, 1]], "0.5")):
        with pytest.raises(ValueError, match=f"value {value}.*0..2"):
            check_coalitions(np.array(bad), 3, n_levels=3)
    with pytest.raises(ValueError, match="value 2"):
        check_coalitions(np.array([[0, 2, 1]]), 3)  # two levels: 0 and 1 only


def _brute_value(game: LevelGame, x: np.ndarray) -> float:
    n = game.n_players
    total = game.constant + sum(game.cost[i, x[i]] for i in range(n))
    for i, j in itertools.combinations(range(n), 2):
        total += game.pair[i, x[i], j, x[j]]
    assert game.triple is not None
    for i, j, k in itertools.combinations(range(n), 3):
        total += game.triple[i, x[i], j, x[j], k, x[k]]
    return float(total)


def test_a_level_game_is_its_sum_of_terms_over_every_level_vector() -> None:
    game = LevelGame.random(4, 3, np.random.default_rng(0), third_order=0.4)
    x = all_level_vectors(4, 3)
    values = game(x)
    np.testing.assert_allclose(values, [_brute_value(game, r) for r in x], rtol=1e-12)
    assert game.n_levels == 3 and game.n_evaluations == 81
    assert values[0] == 0.0  # every term vanishes at the top level
    # terms are symmetric in their players and vanish where a level is 0
    np.testing.assert_array_equal(game.pair, game.pair.transpose(2, 3, 0, 1))
    assert not game.pair[:, 0].any() and not game.cost[:, 0].any()
    assert not game.pair[np.arange(4), :, np.arange(4), :].any()


def test_level_vectors_enumerate_every_configuration_once() -> None:
    x = all_level_vectors(3, 4)
    assert x.shape == (64, 3) and len({r.tobytes() for r in x}) == 64
    assert x.max() == 3 and (x[0] == 0).all()


def test_a_level_game_of_bad_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="pair must have shape"):
        LevelGame(np.zeros((3, 3)), np.zeros((3, 3, 3, 2)))
