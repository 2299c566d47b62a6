"""Replicates of a seeded method (``random-0``, ``random-1``, ...) as mean and spread.

The sweep evaluates every replicate as a method of its own; these functions summarise
the replicates of each (backend, method, budget) for its table and flat metrics.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from impq.baselines import parse_baseline

__all__ = ["flat_summary", "replicate_of", "summarise", "table_lines"]


def replicate_of(method: str) -> str | None:
    """The seeded method that ``method`` replicates (``"random-2"`` -> ``"random"``), or None."""
    try:
        base, index = parse_baseline(method)
    except ValueError:
        return None
    return base if index is not None else None


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (backend, replicated method, budget), in the order first met.

    Each holds ``n`` (replicates), ``n_finite``, and over the finite perplexities
    ``ppl_mean``, ``ppl_std`` (sample standard deviation; 0 for one replicate),
    ``ppl_min`` and ``ppl_max`` (None when none is finite), and ``avg_bits_mean``.
    """
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        base = replicate_of(row["method"])
        if base is not None:
            groups[(row["backend"], base, float(row["budget"]))].append(row)
    out = []
    for (backend, method, budget), members in groups.items():
        ppl = np.array([r["ppl"] for r in members if r["ppl"] is not None], dtype=np.float64)
        finite = ppl.size > 0
        out.append(
            {
                "backend": backend,
                "method": method,
                "budget": budget,
                "n": len(members),
                "n_finite": int(ppl.size),
                "ppl_mean": float(ppl.mean()) if finite else None,
                "ppl_std": float(ppl.std(ddof=1)) if ppl.size > 1 else (0.0 if finite else None),
                "ppl_min": float(ppl.min()) if finite else None,
                "ppl_max": float(ppl.max()) if finite else None,
                "avg_bits_mean": float(np.mean([r["avg_bits"] for r in members])),
            }
        )
    return out


def flat_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``<backend>/<method>/<budget>/ppl_mean`` (and ``_std``, ``_min``, ``_max``, ``n``)."""
    flat: dict[str, Any] = {}
    for s in summarise(rows):
        key = f"{s['backend']}/{s['method']}/{s['budget']}"
        for field in ("ppl_mean", "ppl_std", "ppl_min", "ppl_max", "n", "n_finite"):
            flat[f"{key}/{field}"] = s[field]
    return flat


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Text lines ``backend method budget: mean ± std (min-max, n seeds)``."""
    lines = []
    for s in summarise(rows):
        head = f"{s['backend']:8} {s['method'] + ' x' + str(s['n']):12} {s['budget']:6.2f}"
        if s["ppl_mean"] is None or not math.isfinite(s["ppl_mean"]):
            lines.append(f"{head}  no finite perplexity over {s['n']} seeds")
            continue
        lines.append(
            f"{head}  ppl {s['ppl_mean']:.3f} ± {s['ppl_std']:.3f} "
            f"(min {s['ppl_min']:.3f}, max {s['ppl_max']:.3f}; {s['n_finite']}/{s['n']} seeds)"
        )
    return lines
