"""EvoPress selection stages on the model game: growing numbers of calibration sequences."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from impq.game.base import Game
from impq.game.model import ModelGame
from impq.search.evopress import Stage

__all__ = ["SubsetGame", "model_stages"]


class SubsetGame(Game):
    """The model game on ``n_chunks`` of its calibration chunks, drawn anew for every call.

    One call scores all its coalitions on the same draw, so the candidates of one
    selection are compared on the same data (EvoPress draws a minibatch per selection).
    """

    def __init__(self, game: ModelGame, n_chunks: int, rng: np.random.Generator) -> None:
        if not 0 < n_chunks <= game.n_chunks:
            raise ValueError(f"n_chunks must be in [1, {game.n_chunks}], got {n_chunks}")
        super().__init__(game.n_players, game.n_levels)
        self.game, self.n_chunks, self.rng = game, n_chunks, rng

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        chunks = np.sort(self.rng.choice(self.game.n_chunks, self.n_chunks, replace=False))
        return self.game.subset_values(coalitions, chunks.tolist())

    def fingerprint(self) -> str:
        return f"{self.game.fingerprint()}/{self.n_chunks}"


def model_stages(
    game: ModelGame,
    survivors: Sequence[int],
    sequences: Sequence[int | None],
    rng: np.random.Generator,
) -> list[Stage]:
    """One :class:`Stage` per entry: ``sequences[k]`` random chunks (None: all of them,
    the game itself) keeping ``survivors[k]``.

    Raises:
        ValueError: the lists differ in length, or a stage asks for more chunks than the
            game has.
    """
    if len(survivors) != len(sequences):
        raise ValueError(f"survivors {list(survivors)} and sequences {list(sequences)} differ")
    per_chunk = game.chunk_tokens(range(game.n_chunks)) // game.n_chunks
    stages = []
    for keep, n in zip(survivors, sequences, strict=True):
        if n is None or n == game.n_chunks:
            stages.append(Stage(game, keep, per_chunk * game.n_chunks))
        elif n > game.n_chunks:
            raise ValueError(f"a stage asks for {n} sequences; the game has {game.n_chunks}")
        else:
            stages.append(Stage(SubsetGame(game, n, rng), keep, per_chunk * n))
    return stages
