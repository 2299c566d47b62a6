"""The objectives over a ladder of precisions as pure array functions.

A configuration is a level vector ``x`` (L,), ``x_i`` in ``0..S`` (0 = the ladder's top
precision, S = its bottom). Every objective is a pairwise level function

    f(x) = Σ_i cost[i, x_i] + Σ_{i<j} pair[i, x_i, j, x_j],

``cost`` (L, S+1) with ``cost[:, 0] = 0`` and ``pair`` (L, S+1, L, S+1) symmetric, zero
where ``i == j`` or either level is 0. The functions here build ``(cost, pair)`` from
Shapley values, from a quadratic form over the steps, or from the covariance of the
step marginals, and evaluate it.

The steps of block ``i`` are the players ``(i, k)``, ``k = 1..S`` (step ``k`` lowers
``ladder[k-1]`` to ``ladder[k]``); ``q_{i,k} = [x_i >= k]`` is the thermometer code of
``x``. A quadratic form ``aᵀq + qᵀKq`` over the steps is a pairwise level function: its
within-block products fold into ``cost``, its cross-block products into ``pair``.
"""

from __future__ import annotations

from math import comb

import numpy as np

from impq.estimate.permutation import covariance_interactions

__all__ = [
    "additive_form",
    "covariance_form",
    "level_shapley",
    "level_values",
    "quadratic_form",
    "step_order_weights",
    "thermometer",
]


def thermometer(n_steps: int) -> np.ndarray:
    """(S+1, S) the step indicators ``q_k = [x >= k]`` of each level ``x = 0..S``."""
    return np.tril(np.ones((n_steps + 1, n_steps)), -1)


def quadratic_form(
    a: np.ndarray, k: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(cost, pair)`` of ``f = aᵀq + qᵀKq`` when level ``x`` has step vector ``codes[x]``.

    Args:
        a: (L, S) linear coefficient of every step.
        k: (L, S, L, S) symmetric quadratic coefficients (within-block entries included).
        codes: (n_levels, S) the step vector ``q`` of each level: :func:`thermometer` for
            a measured ladder, or real-valued degradation levels to extrapolate.

    Returns:
        cost (L, n_levels) ``a_i·q(x) + q(x)ᵀ K_ii q(x)`` and pair (L, n_levels, L,
        n_levels) ``2 q(x)ᵀ K_ij q(y)`` for ``i != j``, zero for ``i == j``.
    """
    kq = np.einsum("xk,ikjl,yl->ixjy", codes, k, codes)
    n = a.shape[0]
    blocks = np.arange(n)
    cost = a @ codes.T + np.einsum("ixix->ix", kq)
    pair = 2 * kq
    pair[blocks, :, blocks, :] = 0.0
    return cost, pair


def additive_form(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values alone: ``cost[i, x] = Σ_{k<=x} φ[i, k]``, no pairs.

    Args:
        phi: (L, S) value of every (block, step).
    """
    n, s = phi.shape
    cost = np.concatenate([np.zeros((n, 1)), np.cumsum(phi, axis=1)], axis=1)
    return cost, np.zeros((n, s + 1, n, s + 1))


def covariance_form(
    step_marginals: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's covariance form, generalized step by step.

    The players are the (block, step) pairs. With ``m`` (M, L, S) the marginal of every
    step in every walk, ``φ = mean(m)``, ``C`` the covariance (ddof 1) of the flattened
    marginals ((L·S) x (L·S)) and ``K = (1 - α)·C + α·diag(C)``, the objective is
    ``f(q) = aᵀq + qᵀKq`` with ``a = φ - (K·1 - diag K)`` and ``q`` the thermometer code;
    it is turned into ``(cost, pair)`` by :func:`quadratic_form`. A cross-block pair is
    ``pair[i, x, j, y] = 2(1 - α)·Cov(Σ_{k<=x} m_ik, Σ_{l<=y} m_jl)``, whose standard
    error comes from the delta method on those cumulative marginals. With one step this
    is exactly the two-level form ``cost[:, 1] = a + diag K``, ``pair = 2K``.

    Args:
        step_marginals: (M, L, S), M >= 2 walks.
        alpha: shrinkage toward the diagonal, in [0, 1].

    Returns:
        cost (L, S+1), pair (L, S+1, L, S+1) and pair_se (same shape; zero on the
        within-block and level-0 entries, where ``pair`` is zero by definition).

    Raises:
        ValueError: fewer than two walks, a wrong shape, or ``alpha`` outside [0, 1].
    """
    m = np.asarray(step_marginals, dtype=np.float64)
    if m.ndim != 3 or m.shape[0] < 2:
        raise ValueError(f"step marginals must have shape (M >= 2, L, S), got {m.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    n_walks, n, s = m.shape
    phi = m.mean(axis=0)
    k, _ = covariance_interactions(m.reshape(n_walks, n * s), alpha)
    k4 = k.reshape(n, s, n, s)
    a = phi - (k4.sum(axis=(2, 3)) - np.einsum("ikik->ik", k4))
    cost, pair = quadratic_form(a, k4, thermometer(s))
    _, cum_se = covariance_interactions(np.cumsum(m, axis=2).reshape(n_walks, n * s), alpha)
    pair_se = np.zeros_like(pair)
    pair_se[:, 1:, :, 1:] = 2 * cum_se.reshape(n, s, n, s)
    blocks = np.arange(n)
    pair_se[blocks, :, blocks, :] = 0.0
    return cost, pair, pair_se


def level_values(cost: np.ndarray, pair: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``f(x)`` of every row of a level matrix (n, L) (or of one level vector (L,))."""
    x = np.asarray(levels, dtype=np.int64)
    rows = np.atleast_2d(x)
    n, width = cost.shape
    flat = np.arange(n) * width + rows  # (r, L) index into the (L·W) one-hot space
    unary = cost.ravel()[flat].sum(axis=1)
    pm = pair.reshape(n * width, n * width)
    quad = pm[flat[:, :, None], flat[:, None, :]].sum(axis=(1, 2)) / 2
    out = unary + quad
    return out if x.ndim == 2 else out[0]


def step_order_weights(n_steps: int) -> np.ndarray:
    """(S, S+1) ``w[k-1, l]``: probability that block ``j`` sits at level ``l`` when block
    ``i`` takes its ``k``-th step, in a uniformly random order of the steps of all blocks.

    Only the relative order of the ``2S`` steps of ``i`` and ``j`` matters: ``l`` steps of
    ``j`` precede the ``k``-th of ``i`` in ``C(k-1+l, l)·C(2S-k-l, S-l)`` of the
    ``C(2S, S)`` equally likely orders.
    """
    s = n_steps
    return np.array(
        [[comb(k - 1 + lv, lv) * comb(2 * s - k - lv, s - lv) for lv in range(s + 1)]
         for k in range(1, s + 1)],
        dtype=np.float64,
    ) / comb(2 * s, s)  # fmt: skip


def level_shapley(cost: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """(L, S) Shapley value of every (block, step) of the level game ``f``.

    The value of a game under precedence constraints: the mean marginal of the step over
    uniformly random orders of the multiset of steps (each block's steps in their order),
    in closed form for a pairwise ``f`` (:func:`step_order_weights`). With one step it is
    ``cost[:, 1] + Σ_j pair[:, 1, j, 1] / 2``.
    """
    w = step_order_weights(cost.shape[1] - 1)
    dpair = np.diff(pair, axis=1)  # (L, S, L, S+1): pair[i, k] - pair[i, k-1]
    return np.diff(cost, axis=1) + np.einsum("ikjl,kl->ik", dpair, w)
