"""Synthetic games with known Shapley values and interactions, for testing estimators."""

from __future__ import annotations

import numpy as np

from impq.artifacts import fingerprint
from impq.game.base import Game

__all__ = ["AdditiveGame", "QuadraticGame", "RandomGame", "TableGame"]


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
