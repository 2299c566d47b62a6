"""greedy_assignment: the knapsack-by-score rule shared with the baselines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from impq.solve import BitProblem, greedy_assignment


def _problem(sizes: list[int], budget_bytes: int | None = None, **kw: Any) -> BitProblem:
    n = len(sizes)
    p = BitProblem.build(np.zeros(n), np.zeros((n, n)), np.array(sizes) * 4096, 2.0, **kw)
    if budget_bytes is None:
        return p
    return replace(p, budget_bytes=budget_bytes)


def test_most_important_blocks_get_the_bits() -> None:
    p = _problem([1, 1, 1, 1, 1, 1])
    p = p.with_budget(3.0)
    bits = greedy_assignment(np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.7]), p)
    assert bits == {0: 2, 1: 4, 2: 2, 3: 4, 4: 2, 5: 4}


def test_a_block_that_does_not_fit_is_skipped() -> None:
    base = _problem([4, 1, 1])
    one = int(base.sizes[1, 1] - base.sizes[1, 0])
    p = _problem([4, 1, 1], budget_bytes=base.min_bytes + 2 * one)
    bits = greedy_assignment(np.array([3.0, 2.0, 1.0]), p)
    assert bits == {0: 2, 1: 4, 2: 4}
    assert p.feasible(p.choice(bits))


def test_ties_go_to_the_lower_block_and_many_precisions_take_the_highest_fit() -> None:
    p = _problem([1, 1, 1]).with_budget(3.0)
    assert greedy_assignment(np.ones(3), p) == {0: 4, 1: 2, 2: 2}
    q = _problem([1, 1, 1], precisions=[2, 3, 4, 8]).with_budget(4.0)
    bits = greedy_assignment(np.array([1.0, 3.0, 2.0]), q)
    assert bits[1] == 8 and q.feasible(q.choice(bits))
    assert bits[0] <= bits[2] <= bits[1]


def test_bad_scores() -> None:
    p = _problem([1, 1, 1])
    with pytest.raises(ValueError, match=r"scores has shape \(2,\), expected \(3,\)"):
        greedy_assignment(np.ones(2), p)
    with pytest.raises(ValueError, match=r"blocks \[1\]"):
        greedy_assignment(np.array([1.0, np.nan, 0.0]), p)
