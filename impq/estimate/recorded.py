"""Reusing evaluated configurations: a game that answers recorded values and asks for the rest.

Prefix walks and SII walks of the same run seed walk the same permutations, and SII walks
evaluate every prefix: topping a prefix run up to SII walks needs only the ``S ∪ {b}``
coalitions, ``M·(L - 1)`` evaluations instead of ``2 + 2M·(L - 1)``. Wrap the game in a
:class:`RecordedGame` holding the earlier run's coalitions (:func:`recorded_coalitions`)
and sample as usual: the samples are those of a fresh run, evaluated at half the cost.
"""

from __future__ import annotations

import numpy as np

from impq.estimate.permutation import walks_from_samples
from impq.game.base import Game, check_coalitions

__all__ = ["RecordedGame", "recorded_coalitions"]


def recorded_coalitions(samples: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every configuration raw samples (either walk kind) evaluated, and its raw value.

    Values are as the game returned them (NaN/inf included): capping is the assembly's.

    Raises:
        ValueError: the walks are neither prefix nor SII walks.
    """
    walks = walks_from_samples(samples)
    n, top = walks.n_players, np.zeros((1, walks.n_players), dtype=np.uint8)
    ends = np.concatenate([top, top + walks.n_steps]).astype(walks.coalitions.dtype)
    rows = np.concatenate([ends, walks.coalitions.reshape(-1, n)])
    return rows, np.concatenate([samples["endpoints"], samples["walks"].ravel()])


class RecordedGame(Game):
    """``game``, except that coalitions with a recorded value are answered from memory.

    A coalition ``game`` evaluates is recorded too, so each is evaluated at most once.

    Attributes:
        n_recorded_answers: rows answered from the record (not evaluated by ``game``).
    """

    def __init__(self, game: Game, coalitions: np.ndarray, values: np.ndarray) -> None:
        super().__init__(game.n_players, game.n_levels)
        rows = np.asarray(coalitions)
        if rows.ndim != 2 or rows.shape[1] != game.n_players or len(rows) != len(values):
            raise ValueError(
                f"recorded coalitions {rows.shape} and values {np.shape(values)} do not fit "
                f"a game of {game.n_players} players"
            )
        rows = check_coalitions(rows, game.n_players, game.n_levels)
        self.game = game
        self._record = {
            k: float(v) for k, v in zip(self._keys(rows), np.asarray(values), strict=True)
        }
        self.n_recorded_answers = 0

    @staticmethod
    def _keys(rows: np.ndarray) -> list[bytes]:
        """One key per row: its levels as bytes."""
        return [r.tobytes() for r in np.asarray(rows, dtype=np.uint8)]

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        keys = self._keys(coalitions)
        missing = {k: i for i, k in enumerate(keys) if k not in self._record}
        if missing:
            rows = list(missing.values())
            for k, v in zip(missing, self.game(coalitions[rows]), strict=True):
                self._record[k] = float(v)
        self.n_recorded_answers += len(keys) - len(missing)
        return np.array([self._record[k] for k in keys])

    def fingerprint(self) -> str:
        return self.game.fingerprint()
