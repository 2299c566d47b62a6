"""The sweep's combined table (``metrics/sweep.json``, ``plots/sweep.csv``) and plots."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from impq.artifacts import atomic_path, write_json
from impq.config import Params
from impq.pipeline import replicates
from impq.pipeline.sweep.plan import Combination, plot_paths, table_paths

__all__ = ["CSV_COLUMNS", "format_table", "write_plots", "write_table"]

CSV_COLUMNS = (
    "backend",
    "method",
    "budget",
    "avg_bits",
    "bits_per_weight",
    "stored_bytes",
    "expected_bytes",
    "ppl",
    "ppl_status",
)
"""Columns of ``plots/sweep.csv`` (``ppl`` empty when not finite)."""


def _runtime_references(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Backend -> its runtime's perplexity of the float model, for scored backends."""
    return {r["backend"]: r["float_gguf_ppl"] for r in rows if "float_gguf_ppl" in r}


def write_table(
    params: Params, rows: list[dict[str, Any]], reference: dict[str, Any]
) -> list[Path]:
    """Write the flat ``metrics/sweep.json`` and ``plots/sweep.csv``."""
    flat: dict[str, Any] = {
        "float/ppl": reference["ppl"],
        "float/ppl_status": reference["ppl_status"],
    }
    for backend, ppl in _runtime_references(rows).items():
        flat[f"{backend}/float/ppl"] = ppl
    for row in rows:
        key = Combination(row["backend"], row["method"], row["budget"]).key
        for field in ("ppl", "ppl_status", "avg_bits", "bits_per_weight", "stored_bytes"):
            flat[f"{key}/{field}"] = row[field]
    flat.update(replicates.flat_summary(rows))  # mean and spread over random-<k> seeds
    flat["non_finite"] = sum(not row["ppl_finite"] for row in rows)
    flat["combinations"] = len(rows)
    json_path, csv_path = table_paths(params)
    write_json(json_path, flat, versioned=False)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "ppl": "" if row["ppl"] is None else row["ppl"]})
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue())
    return [json_path, csv_path]


def write_plots(
    params: Params, rows: list[dict[str, Any]], reference: dict[str, Any]
) -> list[Path]:
    """Perplexity against average bits, one line per method, one figure per backend.

    Non-finite points are drawn as red crosses on the top edge and labelled.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    runtime = _runtime_references(rows)
    for backend, path in plot_paths(params).items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        mine = [r for r in rows if r["backend"] == backend]
        ref_ppl, ref_label = reference["ppl"], "float"
        if backend in runtime:  # the runtime's own score of the float model
            ref_ppl, ref_label = runtime[backend], "float GGUF"
        finite = [r["ppl"] for r in mine if r["ppl"] is not None]
        top = max([*finite, ref_ppl or 0.0]) * 1.05 if finite else 1.0
        for method in params.eval.methods:
            pts = sorted((r for r in mine if r["method"] == method), key=lambda r: r["avg_bits"])
            ok = [r for r in pts if r["ppl"] is not None]
            ax.plot([r["avg_bits"] for r in ok], [r["ppl"] for r in ok], marker="o", label=method)
            bad = [r for r in pts if r["ppl"] is None]
            if bad:
                ax.scatter([r["avg_bits"] for r in bad], [top] * len(bad), marker="x", color="red")
                for r in bad:
                    ax.annotate(f"{method}: {r['ppl_status']}", (r["avg_bits"], top), fontsize=7)
        if ref_ppl is not None:
            ax.axhline(ref_ppl, color="grey", linestyle="--", label=ref_label)
        ax.set_xlabel("average bits per weight (assignment)")
        ax.set_ylabel(f"WikiText-2 perplexity ({reference['n_windows']} x {reference['seqlen']})")
        ax.set_title(f"{backend}: perplexity vs average bits")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def format_table(rows: list[dict[str, Any]], reference: dict[str, Any]) -> str:
    """The sweep as a fixed-width text table (what the CLI prints)."""
    lines = [
        f"{'backend':8} {'method':8} {'budget':>6} {'avg bits':>8} {'stored b/w':>10} "
        f"{'stored KiB':>10} {'ppl':>12}",
    ]
    for r in rows:
        ppl = f"{r['ppl']:.3f}" if r["ppl"] is not None else r["ppl_status"].upper()
        lines.append(
            f"{r['backend']:8} {r['method']:8} {r['budget']:6.2f} {r['avg_bits']:8.3f} "
            f"{r['bits_per_weight']:10.3f} {r['stored_bytes'] / 1024:10.1f} {ppl:>12}"
        )
    lines += replicates.table_lines(rows)  # mean and spread over random-<k> seeds
    ref = f"{reference['ppl']:.3f}" if reference["ppl"] is not None else reference["ppl_status"]
    bad = sum(not r["ppl_finite"] for r in rows)
    lines.append(f"float reference ppl {ref}; non-finite perplexities: {bad} of {len(rows)}")
    for backend, ppl in _runtime_references(rows).items():
        shown = f"{ppl:.3f}" if ppl is not None else "non-finite"
        lines.append(f"{backend}: float GGUF ppl {shown} (its runtime's own protocol)")
    return "\n".join(lines)
