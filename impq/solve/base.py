"""The solver protocol, its result and its registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from impq.registry import lookup
from impq.solve.problem import BitProblem

if TYPE_CHECKING:
    from impq.config import SolverConfig

__all__ = ["SOLVERS", "Solution", "Solver", "get_solver", "make_solution", "solve_budgets"]


@dataclass(frozen=True)
class Solution:
    """A feasible assignment returned by a solver.

    Attributes:
        choice: (L,) index into ``problem.precisions`` per block.
        bits: block index -> bits.
        objective: predicted loss increase (:meth:`BitProblem.objective`).
        stored_bytes: bytes of the blocks under the footprint model (<= the budget).
        avg_bits: parameter-weighted average bits.
        solver: name of the solver that found it.
        seconds: wall time of the solve.
        optimal: True when the solver proved optimality.
        bound: a proven lower bound on the optimum, when the solver has one.
        info: solver-specific facts (reads, sweeps, penalty, MIP gap, ...).
    """

    choice: np.ndarray
    bits: dict[int, int]
    objective: float
    stored_bytes: int
    avg_bits: float
    solver: str
    seconds: float
    optimal: bool = False
    bound: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def gap_to(self, reference: Solution) -> float:
        """Relative gap ``(self - reference) / |reference|`` of the objectives."""
        diff = self.objective - reference.objective
        scale = abs(reference.objective)
        return diff / scale if scale > 0 else (0.0 if diff == 0 else float(np.sign(diff)) * np.inf)


def make_solution(
    problem: BitProblem,
    choice: np.ndarray,
    solver: str,
    seconds: float,
    *,
    optimal: bool = False,
    bound: float | None = None,
    info: dict[str, Any] | None = None,
) -> Solution:
    """Wrap a choice vector as a :class:`Solution`, refusing one over budget."""
    choice = np.asarray(choice, dtype=np.int64)
    used = int(problem.stored_bytes(choice))
    if used > problem.budget_bytes:
        raise RuntimeError(
            f"{solver} produced an assignment of {used} bytes over the budget of "
            f"{problem.budget_bytes}; this is a bug"
        )
    return Solution(
        choice=choice,
        bits=problem.bits(choice),
        objective=float(problem.objective(choice)),
        stored_bytes=used,
        avg_bits=problem.avg_bits(choice),
        solver=solver,
        seconds=seconds,
        optimal=optimal,
        bound=bound,
        info=info or {},
    )


class Solver(Protocol):
    """What every bit-assignment solver offers."""

    name: str

    def solve(self, problem: BitProblem) -> Solution:
        """The best feasible assignment this solver finds for ``problem``."""
        ...


SOLVERS: dict[str, str] = {
    "anneal": "impq.solve.anneal:AnnealSolver",
    "exact": "impq.solve.exact:ExactSolver",
    "greedy": "impq.solve.greedy:GreedySolver",
}
"""Solver name -> ``module:class``; the one place where solvers are registered."""


def get_solver(name: str, config: SolverConfig | None = None) -> Solver:
    """The solver registered as ``name``, set up from ``config`` (defaults when None).

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    from impq.config import SolverConfig

    solver: Solver = lookup(SOLVERS, name, "solver").from_config(config or SolverConfig())
    return solver


def solve_budgets(
    problem: BitProblem, budgets: Sequence[float], solver: Solver
) -> dict[float, Solution]:
    """The front of assignments: one solution per target average precision."""
    return {float(b): solver.solve(problem.with_budget(b)) for b in budgets}
