"""Stage ``compare``: the sweep's perplexities with intervals, each method against the best
isolated metric.

Reads every combination's metrics from the sweep (``metrics/sweep/<backend>/...``, which
hold the per-window NLLs) and writes, under ``paths.results``:

- ``results.json``: one object per backend x method x budget with ``avg_bits``
  (nominal), ``stored_bits`` (bits per weight the backend really stores, scales and
  zeros included), ``ppl`` and its bootstrap interval ``ppl_ci_low``/``ppl_ci_high``, and
  ``vs_isolated`` (perplexity over that of the best isolated baseline at the same backend
  and budget, a paired bootstrap over the same windows) with its interval;
- ``results.md``: the same as a table per backend;
- ``ppl_vs_stored_bits.png``: perplexity (log scale, with intervals) against stored bits.

"Best isolated" is the lowest test perplexity among ``compare.isolated`` (LIM, ZD and
Shapley-only by default) at that backend and budget: picked after the fact on the test
split, which favours the baselines, never the method compared with them.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from impq.artifacts import atomic_path, read_json, write_json
from impq.config import CompareConfig, Params
from impq.eval import Interval, paired_ppl_ratio, ppl_interval
from impq.pipeline.paths import compare_metrics_path as metrics_file
from impq.pipeline.paths import compare_result_paths as result_paths
from impq.pipeline.sweep import Combination, combinations, metrics_path

__all__ = ["compare_rows", "format_markdown", "metrics_file", "result_paths", "run"]

log = logging.getLogger(__name__)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _interval(row: dict[str, Any], cfg: CompareConfig) -> Interval:
    nll = row.get("window_nll")
    if not nll or len(nll) < 2:
        return Interval(row.get("ppl") or math.nan, math.nan, math.nan)
    return ppl_interval(nll, cfg.level, cfg.n_boot, cfg.seed)


def compare_rows(params: Params, sweep_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The result rows (see the module docstring) of the sweep's rows."""
    cfg = params.compare
    by_cell: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for row in sweep_rows:
        by_cell[(row["backend"], float(row["budget"]))].append(row)
    out = []
    for (backend, budget), rows in by_cell.items():
        isolated = [r for r in rows if r["method"] in cfg.isolated and r["ppl"] is not None]
        best = min(isolated, key=lambda r: r["ppl"]) if isolated else None
        for row in rows:
            ppl = _interval(row, cfg)
            ratio = Interval(math.nan, math.nan, math.nan)
            if best is not None and row.get("window_nll") and best.get("window_nll"):
                ratio = paired_ppl_ratio(
                    row["window_nll"], best["window_nll"], cfg.level, cfg.n_boot, cfg.seed
                )
            out.append(
                {
                    "backend": backend,
                    "method": row["method"],
                    "budget": budget,
                    "avg_bits": row["avg_bits"],
                    "stored_bits": row["bits_per_weight"],
                    "ppl": row["ppl"],
                    "ppl_status": row["ppl_status"],
                    "ppl_ci_low": _finite(ppl.low),
                    "ppl_ci_high": _finite(ppl.high),
                    "best_isolated": best["method"] if best is not None else None,
                    "vs_isolated": _finite(ratio.estimate),
                    "vs_isolated_ci_low": _finite(ratio.low),
                    "vs_isolated_ci_high": _finite(ratio.high),
                    "n_windows": row["n_windows"],
                    "seqlen": row["seqlen"],
                }
            )
    return sorted(out, key=lambda r: (r["backend"], r["budget"], r["method"]))


def _num(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def format_markdown(rows: list[dict[str, Any]], level: float) -> str:
    """One table per backend: perplexity with its interval and the ratio to the best
    isolated baseline with its interval (below 1: better than every isolated metric)."""
    pct = f"{round(100 * level)}%"
    lines = []
    for backend in sorted({r["backend"] for r in rows}):
        lines += [
            f"### {backend}",
            "",
            f"| budget | method | avg bits | stored bits | PPL [{pct} CI] | vs best isolated "
            f"[{pct} CI] |",
            "| ---: | --- | ---: | ---: | --- | --- |",
        ]
        for r in (r for r in rows if r["backend"] == backend):
            ppl = (
                r["ppl_status"].upper()
                if r["ppl"] is None
                else f"{r['ppl']:.4g} [{_num(r['ppl_ci_low'], '.4g')}, "
                f"{_num(r['ppl_ci_high'], '.4g')}]"
            )
            ratio = (
                "—"
                if r["vs_isolated"] is None
                else f"{r['vs_isolated']:.3f} [{_num(r['vs_isolated_ci_low'], '.3f')}, "
                f"{_num(r['vs_isolated_ci_high'], '.3f')}] ({r['best_isolated']})"
            )
            lines.append(
                f"| {r['budget']:.2f} | {r['method']} | {r['avg_bits']:.3f} | "
                f"{r['stored_bits']:.3f} | {ppl} | {ratio} |"
            )
        lines.append("")
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = sorted({r["backend"] for r in rows})
    fig, axes = plt.subplots(
        1, len(backends), figsize=(5.2 * len(backends), 4.2), squeeze=False, sharey=True
    )
    for ax, backend in zip(axes[0], backends, strict=True):
        mine = [r for r in rows if r["backend"] == backend and r["ppl"] is not None]
        for method in sorted({r["method"] for r in mine}):
            pts = sorted((r for r in mine if r["method"] == method), key=lambda r: r["stored_bits"])
            lo = [r["ppl"] - (r["ppl_ci_low"] or r["ppl"]) for r in pts]
            hi = [(r["ppl_ci_high"] or r["ppl"]) - r["ppl"] for r in pts]
            ax.errorbar(
                [r["stored_bits"] for r in pts],
                [r["ppl"] for r in pts],
                yerr=[lo, hi],
                marker="o",
                markersize=3,
                capsize=2,
                label=method,
            )
        ax.set_yscale("log")
        ax.set_xlabel("stored bits per weight (scales and zeros included)")
        ax.set_title(backend)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("WikiText-2 perplexity (95% CI)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _flat(rows: list[dict[str, Any]]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for r in rows:
        key = Combination(r["backend"], r["method"], r["budget"]).key
        for field in ("ppl_ci_low", "ppl_ci_high", "vs_isolated"):
            flat[f"{key}/{field}"] = r[field]
    return flat


def run(params: Params) -> list[Path]:
    """Write the results table, its markdown, its plot and flat metrics; return them.

    Raises:
        FileNotFoundError: a combination of the sweep has no metrics (run ``impq sweep``).
    """
    sweep_rows = [read_json(metrics_path(params, c)) for c in combinations(params)]
    rows = compare_rows(params, sweep_rows)
    paths = result_paths(params)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n")
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(format_markdown(rows, params.compare.level))
    _plot(rows, paths["plot"])
    out_metrics = write_json(metrics_file(params), _flat(rows), versioned=False)
    log.info("compare: %d rows", len(rows))
    return [paths["json"], paths["markdown"], paths["plot"], out_metrics]
