"""Exact solvers: enumeration for small programs, a HiGHS MILP for real sizes."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from impq.config import SolverConfig
from impq.solve.base import Solution, make_solution
from impq.solve.local import repair
from impq.solve.problem import BitProblem

__all__ = ["ExactSolver", "brute_force_choice", "milp_choice"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


def brute_force_choice(problem: BitProblem) -> np.ndarray:
    """The optimal choice vector by enumerating every assignment (P^L of them).

    Ties go to the first assignment in enumeration order (block 0 varying slowest).
    """
    n, p = problem.sizes.shape
    total = p**n
    weights = p ** np.arange(n - 1, -1, -1, dtype=np.int64)
    best_value, best = np.inf, np.zeros(n, dtype=np.int64)
    for lo in range(0, total, _CHUNK):
        idx = np.arange(lo, min(lo + _CHUNK, total), dtype=np.int64)
        choices = (idx[:, None] // weights[None, :]) % p
        values = problem.objective(choices)
        values = np.where(problem.stored_bytes(choices) <= problem.budget_bytes, values, np.inf)
        i = int(np.argmin(values))
        if values[i] < best_value:
            best_value, best = float(values[i]), choices[i]
    return best


def _highs(time_limit: float, seed: int) -> Any:
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.setOptionValue("mip_abs_gap", 1e-12)
    h.setOptionValue("random_seed", int(seed))
    h.setOptionValue("threads", 1)
    return h


_Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""A group of rows of equal width: column indices (m, w), values (m, w), lower, upper."""


def _solve_milp(
    h: Any, cost: np.ndarray, n_int: int, groups: list[_Rows]
) -> tuple[np.ndarray, bool, float, dict[str, float | str]]:
    """Add columns in [0, 1] (the first ``n_int`` integer) and rows; solve; read back."""
    import highspy

    ncols = len(cost)
    h.addCols(
        ncols, np.asarray(cost, dtype=np.float64), np.zeros(ncols), np.ones(ncols), 0,
        np.zeros(ncols, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0),
    )  # fmt: skip
    h.changeColsIntegrality(
        n_int,
        np.arange(n_int, dtype=np.int32),
        np.full(n_int, int(highspy.HighsVarType.kInteger), dtype=np.uint8),
    )
    lengths = np.concatenate([np.full(len(g[0]), g[0].shape[1]) for g in groups])
    h.addRows(
        len(lengths),
        np.concatenate([g[2] for g in groups]).astype(np.float64),
        np.concatenate([g[3] for g in groups]).astype(np.float64),
        int(lengths.sum()),
        np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.int32),
        np.concatenate([g[0].ravel() for g in groups]).astype(np.int32),
        np.concatenate([g[1].ravel() for g in groups]).astype(np.float64),
    )
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    x = np.asarray(h.getSolution().col_value[:n_int], dtype=np.float64)
    if x.size != n_int or not np.isfinite(x).all():
        raise RuntimeError(f"HiGHS found no assignment: {h.modelStatusToString(status)}")
    facts: dict[str, float | str] = {
        "status": h.modelStatusToString(status),
        "mip_gap": float(info.mip_gap),
        "nodes": float(info.mip_node_count),
        "products": float(ncols - n_int),
    }
    optimal = status == highspy.HighsModelStatus.kOptimal
    return x, bool(optimal), float(info.mip_dual_bound), facts


def milp_choice(
    problem: BitProblem, time_limit: float = 60.0, seed: int = 0
) -> tuple[np.ndarray, bool, float, dict[str, float | str]]:
    """Solve the program as a MILP with HiGHS, products linearised.

    Block ``i`` has one-hot binaries ``x_{i,k}`` (block at ``precisions[k]``) with cost
    ``cost[i, k]``. Every product ``x_ik x_jl`` (``i < j``) with a nonzero coefficient
    ``c = pair[i, k, j, l]`` becomes a
    continuous ``y`` in [0, 1] under the standard linearisation, of which only the side
    that can bind is written: ``y >= x_ik + x_jl - 1`` when ``c > 0`` (the objective
    pushes ``y`` down), ``y <= x_ik`` and ``y <= x_jl`` when ``c < 0``; at any integer
    point ``y`` then equals the product at the optimum. The budget row is divided by the
    gcd of its integer coefficients, so the solver sees small exact integers.

    Returns:
        The choice vector, whether HiGHS proved it optimal, its lower bound on the
        objective, and facts (status, MIP gap, nodes, product variables).
    """
    n, p = problem.sizes.shape
    nx = n * p
    x_cost = problem.cost.ravel()
    onehot = np.arange(nx).reshape(n, p)
    groups: list[_Rows] = [(onehot, np.ones((n, p)), np.ones(n), np.ones(n))]
    extra = (problem.sizes - problem.sizes[:, :1]).ravel()
    g = math.gcd(*[int(c) for c in extra]) or 1
    slack = (problem.budget_bytes - problem.min_bytes) // g
    groups.append(
        (np.arange(nx)[None, :], (extra // g)[None, :], np.array([-np.inf]), np.array([slack]))
    )
    iu, ju = np.triu_indices(n, 1)
    ki0, kj0 = (m.ravel() for m in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    i, j = np.repeat(iu, p * p), np.repeat(ju, p * p)
    ki, kj = np.tile(ki0, len(iu)), np.tile(kj0, len(iu))
    coef = problem.pair[i, ki, j, kj]
    keep = coef != 0
    coef, xi, xj = coef[keep], (i * p + ki)[keep], (j * p + kj)[keep]
    y = nx + np.arange(len(coef))
    pos, neg = coef > 0, coef < 0
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    groups.append(
        (
            np.stack([xi[pos], xj[pos], y[pos]], axis=1),
            np.tile([1.0, 1.0, -1.0], (n_pos, 1)),
            np.full(n_pos, -np.inf),
            np.ones(n_pos),
        )
    )
    for x_side in (xi[neg], xj[neg]):
        groups.append(
            (
                np.stack([y[neg], x_side], axis=1),
                np.tile([1.0, -1.0], (n_neg, 1)),
                np.full(n_neg, -np.inf),
                np.zeros(n_neg),
            )
        )
    cost = np.concatenate([x_cost, coef])
    x, optimal, bound, facts = _solve_milp(_highs(time_limit, seed), cost, nx, groups)
    return np.argmax(x.reshape(n, p), axis=1).astype(np.int64), optimal, bound, facts


@dataclass(frozen=True)
class ExactSolver:
    """Proven optimum: enumeration up to ``brute_force_max`` assignments, else HiGHS MILP.

    When the MILP hits its time limit the best assignment found is returned with
    ``optimal=False`` and the solver's lower bound in ``bound``.
    """

    brute_force_max: int = 1 << 20
    time_limit: float = 60.0
    seed: int = 0
    name: str = "exact"

    @classmethod
    def from_config(cls, config: SolverConfig) -> ExactSolver:
        """The solver with the MILP time limit and seed from ``config``."""
        return cls(time_limit=config.exact_time_limit, seed=config.seed)

    def solve(self, problem: BitProblem) -> Solution:
        """The optimal assignment (or the best within the time limit)."""
        start = time.perf_counter()
        n, p = problem.sizes.shape
        if p**n <= self.brute_force_max:
            choice = brute_force_choice(problem)
            return make_solution(
                problem, choice, self.name, time.perf_counter() - start, optimal=True,
                bound=float(problem.objective(choice)), info={"method": "enumeration"},
            )  # fmt: skip
        choice, optimal, bound, facts = milp_choice(problem, self.time_limit, self.seed)
        if not problem.feasible(choice):
            log.warning("HiGHS solution is over budget by rounding; repairing it")
            choice, optimal = repair(problem, choice), False
        if not optimal:
            log.warning("MILP not proven optimal within %.0f s: %s", self.time_limit, facts)
        return make_solution(
            problem, choice, self.name, time.perf_counter() - start, optimal=optimal,
            bound=bound, info={"method": "milp-highs", **facts},
        )  # fmt: skip
