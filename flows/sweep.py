"""Flow ``sweep``: quantize and evaluate every backend x method x budget, then plot.

One task per combination (quantize with the backend, then WikiText-2 perplexity), each
retried and logged as a grandchild MLflow run (pipeline -> sweep ->
``backend/method/budget``). The tasks (and the float reference's) have no Prefect cache
key: a rerun runs each one, and the work keeps every measurement that is up to date
(:func:`impq.pipeline.sweep.cells.input_fingerprint`).

The combinations are mapped as tasks on ``params.runner``
(:class:`~flows.fanout.PrefectFanout`): with the local runner one after another in this
process, with Ray spread over the workers. Each process holds one
:class:`~impq.pipeline.sweep.FloatModel` (the float model is loaded once per worker) and
one :class:`~impq.pipeline.sweep.BlockCache` of the backend at hand (every block is
quantized once per bit width and worker instead of once per combination). Which
combinations copy an earlier one's measurement (same backend and bits) is planned before
any runs, so the rows do not depend on where each ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.common import (
    STAGE_TASK,
    UNCACHED,
    Files,
    fault_point,
    params_subset,
    restore,
    snapshot,
)
from flows.fanout import PrefectFanout
from impq import tracking
from impq.config import Params
from impq.pipeline import sweep
from impq.pipeline.stages import STAGES

__all__ = ["sweep_flow"]

CELL_TASK = {**STAGE_TASK, **UNCACHED}
"""A stage task's options (its retries), :data:`~flows.common.UNCACHED`."""

ROW_METRICS = ("ppl", "avg_bits", "bits_per_weight", "stored_bytes", "expected_bytes")
ROW_TIMES = ("quantize_seconds", "eval_seconds")


@task(name="quantize-evaluate", task_run_name="{backend}/{method}/{budget}", **CELL_TASK)
def quantize_evaluate(
    params: Params,
    backend: str,
    method: str,
    budget: float,
    source: tuple[dict[str, Any], Files] | None = None,
    reuse_key: str | None = None,
) -> tuple[dict[str, Any], Files]:
    """Quantize the model with ``backend`` under one assignment; measure and evaluate it.

    On whichever worker it runs, the float model and the backend's quantized blocks are
    that process's (:func:`~impq.pipeline.sweep.worker_cache`: loaded once per worker).
    ``source`` is the result of the earlier combination with the same backend and bits
    (:func:`~impq.pipeline.sweep.reuse_sources`, ``reuse_key`` their bits): its
    measurement is copied (the stage notes ``reused_from``).
    """
    fault_point("quantize-evaluate")
    reuse = {reuse_key: source[0]} if source is not None and reuse_key else None
    cache = sweep.worker_cache(params, backend)
    row = sweep.run_one(params, backend, method, budget, reuse=reuse, cache=cache)
    combo = sweep.Combination(backend, method, float(budget))
    return row, snapshot([sweep.metrics_path(params, combo)])


@task(name="float-reference", **CELL_TASK)
def float_reference(params: Params, float_model: sweep.FloatModel | None = None) -> dict[str, Any]:
    """Perplexity of the float model under the sweep's protocol (``float_model``: the
    flow's, loaded once)."""
    fault_point("float-reference")
    return sweep.float_metrics(params, float_model)


@flow(name="sweep")
def sweep_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``metrics/sweep/...``, ``metrics/sweep.json``, ``plots/sweep.csv`` and plots;
    return the files written (every combination's, then the table and plots)."""
    rows: list[dict[str, Any]] = []
    cells: list[Path] = []
    combos = sweep.combinations(params)
    sources = sweep.reuse_sources(params, combos)
    with tracking.stage_run(params, "sweep", params_path) as run, PrefectFanout(params) as fanout:
        run.log_params(params_subset(params, *STAGES["sweep"].params))
        futures: dict[sweep.Combination, Any] = {}
        for c in combos:  # mapped on params.runner; a reuser waits for its source
            args = {"params": params, "backend": c.backend, "method": c.method, "budget": c.budget}
            if c in sources:
                args["source"], args["reuse_key"] = futures[sources[c][0]], sources[c][1]
            futures[c] = fanout.submit(quantize_evaluate, args)
        for c in combos:
            row, files = futures[c].result()
            cells += restore(files)
            rows.append(row)
            tags = {"backend": c.backend, "method": c.method, "budget": c.budget}
            with run.child(c.key, tags=tags) as child:
                child.log_params({**tags, "bits": row["bits"]})
                child.log_metrics(
                    {k: row.get(k) for k in (*ROW_METRICS, *ROW_TIMES, "blocks_quantized")}
                )
                a_path = sweep.assignment_input_path(params, c.method, c.budget)
                child.log_artifact(a_path, "assign")
        float_model = sweep.worker_float_model(params.model)
        reference = float_reference(params, float_model)
        written = sweep.write_table(params, rows, reference) + sweep.write_plots(
            params, rows, reference
        )
        run.log_metrics({"float_ppl": reference.get("ppl"), "combinations": len(rows)})
        for path in written:
            run.log_artifact(path, "plots" if path.suffix in {".png", ".csv"} else "metrics")
    return cells + written
