"""Every solver on random multi-level programs, against enumeration; the two-level case is
the binary program of IMPQ."""

from __future__ import annotations

import numpy as np
import pytest

from impq.config import SolverConfig
from impq.estimate import LevelObjective
from impq.solve import BitProblem, get_solver
from impq.solve.anneal import AnnealSolver, problem_bqm
from impq.solve.exact import ExactSolver, brute_force_choice
from impq.solve.local import polish, repair
from impq.solve.synthetic import synthetic_level_objective

LADDERS = {3: (4, 3, 2), 4: (8, 4, 3, 2)}
ANNEAL = AnnealSolver(num_reads=16, num_sweeps=300, seed=0)
MILP = ExactSolver(brute_force_max=1, time_limit=30)


def _problem(n: int, levels: int, budget: float, seed: int, scale: float = 1.0) -> BitProblem:
    rng = np.random.default_rng(seed)
    objective = synthetic_level_objective(
        n, LADDERS[levels], block_params=rng.integers(1, 9, n) * 4096, scale=scale, seed=seed
    )
    return BitProblem.from_objective(objective, budget)


@pytest.mark.parametrize("levels", [3, 4])
@pytest.mark.parametrize("n", [5, 7])
def test_every_solver_against_enumeration(levels: int, n: int) -> None:
    lo, hi = LADDERS[levels][-1], LADDERS[levels][0]
    for seed, frac in enumerate((0.2, 0.5, 0.8)):
        p = _problem(n, levels, lo + frac * (hi - lo), seed=10 * n + seed)
        assert p.precisions == tuple(sorted(LADDERS[levels]))
        best = brute_force_choice(p)
        optimum = float(p.objective(best))
        for solver in (ANNEAL, MILP, get_solver("greedy")):
            sol = solver.solve(p)
            assert sol.stored_bytes <= p.budget_bytes
            assert set(sol.bits.values()) <= set(LADDERS[levels])
            assert sol.objective >= optimum - 1e-12
        assert ANNEAL.solve(p).objective == pytest.approx(optimum, rel=1e-9, abs=1e-12)
        milp = MILP.solve(p)
        assert milp.optimal and milp.objective == pytest.approx(optimum, rel=1e-9, abs=1e-12)


def test_objective_reads_the_ladder_levels_of_the_precisions() -> None:
    objective = synthetic_level_objective(4, (8, 4, 3, 2), seed=1)
    p = BitProblem.from_objective(objective, 4.0, precisions=[2, 4, 8])
    rng = np.random.default_rng(0)
    for choice in rng.integers(0, 3, (20, 4)):
        levels = np.array([(8, 4, 3, 2).index(p.precisions[c]) for c in choice])
        assert p.objective(choice) == pytest.approx(objective.predict(levels), abs=1e-14)
    assert p.objective(np.full(4, 2)) == 0.0  # all at the top


def test_bqm_energy_is_objective_plus_penalty_on_every_code() -> None:
    p = _problem(5, 4, 4.5, seed=2)
    bqm, enc, penalty = problem_bqm(p)
    unit = np.mean(np.diff(p.sizes, axis=1).min(axis=1))
    for choice in np.random.default_rng(0).integers(0, 4, (30, 5)):
        t = (np.arange(3)[None, :] < choice[:, None]).astype(int).ravel()
        assert (enc.decode(t[None, :]) == choice).all()
        slack = (p.stored_bytes(choice) - p.budget_bytes) / unit
        energy = bqm.energy({v: int(t[v]) for v in range(len(t))})
        assert energy == pytest.approx(p.objective(choice) + penalty * slack**2, rel=1e-9)


def test_repair_and_polish_on_many_levels() -> None:
    p = _problem(8, 4, 3.0, seed=3)
    fixed = repair(p, np.full(8, 3))
    assert p.feasible(fixed)
    better = polish(p, fixed)
    assert p.feasible(better) and p.objective(better) <= p.objective(fixed)
    # polish ends where no single or paired move improves: check every single move
    for i in range(8):
        for c in range(4):
            moved = better.copy()
            moved[i] = c
            if p.feasible(moved):
                assert p.objective(moved) >= p.objective(better) - 1e-12


@pytest.mark.parametrize("solver", ["anneal", "exact", "greedy"])
def test_budget_ends_on_a_ladder(solver: str) -> None:
    s = get_solver(solver, SolverConfig(num_reads=8, num_sweeps=200))
    p = _problem(6, 3, 2.0, seed=4, scale=0.0)  # every step down costs: the top is best
    assert set(s.solve(p).bits.values()) == {2}
    top = s.solve(p.with_budget(4.0))
    assert set(top.bits.values()) == {4} and top.stored_bytes == p.max_bytes


def test_two_level_objective_is_the_binary_program() -> None:
    rng = np.random.default_rng(5)
    phi, k = rng.random(6), rng.normal(size=(6, 6))
    objective = LevelObjective.from_two_level(phi, k, [640] * 6)
    ks = (k + k.T) / 2
    a = phi - (ks.sum(axis=1) - np.diag(ks))
    q = rng.integers(0, 2, (30, 6))
    np.testing.assert_allclose(
        objective.predict(q), q @ a + np.einsum("ni,ij,nj->n", q, ks, q), atol=1e-12
    )
    p = BitProblem.build(phi, k, [640] * 6, 3.0)
    np.testing.assert_array_equal(p.interactions, ks)
    np.testing.assert_allclose(p.linear, a, atol=1e-15)
    np.testing.assert_array_equal(p.phi, phi)
    # precisions off a two-level ladder extrapolate; off a longer one they are refused
    assert BitProblem.build(phi, k, [640] * 6, 3.0, precisions=(2, 3, 4, 8)).precisions == (
        2, 3, 4, 8,
    )  # fmt: skip
    three = synthetic_level_objective(6, (4, 3, 2), seed=0)
    with pytest.raises(ValueError, match=r"precisions \[8\] are not on the ladder \[4, 3, 2\]"):
        BitProblem.from_objective(three, 3.0, precisions=(2, 4, 8))
    with pytest.raises(ValueError, match="two-level form"):
        _ = BitProblem.from_objective(three, 3.0).interactions
