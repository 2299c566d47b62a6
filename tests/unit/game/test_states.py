"""The state cache: what it keeps when full, measured on replayed SPQE walks."""

from __future__ import annotations

import numpy as np
import torch

from impq.estimate import PermutationSampling
from impq.estimate.permutation import seeded_permutations
from impq.game.states import StateCache


def _replay(n_blocks: int, permutations: int, capacity: int) -> float:
    """Blocks recomputed per evaluation of an SPQE run with this cache (no model)."""
    cache = StateCache(n_blocks, capacity)
    configs = [np.zeros(n_blocks, bool), np.ones(n_blocks, bool)]
    for perm in seeded_permutations(0, range(permutations), n_blocks):
        configs += list(PermutationSampling().coalitions(perm))
    blocks = 0
    for config in configs:
        first, _ = cache.deepest(config)
        blocks += n_blocks - first
        cache.store(config, first, {d: [torch.empty(0)] for d in range(first + 1, n_blocks)})
        assert len(cache) <= cache.capacity
        # the chain of the last configuration is whole: the next step restarts anywhere
        assert cache.deepest(config)[0] == n_blocks - 1
    return blocks / len(configs)


def test_a_walk_over_30_blocks_does_not_thrash() -> None:
    # a plain LRU recomputes 17.5 blocks with one chain's room and 16.3 with three's
    assert _replay(30, 20, capacity=30) < 16.3
    assert _replay(30, 20, capacity=90) < 15.3


def test_states_near_a_uniform_prefix_outlive_mixed_ones() -> None:
    cache = StateCache(4, capacity=5)
    uniform = np.array([True, True, True, False])
    mixed = np.array([True, False, True, False])
    cache.store(uniform, 0, {1: [torch.zeros(1)], 2: [torch.zeros(1)], 3: [torch.zeros(1)]})
    cache.store(mixed, 1, {2: [torch.ones(1)], 3: [torch.ones(1)]})
    last = np.array([False, False, False, True])
    cache.store(last, 0, {1: [torch.zeros(1)], 2: [torch.zeros(1)], 3: [torch.zeros(1)]})
    assert len(cache) == 5
    assert cache.deepest(uniform)[0] == 3  # older, but uniform: kept
    assert cache.deepest(mixed)[0] == 1  # (2, 10) and (3, 101) evicted first
    assert cache.deepest(last)[0] == 3  # the last chain is whole
