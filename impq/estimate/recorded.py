"""Reusing evaluated coalitions: a game that answers recorded values and asks for the rest.

Prefix walks and SII walks of the same run seed walk the same permutations, and SII walks
evaluate every prefix: topping a prefix run up to SII walks needs only the ``S ∪ {b}``
coalitions, ``M·(L - 1)`` evaluations instead of ``2 + 2M·(L - 1)``. Wrap the game in a
:class:`RecordedGame` holding the earlier run's coalitions (:func:`recorded_coalitions`)
and sample as usual: the samples are those of a fresh run, evaluated at half the cost.
"""

from __future__ import annotations

import numpy as np

from impq.estimate.permutation import WALK_SAMPLERS
from impq.game.base import Game

__all__ = ["RecordedGame", "recorded_coalitions"]


def recorded_coalitions(samples: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every coalition raw samples (either walk kind) evaluated, and its raw value.

    Values are as the game returned them (NaN/inf included): capping is the assembly's.

    Raises:
        ValueError: the walks are neither prefix nor SII walks.
    """
    perms, steps = samples["permutations"], samples["walks"]
    n = perms.shape[1]
    for cls in WALK_SAMPLERS.values():
        sampler = cls()
        if sampler.evaluations_per_permutation(n) == steps.shape[1]:
            ends = np.array([np.zeros(n, dtype=bool), np.ones(n, dtype=bool)])
            rows = [ends, *(sampler.coalitions(p) for p in perms)]
            return np.concatenate(rows), np.concatenate([samples["endpoints"], steps.ravel()])
    raise ValueError(f"walks of {steps.shape[1]} steps for {n} players are of no known kind")


class RecordedGame(Game):
    """``game``, except that coalitions with a recorded value are answered from memory.

    A coalition ``game`` evaluates is recorded too, so each is evaluated at most once.

    Attributes:
        n_recorded_answers: rows answered from the record (not evaluated by ``game``).
    """

    def __init__(self, game: Game, coalitions: np.ndarray, values: np.ndarray) -> None:
        super().__init__(game.n_players)
        rows = np.asarray(coalitions, dtype=bool)
        if rows.shape[1:] != (game.n_players,) or len(rows) != len(values):
            raise ValueError(
                f"recorded coalitions {rows.shape} and values {np.shape(values)} do not fit "
                f"a game of {game.n_players} players"
            )
        self.game = game
        self._record = {
            r.tobytes(): float(v) for r, v in zip(np.packbits(rows, axis=1), values, strict=True)
        }
        self.n_recorded_answers = 0

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        keys = [r.tobytes() for r in np.packbits(coalitions, axis=1)]
        missing = {k: i for i, k in enumerate(keys) if k not in self._record}
        if missing:
            rows = list(missing.values())
            for k, v in zip(missing, self.game(coalitions[rows]), strict=True):
                self._record[k] = float(v)
        self.n_recorded_answers += len(keys) - len(missing)
        return np.array([self._record[k] for k in keys])

    def fingerprint(self) -> str:
        return self.game.fingerprint()
