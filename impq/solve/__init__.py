"""Bit assignment: one precision per block under a memory budget, and its solvers.

``BitProblem`` holds the program (a method's pairwise objective over the precisions,
block sizes, budget);
solvers (``anneal``, ``exact``, ``greedy``) sit behind one protocol in ``SOLVERS``.
``greedy_assignment(scores, problem)`` is the knapsack rule of the isolated-metric
baselines.
"""

from impq.solve.base import SOLVERS, Solution, Solver, get_solver, solve_budgets
from impq.solve.greedy import greedy_assignment
from impq.solve.problem import (
    BitProblem,
    budget_bytes,
    choice_form,
    degradation_level,
    problem_from_shapley,
)

__all__ = [
    "SOLVERS",
    "BitProblem",
    "Solution",
    "Solver",
    "budget_bytes",
    "choice_form",
    "degradation_level",
    "get_solver",
    "greedy_assignment",
    "problem_from_shapley",
    "solve_budgets",
]
