"""Exact Shapley values and pairwise Shapley interaction index by enumeration (≤ 14 players),
and exact ladder Shapley values (one per player and step) of games over levels."""

from __future__ import annotations

from math import factorial

import numpy as np

from impq.estimate.base import Estimate
from impq.game.base import Game

__all__ = [
    "MAX_EXACT_CONFIGURATIONS",
    "MAX_EXACT_PLAYERS",
    "ExactEstimator",
    "all_coalitions",
    "all_level_vectors",
    "exact_ladder_values",
    "exact_values",
]

MAX_EXACT_PLAYERS = 14
MAX_EXACT_CONFIGURATIONS = 2**20
"""Level vectors :func:`exact_ladder_values` enumerates at most (``(S + 1)^L``)."""


def all_coalitions(n_players: int) -> np.ndarray:
    """Every coalition of ``n_players``, in Gray-code order: (2^n, n) booleans.

    Consecutive rows differ in one player, and the last player flips most often (every
    other row), the first least often: a game that recomputes from the first changed
    player on (the model game) pays about two players per row instead of ``n``.
    """
    k = np.arange(2**n_players, dtype=np.int64)
    gray = k ^ (k >> 1)
    return ((gray[:, None] >> np.arange(n_players)[::-1]) & 1).astype(bool)


def _popcount(masks: np.ndarray, n: int) -> np.ndarray:
    return ((masks[:, None] >> np.arange(n)) & 1).sum(axis=1)


def exact_values(game: Game) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate every coalition once; return (Shapley values, pairwise SII, v by bitmask).

    The pairwise Shapley interaction index is
    ``SII_ij = sum_{S ⊆ N∖{i,j}} |S|!(n-|S|-2)!/(n-1)! · [v(S∪ij) - v(S∪i) - v(S∪j) + v(S)]``
    (zero diagonal).

    Raises:
        ValueError: the game has more than ``MAX_EXACT_PLAYERS`` players.
    """
    n = game.n_players
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(f"exact enumeration needs ≤ {MAX_EXACT_PLAYERS} players, got {n}")
    coalitions = all_coalitions(n)
    v = np.empty(2**n)
    v[coalitions.astype(np.int64) @ (1 << np.arange(n))] = game(coalitions)

    masks = np.arange(2**n, dtype=np.int64)
    size = _popcount(masks, n)
    fact = np.array([factorial(s) for s in range(n + 1)], dtype=np.float64)

    values = np.empty(n)
    w1 = fact[size] * fact[np.clip(n - size - 1, 0, None)] / fact[n]
    for i in range(n):
        out = masks[(masks >> i) & 1 == 0]
        values[i] = np.sum(w1[out] * (v[out | (1 << i)] - v[out]))

    sii = np.zeros((n, n))
    if n >= 2:
        w2 = fact[size] * fact[np.clip(n - size - 2, 0, None)] / fact[n - 1]
        for i in range(n):
            for j in range(i + 1, n):
                out = masks[((masks >> i) & 1 == 0) & ((masks >> j) & 1 == 0)]
                bi, bj = 1 << i, 1 << j
                delta = v[out | bi | bj] - v[out | bi] - v[out | bj] + v[out]
                sii[i, j] = sii[j, i] = np.sum(w2[out] * delta)
    return values, sii, v


def all_level_vectors(n_players: int, n_levels: int) -> np.ndarray:
    """Every level vector of ``n_players`` players over ``n_levels`` levels:
    ``(n_levels^n_players, n_players)``; row ``r`` is ``r`` in base ``n_levels``, the
    last player the lowest digit."""
    r = np.arange(n_levels**n_players, dtype=np.int64)
    digits = n_levels ** np.arange(n_players - 1, -1, -1, dtype=np.int64)
    return (r[:, None] // digits % n_levels).astype(np.uint8)


def exact_ladder_values(game: Game) -> tuple[np.ndarray, np.ndarray]:
    """Exact Shapley values of every (player, step) of a game over ``S + 1`` levels.

    A ladder walk is a uniformly random order of the multiset in which every player
    appears ``S`` times; player ``i``'s ``k``-th occurrence raises its level from
    ``k - 1`` to ``k``. The value of step ``(i, k)`` is its expected change in value: the
    Shapley value of the game whose players are the steps, under the precedence
    constraint that a player's steps come in order. From the level vector ``x`` (with
    ``R = L·S - sum(x)`` steps left) the next step is player ``i``'s with probability
    ``(S - x_i) / R``, so the probability of passing through each ``x`` follows by
    dynamic programming over the level vectors, in order of ``sum(x)``.

    Returns:
        ``(values, v)``: values (L, S) with ``values[i, k - 1]`` the value of step
        ``(i, k)`` (all of them sum to ``v(all at level S) - v(all at level 0)``), and
        ``v`` the value of every level vector in :func:`all_level_vectors` order.

    Raises:
        ValueError: the game has more than :data:`MAX_EXACT_CONFIGURATIONS` level vectors.
    """
    n, levels = game.n_players, game.n_levels
    steps = levels - 1
    if levels**n > MAX_EXACT_CONFIGURATIONS:
        raise ValueError(
            f"exact ladder values enumerate {levels}^{n} level vectors; at most "
            f"{MAX_EXACT_CONFIGURATIONS} are allowed"
        )
    x = all_level_vectors(n, levels).astype(np.int64)
    v = game(x)
    digits = levels ** np.arange(n - 1, -1, -1, dtype=np.int64)
    height = x.sum(axis=1)
    reach = np.zeros(len(x))
    reach[0] = 1.0
    values = np.zeros((n, steps))
    for h in range(n * steps):
        rows = np.flatnonzero(height == h)
        left = n * steps - h
        for i in range(n):
            movable = rows[x[rows, i] < steps]
            nxt = movable + digits[i]
            p = reach[movable] * (steps - x[movable, i]) / left
            reach[nxt] += p
            np.add.at(values[i], x[movable, i], p * (v[nxt] - v[movable]))
    return values, v


class ExactEstimator:
    """Exact Shapley values and SII by enumerating all ``2^n`` coalitions."""

    name = "exact"

    def estimate(self, game: Game, budget: int, rng: np.random.Generator) -> Estimate:
        """Exact answers; ``budget`` must cover ``2^n`` evaluations (``rng`` is unused).

        Raises:
            ValueError: the budget is below ``2^n`` or the game is too large.
        """
        n = game.n_players
        if budget < 2**n:
            raise ValueError(f"exact enumeration of {n} players needs {2**n} evaluations")
        start = game.n_evaluations
        values, sii, _ = exact_values(game)
        return Estimate(
            values=values,
            values_se=np.zeros(n),
            interactions=sii,
            interactions_se=np.zeros((n, n)),
            n_evaluations=game.n_evaluations - start,
            meta={"estimator": self.name, "interaction_source": "shapley-interaction"},
        )
