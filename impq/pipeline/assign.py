"""Stage ``assign``: IMPQ bit assignments from the SPQE result, one artifact per budget."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from impq.assignment import Assignment
from impq.config import Params
from impq.estimate.result import ShapleyResult
from impq.solve import Solution, get_solver, problem_from_shapley

__all__ = ["assignment_path", "run", "shapley_input_path", "solve_assignment"]

log = logging.getLogger(__name__)

METHOD = "impq"


def shapley_input_path(params: Params) -> Path:
    """The SPQE result this stage reads (written by the ``spqe`` stage)."""
    return Path(params.paths.artifacts) / "spqe" / "shapley.npz"


def assignment_path(params: Params, budget: float, method: str = METHOD) -> Path:
    """Where the assignment for ``budget`` average bits is written (e.g. ``.../3.0.json``)."""
    return Path(params.paths.artifacts) / "assign" / method / f"{float(budget)}.json"


def solve_assignment(params: Params, result: ShapleyResult, budget: float) -> Assignment:
    """Solve the program for one budget with the configured solver (and exact check)."""
    cfg = params.solver
    problem = problem_from_shapley(
        result,
        budget,
        precisions=cfg.precisions,
        group_size=params.backends.group_size,
        interaction_z=cfg.interaction_z,
        low_bits=params.spqe.low_bits,
        high_bits=params.spqe.high_bits,
    )
    solution = get_solver(cfg.name, cfg).solve(problem)
    off = ~np.eye(problem.n_blocks, dtype=bool)
    extra: dict[str, Any] = {
        "objective": solution.objective,
        "solver": solution.solver,
        "solve_seconds": solution.seconds,
        "proven_optimal": solution.optimal,
        "budget_bytes": problem.budget_bytes,
        "min_bytes": problem.min_bytes,
        "max_bytes": problem.max_bytes,
        "precisions": list(problem.precisions),
        "group_size": problem.group_size,
        "interaction_z": cfg.interaction_z,
        "interactions_kept": int(np.count_nonzero(problem.interactions[off])),
        "interactions_total": int(off.sum()),
        "seed": cfg.seed,
        "gap_to_exact": None,
    }
    extra.update({f"solver_{k}": v for k, v in solution.info.items()})
    if cfg.exact_check and cfg.name != "exact":
        exact = get_solver("exact", cfg).solve(problem)
        extra.update(_exact_facts(solution, exact))
    elif cfg.name == "exact":
        extra["gap_to_exact"] = 0.0 if solution.optimal else None
    log.info(
        "budget %.3g bits: %d/%d bytes, avg %.3f bits, objective %.6g (%s), gap to exact %s",
        budget, solution.stored_bytes, problem.budget_bytes, solution.avg_bits,
        solution.objective, solution.solver, extra["gap_to_exact"],
    )  # fmt: skip
    return Assignment(
        bits=solution.bits,
        method=METHOD,
        budget_bits=float(budget),
        stored_bytes=solution.stored_bytes,
        avg_bits=solution.avg_bits,
        extra=extra,
    )


def _exact_facts(solution: Solution, exact: Solution) -> dict[str, Any]:
    gap = solution.gap_to(exact)
    if exact.optimal and gap < -1e-9:
        log.warning("the exact solver is worse than %s (gap %.3g): check it", solution.solver, gap)
    if not exact.optimal:
        log.warning("exact solver not proven optimal; the gap is against its best assignment")
    return {
        "gap_to_exact": gap,
        "exact_objective": exact.objective,
        "exact_proven_optimal": exact.optimal,
        "exact_bound": exact.bound,
        "exact_seconds": exact.seconds,
        "exact_method": exact.info.get("method"),
    }


def run(params: Params, budget: float | None = None) -> list[Path]:
    """Write ``artifacts/assign/impq/<budget>.json`` for ``budget`` (default: every budget).

    Raises:
        FileNotFoundError: the SPQE result is missing (run ``impq spqe`` first).
        ValueError: a budget outside the feasible range, or a malformed SPQE result.
    """
    result = ShapleyResult.load(shapley_input_path(params))
    budgets = params.budgets if budget is None else [budget]
    written = []
    for b in budgets:
        written.append(solve_assignment(params, result, b).save(assignment_path(params, b)))
    return written
