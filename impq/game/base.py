"""The game: a value function over boolean coalition matrices, with an evaluation count."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["Game", "check_coalitions"]


def check_coalitions(coalitions: np.ndarray, n_players: int) -> np.ndarray:
    """``coalitions`` as a boolean ``(n_coalitions, n_players)`` array.

    Raises:
        ValueError: the array does not have one column per player.
    """
    c = np.asarray(coalitions)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[1] != n_players:
        raise ValueError(
            f"coalitions must have shape (n, {n_players}) (one column per player), got {c.shape}"
        )
    return c.astype(bool, copy=False)


class Game(ABC):
    """A cooperative game over ``n_players`` players.

    A coalition is a row of booleans; ``True`` means the player is in the coalition (for
    the model game: the block is at low precision). Calling the game evaluates a batch of
    coalitions and adds the number of rows to :attr:`n_evaluations`, so estimators can be
    held to an evaluation budget.

    Attributes:
        n_players: number of players.
        n_evaluations: coalitions evaluated so far.
    """

    def __init__(self, n_players: int) -> None:
        if n_players < 1:
            raise ValueError(f"a game needs at least one player, got {n_players}")
        self.n_players = n_players
        self.n_evaluations = 0

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of each row of ``coalitions`` (n, n_players), as float64 of shape (n,)."""
        c = check_coalitions(coalitions, self.n_players)
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
        """Values of a validated boolean coalition matrix; one value per row."""

    def fingerprint(self) -> str:
        """A short string that changes whenever the game's values could change."""
        return type(self).__name__
