"""Flow ``sweep``: quantize and evaluate every backend x method x budget, then plot.

One task per combination (quantize with the backend, then WikiText-2 perplexity), each
cached on its own inputs, retried, and logged as a grandchild MLflow run
(pipeline -> sweep -> ``backend/method/budget``).

The flow calls the tasks one after another (a direct call runs a task in the flow's
thread; nothing is submitted to the task runner), so the whole flow shares one
:class:`~impq.pipeline.sweep.FloatModel` (the float model is loaded once) and the
combinations of one backend share one :class:`~impq.pipeline.sweep.BlockCache`: every
block is quantized once per bit width instead of once per combination. Both are also
thread-safe, should the tasks ever be submitted concurrently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.common import (
    CACHE_POLICY,
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
from impq.backends import get_backend
from impq.config import Params
from impq.pipeline import prepare, sweep

__all__ = ["sweep_flow"]

PARAM_KEYS = (
    "model",
    "backends",
    "eval.seqlen",
    "eval.batch_size",
    "eval.max_windows",
    "paths.metrics",
)
ROW_METRICS = ("ppl", "avg_bits", "bits_per_weight", "stored_bytes", "expected_bytes")
ROW_TIMES = ("quantize_seconds", "eval_seconds")


@task(
    name="quantize-evaluate",
    task_run_name="{backend}/{method}/{budget}",
    **{**STAGE_TASK, "cache_policy": CACHE_POLICY - "reuse" - "cache"},
)
def quantize_evaluate(
    params: Params,
    key: dict,
    backend: str,
    method: str,
    budget: float,
    reuse: dict[str, dict[str, Any]],
    cache: sweep.BlockCache,
) -> tuple[dict[str, Any], Files]:
    """Quantize the model with ``backend`` under one assignment; measure and evaluate it.

    ``reuse`` carries measurements of this run between combinations computed in this
    process (the same backend and bits are measured once; the stage notes
    ``reused_from``) and ``cache`` the backend's quantized blocks; both only save time,
    so neither is part of the cache key.
    """
    fault_point("quantize-evaluate")
    row = sweep.run_one(params, backend, method, budget, reuse=reuse, cache=cache)
    combo = sweep.Combination(backend, method, float(budget))
    return row, snapshot([sweep.metrics_path(params, combo)])


@task(name="float-reference", **{**STAGE_TASK, "cache_policy": CACHE_POLICY - "float_model"})
def float_reference(
    params: Params, key: dict, float_model: sweep.FloatModel | None = None
) -> dict[str, Any]:
    """Perplexity of the float model under the sweep's protocol (``float_model``: the
    flow's, loaded once; it only saves time, so it is not part of the cache key)."""
    fault_point("float-reference")
    return sweep.float_metrics(params, float_model)


@flow(name="sweep")
def sweep_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``metrics/sweep/...``, ``metrics/sweep.json``, ``plots/sweep.csv`` and plots;
    return the files written (every combination's, then the table and plots)."""
    base = {
        "params": params_subset(params, *PARAM_KEYS),
        "tokens": fingerprint_path(prepare.eval_tokens_path(params)),
        "model": fingerprint_path(params.model.source) or params.model.source,
        "code": code_version(),
    }
    rows: list[dict[str, Any]] = []
    reuse: dict[str, dict[str, Any]] = {}
    cells: list[Path] = []
    caches: dict[str, sweep.BlockCache] = {}
    float_model = sweep.FloatModel(params.model)  # loaded once, on first use
    with tracking.stage_run(params, "sweep", params_path) as run:
        run.log_params(params_subset(params, *PARAM_KEYS))
        for c in sweep.combinations(params):
            a_path = sweep.assignment_input_path(params, c.method, c.budget)
            key = {**base, "combination": c.key, "assignment": fingerprint_path(a_path)}
            if not get_backend(c.backend).data_free:  # gptq; llamacpp's imatrix
                key["calibration"] = fingerprint_path(prepare.calibration_path(params))
            if c.backend not in caches:  # combinations come backend by backend
                caches.clear()  # free the previous backend's blocks
                caches[c.backend] = sweep.BlockCache(params, float_model)
            cache = caches[c.backend]
            row, files = quantize_evaluate(params, key, c.backend, c.method, c.budget, reuse, cache)
            cells += restore(files)
            rows.append(row)
            tags = {"backend": c.backend, "method": c.method, "budget": c.budget}
            with run.child(c.key, tags=tags) as child:
                child.log_params({**tags, "bits": row["bits"]})
                child.log_metrics(
                    {k: row.get(k) for k in (*ROW_METRICS, *ROW_TIMES, "blocks_quantized")}
                )
                child.log_artifact(a_path, "assign")
        reference = float_reference(params, {**base, "what": "float"}, float_model)
        written = sweep.write_table(params, rows, reference) + sweep.write_plots(
            params, rows, reference
        )
        run.log_metrics({"float_ppl": reference.get("ppl"), "combinations": len(rows)})
        for path in written:
            run.log_artifact(path, "plots" if path.suffix in {".png", ".csv"} else "metrics")
    return cells + written
