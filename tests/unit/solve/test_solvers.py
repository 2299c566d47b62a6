"""Solvers against enumeration: optimality, feasibility, budget edges, many precisions."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from impq.config import SolverConfig
from impq.solve import BitProblem, get_solver, solve_budgets
from impq.solve.anneal import AnnealSolver, Encoding, problem_bqm
from impq.solve.exact import ExactSolver, brute_force_choice
from impq.solve.local import polish, repair

ANNEAL = AnnealSolver(num_reads=16, num_sweeps=300, seed=0)
MakeProblem = Callable[..., BitProblem]
MILP = ExactSolver(brute_force_max=1, time_limit=30)


@pytest.mark.parametrize("n", [6, 11, 16])
@pytest.mark.parametrize("budget", [2.3, 3.0, 3.7])
def test_anneal_matches_enumeration(n: int, budget: float, make_problem: MakeProblem) -> None:
    for seed in range(2):
        p = make_problem(n, budget, seed=100 * n + seed)
        best = brute_force_choice(p)
        sol = ANNEAL.solve(p)
        assert sol.stored_bytes <= p.budget_bytes
        assert sol.objective == pytest.approx(p.objective(best), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n", [5, 12])
def test_milp_matches_enumeration(n: int, make_problem: MakeProblem) -> None:
    for budget in (2.5, 3.2):
        p = make_problem(n, budget, seed=n)
        sol = MILP.solve(p)
        assert sol.info["method"] == "milp-highs" and sol.optimal
        assert sol.stored_bytes <= p.budget_bytes
        assert sol.objective == pytest.approx(p.objective(brute_force_choice(p)), abs=1e-9)
        assert sol.bound is not None and sol.bound <= sol.objective + 1e-9


@pytest.mark.parametrize("solver", ["anneal", "exact", "greedy"])
def test_budget_ends(solver: str, make_problem: MakeProblem) -> None:
    s = get_solver(solver, SolverConfig(num_reads=8, num_sweeps=200))
    p = make_problem(10, 2.0, seed=3)
    assert set(s.solve(p).bits.values()) == {2}
    top = s.solve(p.with_budget(4.0))
    assert set(top.bits.values()) == {4} and top.stored_bytes == p.max_bytes


def test_budget_on_a_block_boundary(make_problem: MakeProblem) -> None:
    p = make_problem(12, 3.0, seed=5, equal_sizes=True)
    assert (p.budget_bytes - p.min_bytes) * 2 == p.max_bytes - p.min_bytes
    for solver in (ANNEAL, MILP, get_solver("greedy")):
        sol = solver.solve(p)
        assert sum(b == 4 for b in sol.bits.values()) == 6
        assert sol.stored_bytes == p.budget_bytes
    # uneven sizes: a budget that fits raising block 2 to the byte, then one byte less
    phi, k = np.array([0.01, 0.01, 1.0, 0.5]), np.zeros((4, 4))
    sizes = np.array([1, 2, 5, 7]) * 4096
    base = BitProblem.build(phi, k, sizes, 2.0)
    exact_fit = base.min_bytes + int(base.sizes[2, 1] - base.sizes[2, 0])
    for solver in (ANNEAL, MILP, get_solver("greedy")):
        fit = solver.solve(replace(base, budget_bytes=exact_fit))
        assert fit.bits == {0: 2, 1: 2, 2: 4, 3: 2} and fit.stored_bytes == exact_fit
        short = solver.solve(replace(base, budget_bytes=exact_fit - 1))
        assert short.bits[2] == 2 and short.stored_bytes <= exact_fit - 1


@pytest.mark.parametrize("budget", [2.4, 3.0, 4.5, 7.0])
def test_many_precisions_respect_the_budget(budget: float, make_problem: MakeProblem) -> None:
    p = make_problem(7, budget, seed=9, precisions=(2, 3, 4, 8))
    best = brute_force_choice(p)  # 4^7 assignments
    for solver in (ANNEAL, MILP, get_solver("greedy")):
        sol = solver.solve(p)
        assert sol.stored_bytes <= p.budget_bytes
        assert set(sol.bits.values()) <= {2, 3, 4, 8}
        assert sol.objective >= p.objective(best) - 1e-12
    assert ANNEAL.solve(p).objective == pytest.approx(p.objective(best))
    assert MILP.solve(p).objective == pytest.approx(p.objective(best))


def test_bqm_energy_is_objective_plus_penalty(make_problem: MakeProblem) -> None:
    p = make_problem(5, 3.0, seed=1, precisions=(2, 3, 4))
    bqm, enc, penalty = problem_bqm(p)
    rng = np.random.default_rng(0)
    for choice in rng.integers(0, 3, (20, 5)):
        t = (np.arange(2)[None, :] < choice[:, None]).astype(int).ravel()
        assert (enc.decode(t[None, :]) == choice).all()
        unit = np.mean(np.diff(p.sizes, axis=1).min(axis=1))
        slack = (p.stored_bytes(choice) - p.budget_bytes) / unit
        energy = bqm.energy({v: int(t[v]) for v in range(len(t))})
        assert energy == pytest.approx(p.objective(choice) + penalty * slack**2)
    assert isinstance(enc, Encoding)


def test_repair_and_polish_stay_feasible(make_problem: MakeProblem) -> None:
    p = make_problem(14, 2.6, seed=4, precisions=(2, 3, 4))
    top = np.full(14, 2)
    fixed = repair(p, top)
    assert p.feasible(fixed)
    better = polish(p, fixed)
    assert p.feasible(better) and p.objective(better) <= p.objective(fixed)
    with pytest.raises(ValueError, match="feasible starting point"):
        polish(p, top)


def test_front_over_budgets_is_monotone_and_reproducible(make_problem: MakeProblem) -> None:
    p = make_problem(12, 3.0, seed=8)
    budgets = [2.0, 2.5, 3.0, 3.5, 4.0]
    front = solve_budgets(p, budgets, ANNEAL)
    assert list(front) == budgets
    values = [front[b].objective for b in budgets]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(values))
    assert all(front[b].stored_bytes <= p.with_budget(b).budget_bytes for b in budgets)
    again = solve_budgets(p, budgets, ANNEAL)
    assert all(again[b].bits == front[b].bits for b in budgets)


def test_unknown_solver_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown solver 'sa'.*\['anneal', 'exact', 'greedy'\]"):
        get_solver("sa")
