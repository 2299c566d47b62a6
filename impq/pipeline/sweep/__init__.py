"""Stage ``sweep``: quantize and evaluate every (backend, method, budget) combination.

For each combination the float model (loaded once per process, :class:`FloatModel`) is
quantized by the backend under the method's assignment (:func:`assignment_input_path`:
``artifacts/assign/<method>/<budget>.json`` from the ``assign`` stage for an objective
method, ``artifacts/baselines/<method>/<budget>.json`` from the ``baselines`` stage), and
its real stored size, average bits and WikiText-2 perplexity (``eval`` protocol) are
written to ``metrics/sweep/<backend>/<method>-<budget>.json`` (kept while up to date:
:func:`input_fingerprint`). The combined table goes to ``metrics/sweep.json`` (flat) and
``plots/sweep.csv``, and one plot of perplexity against average bits per backend to
``plots/sweep/ppl_vs_bits_<backend>.png`` (one output folder, whatever the backends).
A backend that runs out of process (``llamacpp``) is measured by its runtime's scorer.

One job per module: :mod:`~impq.pipeline.sweep.plan` (the combinations and every path),
:mod:`~impq.pipeline.sweep.cache` (the float model and the quantized blocks the cells
share), :mod:`~impq.pipeline.sweep.cells` (one combination: quantize, check, evaluate)
and :mod:`~impq.pipeline.sweep.tables` (the combined table and the plots). This package
re-exports their public names and runs the whole sweep in one process (:func:`run`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from impq.config import Params
from impq.pipeline.sweep.cache import BlockCache, FloatModel, worker_cache, worker_float_model
from impq.pipeline.sweep.cells import (
    check_budget,
    evaluate_one,
    float_metrics,
    input_fingerprint,
    quantize_one,
    run_one,
    scorer_for,
)
from impq.pipeline.sweep.plan import (
    Combination,
    assignment_input_path,
    bits_key,
    combinations,
    metrics_path,
    plot_dir,
    plot_paths,
    reuse_sources,
    table_paths,
)
from impq.pipeline.sweep.tables import CSV_COLUMNS, format_table, write_plots, write_table

__all__ = [
    "CSV_COLUMNS",
    "BlockCache",
    "Combination",
    "FloatModel",
    "assignment_input_path",
    "bits_key",
    "check_budget",
    "combinations",
    "evaluate_one",
    "float_metrics",
    "format_table",
    "input_fingerprint",
    "metrics_path",
    "plot_dir",
    "plot_paths",
    "quantize_one",
    "reuse_sources",
    "run",
    "run_one",
    "scorer_for",
    "table_paths",
    "worker_cache",
    "worker_float_model",
    "write_plots",
    "write_table",
]

log = logging.getLogger(__name__)


def run(params: Params) -> tuple[list[dict[str, Any]], dict[str, Any], list[Path]]:
    """Run (or resume) the whole sweep; write the table and plots.

    Returns:
        The rows, the float reference metrics and the table and plot files written.
    """
    reuse: dict[str, dict[str, Any]] = {}
    rows = []
    float_model = FloatModel(params.model)  # loaded once, on first use
    for backend in params.backends.names:
        cache = BlockCache(params, float_model)  # one backend's blocks at a time
        with scorer_for(params, backend) as scorer:
            for c in combinations(params):
                if c.backend == backend:
                    row = run_one(
                        params, backend, c.method, c.budget, reuse=reuse, cache=cache, scorer=scorer
                    )
                    rows.append(row)
    reference = float_metrics(params, float_model)
    written = write_table(params, rows, reference) + write_plots(params, rows, reference)
    log.info(
        "sweep: %d combinations, %d non-finite", len(rows), sum(not r["ppl_finite"] for r in rows)
    )
    return rows, reference, written
