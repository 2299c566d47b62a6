"""Synthetic SPQE results and objectives with a known generating process, for tests and
benchmarks."""

from __future__ import annotations

import numpy as np

from impq.estimate.forms import level_shapley
from impq.estimate.level_objective import LevelObjective
from impq.estimate.result import ShapleyResult

__all__ = ["synthetic_level_objective", "synthetic_shapley"]


def synthetic_shapley(
    n_blocks: int,
    *,
    permutations: int | None = None,
    block_params: int | np.ndarray = 1_000_000,
    factors: int = 3,
    seed: int = 0,
) -> ShapleyResult:
    """A ShapleyResult estimated from simulated marginal contributions.

    Each of ``permutations`` (default ``2 * n_blocks``) rows holds one loss increase per
    block: a positive, log-normally spread Shapley value, plus correlated noise from
    ``factors`` shared factors and independent noise. Values are the row means; K is the
    covariance of the rows with Wishart standard errors, as SPQE reports them.
    """
    rng = np.random.default_rng(seed)
    m = permutations or 2 * n_blocks
    phi = np.exp(rng.normal(np.log(0.05), 0.7, n_blocks))
    loadings = rng.normal(0.0, 0.4, (n_blocks, factors)) * phi[:, None]
    noise = rng.normal(0.0, 1.0, (m, factors)) @ loadings.T
    draws = phi + noise + rng.normal(0.0, 0.2, (m, n_blocks)) * phi
    cov = np.cov(draws, rowvar=False)
    var = np.diag(cov)
    params = np.broadcast_to(np.asarray(block_params, dtype=np.int64), (n_blocks,)).copy()
    return ShapleyResult(
        values=draws.mean(axis=0),
        values_se=draws.std(axis=0, ddof=1) / np.sqrt(m),
        interactions=cov,
        interactions_se=np.sqrt((np.outer(var, var) + cov**2) / (m - 1)),
        block_params=params,
        meta={"estimator": "synthetic", "permutations": m, "seed": seed},
    )


def synthetic_level_objective(
    n_blocks: int,
    ladder: tuple[int, ...] = (8, 4, 3, 2),
    *,
    block_params: int | np.ndarray = 1_000_000,
    scale: float = 0.3,
    seed: int = 0,
) -> LevelObjective:
    """A random pairwise objective over ``ladder``: every step down costs a positive,
    log-normally spread amount, and every pair of blocks below the top has a normal
    interaction of relative size ``scale``; ``values`` are its exact step Shapley values.
    """
    rng = np.random.default_rng(seed)
    n, s = n_blocks, len(ladder) - 1
    steps = np.exp(rng.normal(np.log(0.05), 0.7, (n, s))) * np.arange(1, s + 1)
    cost = np.concatenate([np.zeros((n, 1)), np.cumsum(steps, axis=1)], axis=1)
    draw = np.zeros((n, s + 1, n, s + 1))
    draw[:, 1:, :, 1:] = rng.normal(0.0, scale * 0.05, (n, s, n, s))
    pair = (draw + draw.transpose(2, 3, 0, 1)) / 2
    pair[np.arange(n), :, np.arange(n), :] = 0.0
    params = np.broadcast_to(np.asarray(block_params, dtype=np.int64), (n,)).copy()
    return LevelObjective(
        ladder=tuple(ladder),
        cost=cost,
        pair=pair,
        values=level_shapley(cost, pair),
        values_se=np.full((n, s), np.nan),
        pair_se=np.full(pair.shape, np.nan),
        block_params=params,
        meta={"objective": "synthetic", "seed": seed},
    )
