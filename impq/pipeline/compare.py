"""Stage ``compare``: the sweep's perplexities with intervals, each method against the
best uniform model that fits, the best isolated metric and EvoPress.

Reads every combination's metrics from the sweep (``metrics/sweep/<backend>/...``, which
hold the per-window NLLs) and writes, under ``paths.results``:

- ``results.json``: one object per backend x method x budget with ``avg_bits``
  (nominal), ``stored_bits`` (bits per weight the backend really stores, scales and
  zeros included), ``ppl`` and its bootstrap interval ``ppl_ci_low``/``ppl_ci_high``, and
  its perplexity over that of each reference at the same backend and budget (a paired
  bootstrap over the same windows) with its interval: ``vs_uniform_fit`` (the best
  uniform precision that fits, ``uniform-fit``), ``vs_isolated`` (the best of
  ``compare.isolated``, named in ``best_isolated``) and ``vs_evopress``;
- ``results.md``: per backend, the best impq variant against each reference at every
  budget, then every row;
- ``ppl_vs_stored_bits.png``: perplexity (log scale, with intervals) against stored bits,
  one line per method, the uniform models marked.

"Best isolated" is the lowest test perplexity among the isolated baselines at that
backend and budget: picked after the fact on the test split, which favours the
baselines. "Best impq variant" (:data:`~impq.pipeline.methods.IMPQ_VARIANTS`) is picked
the same way, which favours impq; the verified pick is the one made without the test
split.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from impq.artifacts import atomic_path, read_json, write_json
from impq.config import CompareConfig, Params
from impq.eval import Interval, paired_ppl_ratio, ppl_interval
from impq.pipeline.methods import IMPQ_VARIANTS
from impq.pipeline.paths import compare_metrics_path as metrics_file
from impq.pipeline.paths import compare_result_paths as result_paths
from impq.pipeline.sweep import Combination, combinations, metrics_path

__all__ = [
    "REFERENCES",
    "best_variants",
    "compare_rows",
    "format_markdown",
    "metrics_file",
    "result_paths",
    "run",
]

log = logging.getLogger(__name__)

REFERENCES = ("uniform_fit", "isolated", "evopress")
"""What every row is compared with (``vs_<reference>``), in the tables' order."""

_UNIFORM_FIT = ("uniform-fit", "uniform")  # ``uniform`` is uniform-fit's alias
_UNIFORM_AT = re.compile(r"uniform-\d+")  # every block at one precision
_UNIFORM_STYLE: dict[str, Any] = {"marker": "s", "markersize": 7, "color": "black", "ls": "none"}
_NAN = Interval(math.nan, math.nan, math.nan)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _interval(row: dict[str, Any], cfg: CompareConfig) -> Interval:
    nll = row.get("window_nll")
    if not nll or len(nll) < 2:
        return Interval(row.get("ppl") or math.nan, math.nan, math.nan)
    return ppl_interval(nll, cfg.level, cfg.n_boot, cfg.seed)


def _best(rows: list[dict[str, Any]], methods: Sequence[str]) -> dict[str, Any] | None:
    """The row of lowest finite perplexity among ``methods``, or None."""
    scored = [r for r in rows if r["method"] in methods and r["ppl"] is not None]
    return min(scored, key=lambda r: r["ppl"]) if scored else None


def _ratio(row: dict[str, Any], ref: dict[str, Any] | None, cfg: CompareConfig) -> Interval:
    if ref is None or not row.get("window_nll") or not ref.get("window_nll"):
        return _NAN
    return paired_ppl_ratio(row["window_nll"], ref["window_nll"], cfg.level, cfg.n_boot, cfg.seed)


def compare_rows(params: Params, sweep_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The result rows (see the module docstring) of the sweep's rows."""
    cfg = params.compare
    groups = {
        "uniform_fit": _UNIFORM_FIT,
        "isolated": tuple(cfg.isolated),
        "evopress": ("evopress",),
    }
    by_cell: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for row in sweep_rows:
        by_cell[(row["backend"], float(row["budget"]))].append(row)
    out = []
    for (backend, budget), rows in by_cell.items():
        refs = {name: _best(rows, methods) for name, methods in groups.items()}
        for row in rows:
            ppl = _interval(row, cfg)
            result = {
                "backend": backend,
                "method": row["method"],
                "budget": budget,
                "avg_bits": row["avg_bits"],
                "stored_bits": row["bits_per_weight"],
                "ppl": row["ppl"],
                "ppl_status": row["ppl_status"],
                "ppl_ci_low": _finite(ppl.low),
                "ppl_ci_high": _finite(ppl.high),
                "best_isolated": refs["isolated"]["method"] if refs["isolated"] else None,
            }
            for name, ref in refs.items():
                ratio = _ratio(row, ref, cfg)
                result[f"vs_{name}"] = _finite(ratio.estimate)
                result[f"vs_{name}_ci_low"] = _finite(ratio.low)
                result[f"vs_{name}_ci_high"] = _finite(ratio.high)
            result["n_windows"] = row["n_windows"]
            result["seqlen"] = row["seqlen"]
            out.append(result)
    return sorted(out, key=lambda r: (r["backend"], r["budget"], r["method"]))


def _num(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def _ratio_text(r: dict[str, Any], name: str) -> str:
    if r[f"vs_{name}"] is None:
        return "—"
    text = (
        f"{r[f'vs_{name}']:.3f} [{_num(r[f'vs_{name}_ci_low'], '.3f')}, "
        f"{_num(r[f'vs_{name}_ci_high'], '.3f')}]"
    )
    return f"{text} ({r['best_isolated']})" if name == "isolated" else text


def _ppl_text(r: dict[str, Any]) -> str:
    if r["ppl"] is None:
        return str(r["ppl_status"]).upper()
    return f"{r['ppl']:.4g} [{_num(r['ppl_ci_low'], '.4g')}, {_num(r['ppl_ci_high'], '.4g')}]"


def best_variants(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per backend and budget, the row of the impq variant with the lowest perplexity."""
    by_cell: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cell[(r["backend"], r["budget"])].append(r)
    best = (_best(cell, IMPQ_VARIANTS) for cell in by_cell.values())
    return sorted((r for r in best if r is not None), key=lambda r: (r["backend"], r["budget"]))


def format_markdown(rows: list[dict[str, Any]], level: float) -> str:
    """Per backend: the best impq variant against each reference at every budget, then every
    row with its perplexity and ratios (below 1: better than the reference), with intervals."""
    pct = f"{round(100 * level)}%"
    refs = f"vs uniform-fit [{pct} CI] | vs best isolated [{pct} CI] | vs EvoPress [{pct} CI]"
    lines = []
    for backend in sorted({r["backend"] for r in rows}):
        mine = [r for r in rows if r["backend"] == backend]
        lines += [
            f"### {backend}",
            "",
            f"| budget | best impq variant | stored bits | PPL [{pct} CI] | {refs} |",
            "| ---: | --- | ---: | --- | --- | --- | --- |",
        ]
        for r in best_variants(mine):
            ratios = " | ".join(_ratio_text(r, name) for name in REFERENCES)
            lines.append(
                f"| {r['budget']:.2f} | {r['method']} | {r['stored_bits']:.3f} | "
                f"{_ppl_text(r)} | {ratios} |"
            )
        lines += [
            "",
            f"| budget | method | avg bits | stored bits | PPL [{pct} CI] | {refs} |",
            "| ---: | --- | ---: | ---: | --- | --- | --- | --- |",
        ]
        for r in mine:
            ratios = " | ".join(_ratio_text(r, name) for name in REFERENCES)
            lines.append(
                f"| {r['budget']:.2f} | {r['method']} | {r['avg_bits']:.3f} | "
                f"{r['stored_bits']:.3f} | {_ppl_text(r)} | {ratios} |"
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
            fixed = _UNIFORM_AT.fullmatch(method) is not None  # one model at every budget
            if fixed:
                pts = pts[:1]
            ax.errorbar(
                [r["stored_bits"] for r in pts],
                [r["ppl"] for r in pts],
                yerr=[
                    [r["ppl"] - (r["ppl_ci_low"] or r["ppl"]) for r in pts],
                    [(r["ppl_ci_high"] or r["ppl"]) - r["ppl"] for r in pts],
                ],
                capsize=2,
                **_UNIFORM_STYLE if fixed else {"marker": "o", "markersize": 3, "label": method},
            )
            if fixed:
                xy = (pts[0]["stored_bits"], pts[0]["ppl"])
                ax.annotate(method, xy, xytext=(4, 4), textcoords="offset points", fontsize=7)
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
        for field in ("ppl", "ppl_ci_low", "ppl_ci_high", *(f"vs_{n}" for n in REFERENCES)):
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
