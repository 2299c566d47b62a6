"""The game: a value function over configuration matrices, with an evaluation count.

A configuration gives every player a level ``0..n_levels - 1``. With two levels (the
paper's game) it is a coalition: level 1 (``True``) means the player is in it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["Game", "check_coalitions"]


def check_coalitions(coalitions: np.ndarray, n_players: int, n_levels: int = 2) -> np.ndarray:
    """``coalitions`` as an ``(n, n_players)`` matrix of levels in ``0..n_levels - 1``.

    Boolean or integer rows are accepted (a float array only with whole values). The
    result is boolean for two levels (a coalition matrix) and ``uint8`` otherwise.

    Raises:
        ValueError: the array does not have one column per player, or holds a value that
            is not a level of the game.
    """
    c = np.asarray(coalitions)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[1] != n_players:
        raise ValueError(
            f"coalitions must have shape (n, {n_players}) (one column per player), got {c.shape}"
        )
    if c.dtype != bool:
        bad = c[(c < 0) | (c > n_levels - 1) | (c != np.round(c))]  # NaN is never a level
        if bad.size:
            raise ValueError(
                f"coalitions hold the value {bad.flat[0].item()!r}, which is not a level of this game "
                f"(whole numbers 0..{n_levels - 1}: 0 is the top precision)"
            )
    if n_levels == 2:
        return c.astype(bool, copy=False)
    return c.astype(np.uint8, copy=False)


class Game(ABC):
    """A cooperative game over ``n_players`` players, each at one of ``n_levels`` levels.

    With two levels a configuration is a coalition, a row of booleans; ``True`` means
    the player is in the coalition (for the model game: the block is at low precision).
    With more (a ladder of precisions) a row holds each player's level, 0 the top.
    Calling the game evaluates a batch of rows and adds their number to
    :attr:`n_evaluations`, so estimators can be held to an evaluation budget.

    Attributes:
        n_players: number of players.
        n_levels: levels a player can take (2: out of or in the coalition).
        n_evaluations: configurations evaluated so far.
    """

    def __init__(self, n_players: int, n_levels: int = 2) -> None:
        if n_players < 1:
            raise ValueError(f"a game needs at least one player, got {n_players}")
        if not 2 <= n_levels <= 256:
            raise ValueError(f"a game needs 2 to 256 levels, got {n_levels}")
        self.n_players = n_players
        self.n_levels = n_levels
        self.n_evaluations = 0

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of each row of ``coalitions`` (n, n_players), as float64 of shape (n,)."""
        c = check_coalitions(coalitions, self.n_players, self.n_levels)
        values = np.asarray(self.value_function(c), dtype=np.float64)
        if values.shape != (len(c),):
            raise RuntimeError(
                f"{type(self).__name__}.value_function returned shape {values.shape} "
                f"for {len(c)} coalitions"
            )
        self.n_evaluations += len(c)
        return values

    @abstractmethod
    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of a validated configuration matrix (boolean for two levels, ``uint8``
        levels otherwise); one value per row."""

    def fingerprint(self) -> str:
        """A short string that changes whenever the game's values could change."""
        return type(self).__name__
