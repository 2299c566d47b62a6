"""Synthetic games with known Shapley values and interactions, for testing estimators."""

from __future__ import annotations

import itertools

import numpy as np

from impq.artifacts import fingerprint
from impq.game.base import Game

__all__ = ["AdditiveGame", "LevelGame", "QuadraticGame", "RandomGame", "TableGame"]


class QuadraticGame(Game):
    """``v(S) = c + sum_{i in S} b_i + sum_{i<j in S} Q_ij``: pairwise-quadratic.

    Its Shapley values are ``b_i + 0.5 * sum_j Q_ij`` and its pairwise Shapley
    interaction index is ``Q_ij`` exactly.
    """

    def __init__(
        self, linear: np.ndarray, pairwise: np.ndarray | None = None, constant: float = 0.0
    ) -> None:
        linear = np.asarray(linear, dtype=np.float64)
        super().__init__(len(linear))
        n = self.n_players
        q = np.zeros((n, n)) if pairwise is None else np.asarray(pairwise, dtype=np.float64)
        if q.shape != (n, n):
            raise ValueError(f"pairwise must have shape ({n}, {n}), got {q.shape}")
        q = (q + q.T) / 2
        np.fill_diagonal(q, 0.0)
        self.linear, self.pairwise, self.constant = linear, q, float(constant)

    @classmethod
    def random(cls, n_players: int, rng: np.random.Generator, scale: float = 0.3) -> QuadraticGame:
        """Positive linear terms and pairwise terms of size ``scale``, drawn from ``rng``."""
        linear = rng.gamma(2.0, 1.0, size=n_players)
        pairwise = rng.normal(0.0, scale, size=(n_players, n_players))
        return cls(linear, pairwise)

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        x = coalitions.astype(np.float64)
        return self.constant + x @ self.linear + 0.5 * np.einsum("ni,ij,nj->n", x, self.pairwise, x)

    def shapley_values(self) -> np.ndarray:
        """The exact Shapley values."""
        return self.linear + 0.5 * self.pairwise.sum(axis=1)

    def interaction_index(self) -> np.ndarray:
        """The exact pairwise Shapley interaction index (zero diagonal)."""
        return self.pairwise.copy()

    def fingerprint(self) -> str:
        return fingerprint(
            type(self).__name__, self.linear.tobytes(), self.pairwise.tobytes(), str(self.constant)
        )


class AdditiveGame(QuadraticGame):
    """``v(S) = c + sum_{i in S} w_i``: Shapley values ``w``, no interactions."""

    def __init__(self, weights: np.ndarray, constant: float = 0.0) -> None:
        super().__init__(weights, None, constant)


class TableGame(Game):
    """A game given by its value on every coalition (``n_players`` ≤ 20).

    ``table[m]`` is the value of the coalition whose bitmask is ``m`` (player ``i`` is
    bit ``i``, as in :func:`impq.estimate.exact_values`).
    """

    def __init__(self, table: np.ndarray) -> None:
        table = np.asarray(table, dtype=np.float64)
        n_players = int(np.log2(len(table)))
        if table.ndim != 1 or len(table) != 2**n_players:
            raise ValueError(f"table must hold 2^n values, got shape {table.shape}")
        if n_players > 20:
            raise ValueError(f"a table game holds 2^n values; n_players={n_players} > 20")
        super().__init__(n_players)
        self.table = table
        self._bits = 1 << np.arange(n_players)

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        return self.table[coalitions.astype(np.int64) @ self._bits]

    def fingerprint(self) -> str:
        return fingerprint(type(self).__name__, self.table.tobytes())


class RandomGame(TableGame):
    """A table of independent random values, one per coalition (``n_players`` ≤ 20).

    Exact answers come from enumeration (:func:`impq.estimate.exact_values`).
    """

    def __init__(self, n_players: int, rng: np.random.Generator) -> None:
        if n_players > 20:
            raise ValueError(f"RandomGame holds 2^n values; n_players={n_players} > 20")
        table = rng.normal(size=2**n_players)
        table[0] = 0.0
        super().__init__(table)


class LevelGame(Game):
    """A game over levels ``0..S`` with terms of order one, two and (optionally) three.

    ``v(x) = c + sum_i cost[i, x_i] + sum_{i<j} pair[i, x_i, j, x_j]
    + sum_{i<j<k} triple[i, x_i, j, x_j, k, x_k]``: every term is zero where a level is 0
    (the top) or a player repeats, so ``v(0) = c``. Values are computed exactly, so its
    ladder Shapley values come from :func:`impq.estimate.exact_ladder_values` and its
    pairwise part is what an interaction model over levels should recover.

    Args:
        cost: (L, S+1) effect of each player alone at each level.
        pair: (L, S+1, L, S+1) pairwise terms, made symmetric.
        triple: (L, S+1, L, S+1, L, S+1) third-order terms, or None; made symmetric.
        constant: ``v`` of the all-top configuration.
    """

    def __init__(
        self,
        cost: np.ndarray,
        pair: np.ndarray | None = None,
        triple: np.ndarray | None = None,
        constant: float = 0.0,
    ) -> None:
        cost = np.array(cost, dtype=np.float64)
        if cost.ndim != 2 or cost.shape[1] < 2:
            raise ValueError(f"cost must have shape (L, S+1) with S >= 1, got {cost.shape}")
        n, s1 = cost.shape
        super().__init__(n, s1)
        cost[:, 0] = 0.0
        players = np.arange(n)
        shape2 = (n, s1, n, s1)
        p = np.zeros(shape2) if pair is None else np.asarray(pair, dtype=np.float64)
        if p.shape != shape2:
            raise ValueError(f"pair must have shape {shape2}, got {p.shape}")
        p = (p + p.transpose(2, 3, 0, 1)) / 2
        p[:, 0], p[:, :, :, 0] = 0.0, 0.0
        p[players, :, players, :] = 0.0
        t = None
        if triple is not None:
            t = np.asarray(triple, dtype=np.float64)
            if t.shape != (n, s1) * 3:
                raise ValueError(f"triple must have shape {(n, s1) * 3}, got {t.shape}")
            t = np.mean(
                [
                    t.transpose(*(a for axis in order for a in (2 * axis, 2 * axis + 1)))
                    for order in itertools.permutations(range(3))
                ],
                axis=0,
            )
            t[:, 0], t[:, :, :, 0], t[:, :, :, :, :, 0] = 0.0, 0.0, 0.0
            distinct = (
                (players[:, None, None] != players[None, :, None])
                & (players[:, None, None] != players[None, None, :])
                & (players[None, :, None] != players[None, None, :])
            )
            t *= distinct[:, None, :, None, :, None]
        self.cost, self.pair, self.triple, self.constant = cost, p, t, float(constant)

    @classmethod
    def random(
        cls,
        n_players: int,
        n_levels: int,
        rng: np.random.Generator,
        scale: float = 0.3,
        third_order: float = 0.0,
    ) -> LevelGame:
        """Costs that grow with the level (positive steps), pairwise terms of size
        ``scale`` and third-order terms of size ``third_order`` (none when 0)."""
        steps = rng.gamma(2.0, 1.0, size=(n_players, n_levels - 1))
        cost = np.concatenate([np.zeros((n_players, 1)), np.cumsum(steps, axis=1)], axis=1)
        shape = (n_players, n_levels)
        pair = rng.normal(0.0, scale, size=shape * 2)
        triple = rng.normal(0.0, third_order, size=shape * 3) if third_order else None
        return cls(cost, pair, triple)

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        x = coalitions.astype(np.intp)
        players = np.arange(self.n_players)
        out = self.constant + self.cost[players, x].sum(axis=1)
        pairs = self.pair[players[:, None], x[:, :, None], players[None, :], x[:, None, :]]
        out += pairs.sum(axis=(1, 2)) / 2
        if self.triple is not None:
            i, j, k = players[:, None, None], players[None, :, None], players[None, None, :]
            terms = self.triple[
                i, x[:, :, None, None], j, x[:, None, :, None], k, x[:, None, None, :]
            ]
            out += terms.sum(axis=(1, 2, 3)) / 6
        return out

    def fingerprint(self) -> str:
        parts: list[bytes | str] = [self.cost.tobytes(), self.pair.tobytes(), str(self.constant)]
        if self.triple is not None:
            parts.append(self.triple.tobytes())
        return fingerprint(type(self).__name__, *parts)
