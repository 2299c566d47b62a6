"""Stage ``assign``: bit assignments of the objective methods, one artifact per method and
budget.

For every method of ``eval.methods`` that is a registered objective
(:data:`~impq.estimate.OBJECTIVES`: ``impq``, ``sii``, ``surrogate``), read its
:class:`~impq.estimate.LevelObjective` from the ``interactions`` stage and solve the
program over ``solver.precisions`` for every budget with ``solver`` (a ladder of three or
more levels admits only its own precisions); write ``artifacts/assign/<method>/<budget>.json``. The stage's one output is
the folder ``artifacts/assign``, whichever methods and budgets are configured (DVC
empties it before the stage runs, so it never holds a stale assignment).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from impq.assignment import Assignment
from impq.config import Params
from impq.estimate import LevelObjective, objective_methods
from impq.pipeline.paths import assign_dir as output_dir
from impq.pipeline.paths import assignment_path, objective_path, objectives_dir
from impq.pipeline.paths import shapley_path as shapley_input_path
from impq.solve import BitProblem, Solution, get_solver
from impq.solve.problem import warn_few_walks

__all__ = [
    "assignment_path",
    "methods",
    "output_dir",
    "run",
    "shapley_input_path",
    "solve_assignment",
]

log = logging.getLogger(__name__)


def methods(params: Params) -> list[str]:
    """The objective methods of ``eval.methods``, which this stage solves.

    Raises:
        ValueError: one needs walks of another kind than ``spqe.walks``.
    """
    return objective_methods(params.eval.methods, params.spqe.walks)


def objective_problem(params: Params, objective: LevelObjective, budget: float) -> BitProblem:
    """The program of a method's objective at ``budget``, under the configured precisions
    and group size.

    Raises:
        ValueError: the objective was measured on another ladder than ``spqe.ladder``, a
            precision is off a ladder of three or more levels, or the budget is outside
            the precisions' range.
    """
    ladder = tuple(params.spqe.ladder)
    if objective.ladder != ladder:
        raise ValueError(
            f"the objective was measured on the ladder {list(objective.ladder)}, but "
            f"spqe.ladder is {list(ladder)}; run `impq spqe` and `impq interactions` again"
        )
    warn_few_walks(objective.meta, objective.n_blocks)
    return BitProblem.from_objective(
        objective,
        budget,
        precisions=params.solver.precisions,
        group_size=params.backends.group_size,
    )


def solve_assignment(
    params: Params, objective: LevelObjective, budget: float, method: str
) -> Assignment:
    """Solve ``method``'s program for one budget with the configured solver (and exact check)."""
    cfg = params.solver
    problem = objective_problem(params, objective, budget)
    solution = get_solver(cfg.name, cfg).solve(problem)
    off = ~np.eye(problem.n_blocks, dtype=bool)
    interacting = np.any(problem.pair != 0, axis=(1, 3))
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
        "ladder": list(objective.ladder),
        "objective_source": objective.meta.get("interaction_source"),
        "interactions_kept": int(np.count_nonzero(interacting[off])),
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
        "%s @ %.3g bits: %d/%d bytes, avg %.3f bits, objective %.6g (%s), gap to exact %s",
        method, budget, solution.stored_bytes, problem.budget_bytes, solution.avg_bits,
        solution.objective, solution.solver, extra["gap_to_exact"],
    )  # fmt: skip
    return Assignment(
        bits=solution.bits,
        method=method,
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


def run(params: Params, budget: float | None = None, method: str | None = None) -> list[Path]:
    """Write ``artifacts/assign/<method>/<budget>.json`` for ``method`` and ``budget``
    (default: every objective method of ``eval.methods`` and every budget).

    Raises:
        FileNotFoundError: a method's objective is missing (run ``impq interactions``).
        ValueError: a budget outside the feasible range, a method that is not an
            objective method of ``eval.methods``, a malformed objective or one of another
            ladder, or a precision off a ladder of three or more levels.
    """
    chosen = methods(params)
    if method is not None:
        if method not in chosen:
            raise ValueError(f"method {method!r} is not among the objective methods {chosen}")
        chosen = [method]
    budgets = params.budgets if budget is None else [budget]
    output_dir(params).mkdir(parents=True, exist_ok=True)
    written = []
    for m in chosen:
        path = objective_path(params, m)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no objective for {m!r} in {objectives_dir(params)}; run "
                "`impq interactions` first"
            )
        objective = LevelObjective.load(path)
        for b in budgets:
            assignment = solve_assignment(params, objective, b, m)
            written.append(assignment.save(assignment_path(params, b, m)))
    return written
