"""Flow ``assign``: the bit assignment of each objective method for each budget."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows.common import (
    STAGE_TASK,
    Files,
    code_version,
    fault_point,
    fingerprint_path,
    params_subset,
    restore,
    snapshot,
)
from impq import tracking
from impq.assignment import Assignment
from impq.config import Params
from impq.pipeline import assign, interactions

__all__ = ["assign_flow"]

PARAM_KEYS = (
    "solver",
    "backends.group_size",
    "spqe.low_bits",
    "spqe.high_bits",
    "paths.artifacts",
)


@task(name="annealing-solve", **STAGE_TASK)
def solve(params: Params, key: dict, method: str, budget: float) -> Files:
    """Solve one method's program for one budget (and check it against the exact solver)."""
    fault_point("annealing-solve")
    return snapshot(assign.run(params, budget=budget, method=method))


@flow(name="assign")
def assign_flow(
    params: Params, params_path: str = "params.yaml", budget: float | None = None
) -> list[Path]:
    """Write ``artifacts/assign/<method>/<budget>.json`` for every objective method of
    ``eval.methods`` and ``budget`` (default: every budget)."""
    methods = assign.methods(params)
    budgets = params.budgets if budget is None else [budget]
    written: list[Path] = []
    assign.output_dir(params).mkdir(parents=True, exist_ok=True)
    with tracking.stage_run(params, "assign", params_path) as run:
        run.log_params({**params_subset(params, *PARAM_KEYS), "methods": methods})
        for m in methods:
            key = {
                "params": params_subset(params, *PARAM_KEYS),
                "objective": fingerprint_path(interactions.objective_path(params, m)),
                "code": code_version(),
            }
            for b in budgets:
                paths = restore(solve(params, {**key, "budget": float(b)}, m, float(b)))
                with run.child(f"{m}/{float(b)}", tags={"method": m, "budget": b}) as child:
                    a = Assignment.load(paths[0])
                    child.log_metrics(
                        {
                            "avg_bits": a.avg_bits,
                            "stored_bytes": a.stored_bytes,
                            "objective": a.extra.get("objective"),
                            "gap_to_exact": a.extra.get("gap_to_exact"),
                            "solve_seconds": a.extra.get("solve_seconds"),
                        }
                    )
                    child.log_artifact(paths[0], f"assign/{m}")
                written += paths
    return written
