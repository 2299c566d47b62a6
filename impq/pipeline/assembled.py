"""Stage ``assembled``: the model the game scores against the model that ships, cell by cell.

On a calibrated backend the SPQE game plays on a per-block database (every block
quantized once per precision, calibrated behind blocks at ``spqe.calibration_bits``, as
EvoPress builds it), and a configuration's value is the loss of the model *assembled*
from it. What ships is quantized again for the assignment: sequential GPTQ calibrates
each block behind the blocks the assignment really puts in front of it, on every
calibration sequence, in the backend's own dtype. The game's ranking is only as good as
its model is close to the shipped one, so this stage measures how close.

For every sweep combination of such a backend (``spqe.backend`` in ``backends.names``,
measured in process, with ``backends.calibrated_cells`` not ``database``; assignments
whose precisions are all on ``spqe.ladder``), the assembled model is scored on the same
windows (a cell under ``calibrated_cells: database``, kept in ``metrics/assembled/`` by
its input fingerprint like a sweep cell) and paired with the sweep's cell: perplexity
assembled over shipped, with its paired bootstrap interval. Written: ``assembled.md``
beside the results table and the flat ``metrics/assembled.json`` (``cells: 0`` when no
backend qualifies, e.g. a data-free game, whose blocks are the shipped ones).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from impq.artifacts import atomic_path, read_json, write_json
from impq.assignment import Assignment
from impq.backends import get_backend
from impq.backends.base import ScoredBackend, database_backends
from impq.config import Params
from impq.eval import paired_ppl_ratio
from impq.pipeline.paths import assembled_cells_dir as cells_dir
from impq.pipeline.paths import assembled_metrics_path as metrics_path
from impq.pipeline.paths import assembled_result_path as result_path
from impq.pipeline.sweep import BlockCache, Combination, combinations, run_one
from impq.pipeline.sweep import metrics_path as sweep_metrics_path
from impq.pipeline.sweep.plan import assignment_input_path

__all__ = ["assembled_backends", "cells", "format_markdown", "paired_rows", "run"]

log = logging.getLogger(__name__)


def assembled_backends(params: Params) -> list[str]:
    """The backends of ``backends.names`` whose sweep cells are not the game's model: the
    game's own backend (``spqe.backend``) when it builds a per-block database, is measured
    in process and ``backends.calibrated_cells`` is not ``database``."""
    return [] if _nothing_to_pair(params) else [params.spqe.backend]


def _nothing_to_pair(params: Params) -> str | None:
    """Why no sweep cell differs from the game's model, or None."""
    backend = params.spqe.backend
    if backend not in params.backends.names:
        return f"the sweep measures no cell on the game's backend ({backend})"
    if backend not in database_backends() or isinstance(get_backend(backend), ScoredBackend):
        return f"the game plays on {backend} blocks, the ones that ship"
    if params.backends.calibrated_cells == "database":
        return "the sweep's cells are the game's models already (calibrated_cells: database)"
    return None


def cells(params: Params) -> list[Combination]:
    """The sweep combinations measured again on the database: those of
    :func:`assembled_backends` whose assignment's precisions are all on ``spqe.ladder``."""
    ladder = set(params.spqe.ladder)
    backends = assembled_backends(params)
    return [
        c
        for c in combinations(params)
        if c.backend in backends
        and set(Assignment.load(assignment_input_path(params, c.method, c.budget)).bits.values())
        <= ladder
    ]


def _database(params: Params) -> Params:
    backends = params.backends.model_copy(update={"calibrated_cells": "database"})
    return params.model_copy(update={"backends": backends})


def paired_rows(
    params: Params, pairs: list[tuple[dict[str, Any], dict[str, Any]]]
) -> list[dict[str, Any]]:
    """One row per (assembled, shipped) pair of cell metrics: both perplexities and their
    ratio (assembled over shipped) with its paired interval (None where not finite)."""
    cfg = params.compare
    rows = []
    for assembled, shipped in pairs:
        ratio = paired_ppl_ratio(
            assembled["window_nll"], shipped["window_nll"], cfg.level, cfg.n_boot, cfg.seed
        )
        finite = all(math.isfinite(x) for x in ratio)
        rows.append(
            {
                "backend": shipped["backend"],
                "method": shipped["method"],
                "budget": shipped["budget"],
                "avg_bits": shipped["avg_bits"],
                "bits": shipped["bits"],
                "ppl_shipped": shipped["ppl"],
                "ppl_assembled": assembled["ppl"],
                "ratio": ratio.estimate if finite else None,
                "ratio_ci_low": ratio.low if finite else None,
                "ratio_ci_high": ratio.high if finite else None,
            }
        )
    return rows


def format_markdown(rows: list[dict[str, Any]], level: float, empty: str) -> str:
    """The rows as a table: both perplexities and their ratio (above 1: the game's model
    is worse than the shipped one); without rows, ``empty``: why there are none."""
    if not rows:
        return f"No cell: {empty}.\n"
    pct = f"{round(100 * level)}%"
    lines = [
        f"| backend | budget | method | avg bits | shipped PPL | assembled PPL | "
        f"assembled / shipped [{pct} CI] |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        ratio = (
            "—"
            if r["ratio"] is None
            else f"{r['ratio']:.3f} [{r['ratio_ci_low']:.3f}, {r['ratio_ci_high']:.3f}]"
        )
        ppls = " | ".join(
            "—" if r[k] is None else f"{r[k]:.4g}" for k in ("ppl_shipped", "ppl_assembled")
        )
        lines.append(
            f"| {r['backend']} | {r['budget']:.2f} | {r['method']} | {r['avg_bits']:.3f} | "
            f"{ppls} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def run(params: Params) -> list[Path]:
    """Measure every cell of :func:`cells` on the database, pair it with the sweep's, and
    write the table and the flat metrics; return the files written.

    Raises:
        FileNotFoundError: a combination has no assignment or no sweep metrics (run the
            stages before, ``impq sweep``).
    """
    todo = cells(params)
    cells_dir(params).mkdir(parents=True, exist_ok=True)  # DVC's output, empty or not
    database = _database(params)
    cache = BlockCache(database) if todo else None
    reuse: dict[str, dict[str, Any]] = {}
    pairs = []
    for c in todo:
        shipped = read_json(sweep_metrics_path(params, c))
        assembled = run_one(
            database, c.backend, c.method, c.budget,
            reuse=reuse, cache=cache, path=sweep_metrics_path(params, c, cells_dir(params)),
        )  # fmt: skip
        pairs.append((assembled, shipped))
    rows = paired_rows(params, pairs)
    empty = _nothing_to_pair(params) or "no assignment is on spqe.ladder"
    out = result_path(params)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(format_markdown(rows, params.compare.level, empty))
    flat: dict[str, Any] = {"cells": len(rows)}
    for r in rows:
        key = Combination(r["backend"], r["method"], r["budget"]).key
        for field in ("ppl_shipped", "ppl_assembled", "ratio", "ratio_ci_low", "ratio_ci_high"):
            flat[f"{key}/{field}"] = r[field]
    log.info("assembled: %d cells measured on the game's database", len(rows))
    return [out, write_json(metrics_path(params), flat, versioned=False)]
