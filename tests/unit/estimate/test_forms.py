"""The objectives over a ladder as array functions: additive, the covariance form step by
step (exactly today's two-level form for one step), the quadratic form over the steps,
and the step Shapley values of a pairwise level game against every walk order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from impq.estimate import covariance_interactions
from impq.estimate.forms import (
    additive_form,
    covariance_form,
    level_shapley,
    level_values,
    quadratic_form,
    thermometer,
)
from impq.solve.synthetic import synthetic_level_objective


def _levels(n: int, s: int) -> np.ndarray:
    """Every level vector of n blocks over S steps."""
    return np.array(list(itertools.product(range(s + 1), repeat=n)))


def _codes(x: np.ndarray, s: int) -> np.ndarray:
    """(N, L·S) thermometer codes q_{i,k} = [x_i >= k] of level vectors."""
    return (x[:, :, None] >= np.arange(1, s + 1)).reshape(len(x), -1).astype(np.float64)


def test_additive_form_sums_the_steps_taken() -> None:
    phi = np.random.default_rng(0).random((4, 3))
    cost, pair = additive_form(phi)
    x = _levels(4, 3)
    expected = (_codes(x, 3) * phi.ravel()).sum(axis=1)
    np.testing.assert_allclose(level_values(cost, pair, x), expected, atol=1e-14)
    assert np.all(cost[:, 0] == 0) and not pair.any()


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_covariance_form_with_one_step_is_todays_form(alpha: float) -> None:
    m = np.random.default_rng(1).normal(size=(20, 5))
    k, k_se = covariance_interactions(m, alpha)
    a = m.mean(axis=0) - (k.sum(axis=1) - np.diag(k))
    cost, pair, pair_se = covariance_form(m[:, :, None], alpha)
    np.testing.assert_allclose(cost[:, 1], a + np.diag(k), rtol=1e-13)
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(pair[:, 1, :, 1][off], 2 * k[off], rtol=1e-13)
    np.testing.assert_allclose(pair_se[:, 1, :, 1][off], 2 * k_se[off], rtol=1e-13)
    assert not pair[:, 0].any() and not pair[:, :, :, 0].any()
    assert np.all(np.diagonal(pair[:, 1, :, 1]) == 0) and np.all(cost[:, 0] == 0)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_covariance_form_is_the_quadratic_form_over_the_steps(alpha: float) -> None:
    n, s = 3, 3
    m = np.random.default_rng(2).normal(size=(15, n, s))
    cost, pair, pair_se = covariance_form(m, alpha)
    k, _ = covariance_interactions(m.reshape(15, n * s), alpha)
    a = m.reshape(15, -1).mean(axis=0) - (k.sum(axis=1) - np.diag(k))
    x = _levels(n, s)
    q = _codes(x, s)
    expected = q @ a + np.einsum("ni,ij,nj->n", q, k, q)
    np.testing.assert_allclose(level_values(cost, pair, x), expected, atol=1e-12)
    # a cross-block pair is twice the shrunk covariance of the cumulative marginals
    z = np.cumsum(m, axis=2)
    cov = np.cov(z[:, 0, 1], z[:, 2, 2])[0, 1]
    assert pair[0, 2, 2, 3] == pytest.approx(2 * (1 - alpha) * cov, rel=1e-12)
    assert pair_se[0, 2, 2, 3] > 0 and pair_se[1, 2, 1, 3] == 0


def test_covariance_form_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"shape \(M >= 2, L, S\)"):
        covariance_form(np.zeros((1, 3, 2)), 0.5)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        covariance_form(np.zeros((4, 3, 2)), 1.5)


def test_quadratic_form_with_real_levels_extrapolates() -> None:
    rng = np.random.default_rng(3)
    a, k = rng.random(4), rng.normal(size=(4, 4))
    k = (k + k.T) / 2
    s = np.array([1.0, 0.3, 0.0, -0.2])
    cost, pair = quadratic_form(a[:, None], k[:, None, :, None], s[:, None])
    for c in rng.integers(0, 4, (10, 4)):
        q = s[c]
        assert level_values(cost, pair, c) == pytest.approx(a @ q + q @ k @ q, abs=1e-13)
    assert thermometer(2).tolist() == [[0, 0], [1, 0], [1, 1]]


def _walk_mean_marginals(cost: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """Mean step marginals over every distinct order of the multiset of steps."""
    n, width = cost.shape
    s = width - 1
    orders = sorted(set(itertools.permutations(np.repeat(np.arange(n), s).tolist())))
    total = np.zeros((n, s))
    for order in orders:
        x = np.zeros(n, dtype=np.int64)
        before = level_values(cost, pair, x)
        for block in order:
            x[block] += 1
            after = level_values(cost, pair, x)
            total[block, x[block] - 1] += after - before
            before = after
    return total / len(orders)


@pytest.mark.parametrize(("n", "ladder"), [(3, (4, 3, 2)), (2, (8, 4, 3, 2)), (4, (4, 2))])
def test_level_shapley_is_the_mean_marginal_over_every_walk(n: int, ladder: tuple) -> None:
    objective = synthetic_level_objective(n, ladder, scale=3.0, seed=n)
    values = level_shapley(objective.cost, objective.pair)
    np.testing.assert_allclose(
        values, _walk_mean_marginals(objective.cost, objective.pair), atol=1e-13
    )
    # efficiency: the steps' values add up to the all-bottom value
    bottom = objective.predict(np.full(n, len(ladder) - 1))
    assert values.sum() == pytest.approx(bottom, rel=1e-12)
