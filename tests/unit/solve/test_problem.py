"""The program: budgets in exact integers, levels, objective, input errors."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from impq.footprint import budget_bytes, quantized_bytes
from impq.solve import BitProblem, degradation_level, problem_from_shapley
from impq.solve.synthetic import synthetic_shapley


def test_budget_ends_are_exact() -> None:
    params = [1000, 3000, 7777]
    low = sum(quantized_bytes(n, 2, 64) for n in params)
    high = sum(quantized_bytes(n, 4, 64) for n in params)
    p2 = BitProblem.build(np.ones(3), np.zeros((3, 3)), params, 2.0)
    p4 = BitProblem.build(np.ones(3), np.zeros((3, 3)), params, 4.0)
    assert (p2.budget_bytes, p4.budget_bytes) == (low, high)
    assert (p2.min_bytes, p2.max_bytes) == (low, high)
    # 3.1 is not exact in binary floating point; the budget is floor of the decimal value
    p31 = BitProblem.build(np.ones(3), np.zeros((3, 3)), params, 3.1)
    assert p31.budget_bytes == low + (high - low) * 11 // 20


def test_budget_outside_range_says_the_range() -> None:
    for bad in (1.99, 4.01, float("nan")):
        with pytest.raises(ValueError, match=r"feasible range is \[2, 4\]"):
            BitProblem.build(np.ones(2), np.zeros((2, 2)), [64, 64], bad)
    with pytest.raises(ValueError, match=r"choose a budget in \[\d+, \d+\] bytes"):
        replace(BitProblem.build(np.ones(2), np.zeros((2, 2)), [64, 64], 3.0), budget_bytes=10)
    p = BitProblem.build(np.ones(2), np.zeros((2, 2)), [64, 64], 8.0, precisions=[2, 4, 8])
    assert p.budget_bytes == p.max_bytes


def test_shape_and_nan_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"K has shape \(2, 3\), expected \(3, 3\)"):
        BitProblem.build(np.ones(3), np.zeros((2, 3)), [64] * 3, 3.0)
    with pytest.raises(ValueError, match=r"block_params has shape \(2,\), expected \(3,\)"):
        BitProblem.build(np.ones(3), np.zeros((3, 3)), [64] * 2, 3.0)
    phi = np.ones(4)
    phi[2] = np.nan
    with pytest.raises(ValueError, match=r"phi .* blocks \[2\]"):
        BitProblem.build(phi, np.zeros((4, 4)), [64] * 4, 3.0)
    k = np.zeros((4, 4))
    k[1, 3] = np.inf
    with pytest.raises(ValueError, match=r"K hold NaN or infinite entries for blocks \[1, 3\]"):
        BitProblem.build(np.ones(4), k, [64] * 4, 3.0)


def test_levels_and_objective() -> None:
    assert degradation_level(2) == 1.0 and degradation_level(4) == 0.0
    assert 0 < degradation_level(3) < 1 and -1 < degradation_level(8) < 0
    rng = np.random.default_rng(0)
    phi = rng.random(5)
    k = rng.normal(size=(5, 5))
    p = BitProblem.build(phi, k, [640] * 5, 3.0)
    ks = (k + k.T) / 2
    a = phi - (ks.sum(axis=1) - np.diag(ks))
    for z in rng.integers(0, 2, (10, 5)):
        q = 1.0 - z  # choice 0 = 2 bits = q 1
        assert p.objective(z) == pytest.approx(a @ q + q @ ks @ q)
    assert p.objective(np.ones(5, dtype=int)) == 0.0


def test_nan_in_k_is_reported_naming_the_blocks() -> None:
    r = synthetic_shapley(5, seed=0)
    r.interactions[1, 4] = r.interactions[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"blocks \[1, 4\]"):
        problem_from_shapley(r, 3.0)


def test_few_permutations_warn(caplog: pytest.LogCaptureFixture) -> None:
    r = synthetic_shapley(8, permutations=5, seed=1)
    with caplog.at_level(logging.WARNING):
        problem_from_shapley(r, 3.0)
    assert "5 permutations for 8 blocks" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        problem_from_shapley(synthetic_shapley(8, permutations=20, seed=1), 3.0)
    assert "permutations" not in caplog.text


def test_a_budget_is_the_uniform_models_bytes_between_neighbouring_precisions() -> None:
    bent = {2: 100, 3: 171, 4: 200, 8: 400}  # HQQ-like: 3-bit words cost more than 3 bits
    assert [budget_bytes(b, bent) for b in (2.0, 3.0, 4.0, 8.0)] == [100, 171, 200, 400]
    assert budget_bytes(2.5, bent) == 135  # floor of 135.5, between 2 and 3 bits
    assert budget_bytes(3.5, bent) == 185  # floor of 185.5, between 3 and 4 bits
    assert budget_bytes(6.0, bent) == 300
    straight = {2: 100, 4: 200, 3: 150}
    for bits in (2.25, 2.5, 3.1, 3.75):
        assert budget_bytes(bits, straight) == budget_bytes(bits, {2: 100, 4: 200})
    with pytest.raises(ValueError, match="at least two precisions"):
        budget_bytes(3.0, {3: 10})
    with pytest.raises(ValueError, match=r"feasible range is \[2, 8\] bits, i.e. 100 to 400"):
        budget_bytes(8.5, bent)
