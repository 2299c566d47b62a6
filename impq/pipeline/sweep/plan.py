"""The sweep's plan: its combinations and where each result, table and plot goes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from impq.assignment import Assignment
from impq.config import Params
from impq.pipeline import methods
from impq.pipeline.paths import sweep_cells_dir
from impq.pipeline.paths import sweep_plot_dir as plot_dir
from impq.pipeline.paths import sweep_table_paths as table_paths

__all__ = [
    "Combination",
    "assignment_input_path",
    "bits_key",
    "combinations",
    "metrics_path",
    "plot_dir",
    "plot_paths",
    "reuse_sources",
    "table_paths",
]


@dataclass(frozen=True)
class Combination:
    """One point of the sweep."""

    backend: str
    method: str
    budget: float

    @property
    def key(self) -> str:
        """``backend/method/budget``, the prefix of its keys in ``metrics/sweep.json``."""
        return f"{self.backend}/{self.method}/{self.budget}"


def combinations(params: Params) -> list[Combination]:
    """Every (backend, method, budget) of ``backends.names`` x ``eval.methods`` x budgets."""
    return [
        Combination(b, m, float(budget))
        for b in params.backends.names
        for m in params.eval.methods
        for budget in params.budgets
    ]


def assignment_input_path(params: Params, method: str, budget: float) -> Path:
    """The assignment a combination reads, from the stage that writes ``method``
    (:func:`impq.pipeline.methods.assignment_input_path`)."""
    return methods.assignment_input_path(params, method, budget)


def metrics_path(params: Params, combo: Combination, root: Path | None = None) -> Path:
    """``metrics/sweep/<backend>/<method>-<budget>.json`` (under ``root`` instead of the
    sweep's folder when given: the same cell measured another way)."""
    folder = sweep_cells_dir(params) if root is None else root
    return folder / combo.backend / f"{combo.method}-{combo.budget}.json"


def plot_paths(params: Params) -> dict[str, Path]:
    """Backend -> ``plots/sweep/ppl_vs_bits_<backend>.png``."""
    return {b: plot_dir(params) / f"ppl_vs_bits_{b}.png" for b in params.backends.names}


def bits_key(backend: str, bits: dict[int, int]) -> str:
    """``backend|bits``: combinations with the same key quantize to the same model."""
    return f"{backend}|{sorted(bits.items())}"


def reuse_sources(
    params: Params, combos: list[Combination]
) -> dict[Combination, tuple[Combination, str]]:
    """Combination -> the earlier one (in ``combos`` order) whose model it shares, and
    their :func:`bits_key`.

    Such a combination copies its source's measurement instead of quantizing and
    evaluating the same model again (``reused_from``); decided here, before any runs,
    so the rows are the same however the combinations are spread over workers.
    """
    first: dict[str, Combination] = {}
    sources = {}
    for c in combos:
        bits = Assignment.load(assignment_input_path(params, c.method, c.budget)).bits
        key = bits_key(c.backend, bits)
        if key in first:
            sources[c] = (first[key], key)
        else:
            first[key] = c
    return sources
