"""Stage ``report``: plots of the SPQE result (Shapley values, interaction heatmap).

Writes ``plots/shapley.png`` (values with standard-error bars), ``plots/shapley.csv``
(the same numbers, for ``dvc plots``) and ``plots/interactions.png`` (the matrix K).
The perplexity-against-bits plots come from the sweep stage.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from impq.artifacts import atomic_path
from impq.config import Params
from impq.estimate import ShapleyResult
from impq.pipeline.paths import report_plot_paths as plot_paths
from impq.pipeline.paths import shapley_path

__all__ = [
    "interaction_heatmap",
    "plot_paths",
    "run",
    "shapley_bars",
    "shapley_csv",
]

log = logging.getLogger(__name__)


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def shapley_bars(result: ShapleyResult, path: str | Path) -> Path:
    """Bar chart of each block's Shapley value with ±1 standard error."""
    n = result.n_players
    fig = Figure(figsize=(max(4.0, 0.45 * n + 2), 3.5))
    ax = fig.add_subplot()
    se = np.nan_to_num(result.values_se, nan=0.0)
    ax.bar(np.arange(n), result.values, yerr=se, capsize=3, color="tab:blue", ecolor="black")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(np.arange(n))
    ax.set_xlabel("decoder block")
    ax.set_ylabel("Shapley value (Δ NLL, 4→2 bits)")
    ax.set_title("SPQE Shapley values (±1 s.e.)")
    return _save(fig, Path(path))


def interaction_heatmap(result: ShapleyResult, path: str | Path) -> Path:
    """Heatmap of the interaction matrix K, centred on zero."""
    n = result.n_players
    k = np.asarray(result.interactions, dtype=float)
    lim = float(np.nanmax(np.abs(k))) if np.isfinite(k).any() else 1.0
    fig = Figure(figsize=(max(4.0, 0.35 * n + 2.5), max(3.5, 0.35 * n + 1.5)))
    ax = fig.add_subplot()
    image = ax.imshow(k, cmap="RdBu_r", vmin=-lim or -1.0, vmax=lim or 1.0)
    fig.colorbar(image, ax=ax, label="interaction K[i, j]")
    ax.set_xticks(np.arange(n))
    ax.set_yticks(np.arange(n))
    ax.set_xlabel("block j")
    ax.set_ylabel("block i")
    ax.set_title("SPQE interaction matrix")
    return _save(fig, Path(path))


def shapley_csv(result: ShapleyResult, path: str | Path) -> Path:
    """``block,value,se`` rows, one per block."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["block", "value", "se"])
    for i, (v, s) in enumerate(zip(result.values, result.values_se, strict=True)):
        writer.writerow([i, f"{float(v):.8g}", f"{float(s):.8g}"])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return Path(path)


def run(params: Params) -> list[Path]:
    """Plot the SPQE result of this pipeline; return the files written."""
    result = ShapleyResult.load(shapley_path(params))
    paths = plot_paths(params)
    written = [
        shapley_bars(result, paths["bars"]),
        shapley_csv(result, paths["csv"]),
        interaction_heatmap(result, paths["heatmap"]),
    ]
    log.info("plotted %d blocks to %s", result.n_players, Path(params.paths.plots))
    return written
