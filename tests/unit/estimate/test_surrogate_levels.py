"""The surrogate over per-(block, level) indicators: exact recovery of a pairwise level
game, the two-level fit unchanged, the additive model as the large-penalty limit."""

from __future__ import annotations

import numpy as np
import pytest

from impq.estimate.forms import level_values
from impq.estimate.surrogate import fit_quadratic, level_features, pair_products
from impq.solve.synthetic import synthetic_level_objective


@pytest.mark.parametrize("ladder", [(4, 3, 2), (8, 4, 3, 2)])
def test_surrogate_recovers_a_random_pairwise_level_game(ladder: tuple[int, ...]) -> None:
    n, s = 5, len(ladder) - 1
    game = synthetic_level_objective(n, ladder, scale=2.0, seed=s)
    rng = np.random.default_rng(0)
    x = rng.integers(0, s + 1, (400, n))
    y = 3.5 + level_values(game.cost, game.pair, x)
    fit = fit_quadratic(x, y, np.repeat(np.arange(20), 20), n_steps=s)
    assert fit.constant == pytest.approx(3.5, abs=1e-8)
    np.testing.assert_allclose(fit.cost, game.cost, atol=1e-8)
    np.testing.assert_allclose(fit.pair, game.pair, atol=1e-8)
    assert fit.cv_r2 == pytest.approx(1.0, abs=1e-10) and fit.additive_cv_r2 < 0.999
    held = rng.integers(0, s + 1, (50, n))
    np.testing.assert_allclose(fit.predict(held), 3.5 + game.predict(held), atol=1e-8)


def test_levels_of_one_step_are_the_coalition_features() -> None:
    x = np.random.default_rng(1).random((7, 5)) < 0.5
    onehot, pairs = level_features(x, 1)
    np.testing.assert_array_equal(onehot, x)
    iu, ju = np.triu_indices(5, 1)
    np.testing.assert_array_equal(pairs, x[:, iu] & x[:, ju])
    np.testing.assert_array_equal(pair_products(x), pairs)


def test_huge_penalty_is_the_additive_fit_and_bad_levels_are_refused() -> None:
    rng = np.random.default_rng(2)
    game = synthetic_level_objective(5, (4, 3, 2), scale=2.0, seed=1)
    x = rng.integers(0, 3, (200, 5))
    y = game.predict(x) + rng.normal(0, 0.01, 200)
    groups = np.repeat(np.arange(10), 20)
    additive = fit_quadratic(x, y, groups, relative_ridges=(1e12,))
    assert np.abs(additive.pair).max() < 1e-6
    assert fit_quadratic(x, y, groups).cv_r2 > additive.cv_r2
    with pytest.raises(ValueError, match=r"levels must lie in 0\.\.1"):
        fit_quadratic(x, y, groups, n_steps=1)
