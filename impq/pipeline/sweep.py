"""Stage ``sweep``: quantize and evaluate every (backend, method, budget) combination.

For each combination the float model (loaded once per process, :class:`FloatModel`) is
quantized by the backend under the method's assignment (:func:`assignment_input_path`:
``artifacts/assign/<method>/<budget>.json`` from the ``assign`` stage for an objective
method, ``artifacts/baselines/<method>/<budget>.json`` from the ``baselines`` stage), and
its real stored size, average bits and WikiText-2 perplexity
(``eval`` protocol) are written to ``metrics/sweep/<backend>/<method>-<budget>.json``. A
metrics file whose input fingerprint matches is reused, so an interrupted sweep resumes
where it stopped. The combined table goes to ``metrics/sweep.json`` (flat) and
``plots/sweep.csv``, and one plot of perplexity against average bits per backend to
``plots/sweep/ppl_vs_bits_<backend>.png`` (one output folder, whatever the backends).

A backend whose models run out of process (``llamacpp``: a
:class:`~impq.backends.base.ScoredBackend`) is measured by its scorer instead: each
assignment is written in the runtime's format and scored by the runtime itself, and the
plots' reference line is that runtime's score of the float model (``float_gguf_ppl``).

A non-finite perplexity (a 2-bit model can diverge) is recorded with ``ppl: null`` and
``ppl_status`` ``"inf"`` or ``"nan"``; it is counted and shown, never dropped.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import math
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impq.artifacts import atomic_path, fingerprint, read_json, read_tensors, write_json
from impq.assignment import Assignment
from impq.backends import get_backend
from impq.backends.base import (
    ScoredBackend,
    Scorer,
    check_within_budget,
    expected_bytes,
    set_submodule,
)
from impq.config import ModelConfig, Params
from impq.eval import PerplexityResult, perplexity
from impq.models import block_linears, get_layout, load_model
from impq.pipeline import methods, replicates
from impq.pipeline.paths import calibration_path, eval_tokens_path
from impq.pipeline.paths import sweep_plot_dir as plot_dir
from impq.pipeline.paths import sweep_table_paths as table_paths

__all__ = [
    "CSV_COLUMNS",
    "BlockCache",
    "Combination",
    "FloatModel",
    "assignment_input_path",
    "check_budget",
    "combinations",
    "evaluate_one",
    "float_metrics",
    "format_table",
    "metrics_path",
    "plot_dir",
    "plot_paths",
    "quantize_one",
    "run",
    "run_one",
    "scorer_for",
    "table_paths",
    "write_plots",
    "write_table",
]

log = logging.getLogger(__name__)

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


def metrics_path(params: Params, combo: Combination) -> Path:
    """``metrics/sweep/<backend>/<method>-<budget>.json``."""
    return (
        Path(params.paths.metrics) / "sweep" / combo.backend / f"{combo.method}-{combo.budget}.json"
    )


def plot_paths(params: Params) -> dict[str, Path]:
    """Backend -> ``plots/sweep/ppl_vs_bits_<backend>.png``."""
    return {b: plot_dir(params) / f"ppl_vs_bits_{b}.png" for b in params.backends.names}


def _eval_tokens(params: Params) -> tuple[torch.Tensor, str]:
    tensors, meta = read_tensors(eval_tokens_path(params))
    ids = tensors["input_ids"]
    return ids, meta.get("fingerprint") or fingerprint(ids)


def _input_fingerprint(
    params: Params, combo: Combination, tokens_fp: str, scorer: Scorer | None = None
) -> str:
    """What a combination's result depends on: assignment, model, protocol, data (the
    calibration set too unless the backend is data-free), and the scorer's parts."""
    ev = params.eval
    data_free = get_backend(combo.backend).data_free
    return fingerprint(
        combo.backend,
        str(params.backends.group_size),
        assignment_input_path(params, combo.method, combo.budget).read_bytes(),
        params.model.model_dump_json(),
        f"{ev.seqlen}/{ev.max_windows}",
        tokens_fp,
        "" if data_free else calibration_path(params).read_bytes(),
        *(scorer.fingerprint_parts if scorer is not None else ()),
    )


class FloatModel:
    """The float model of ``params.model``, loaded once on first use and handed out as
    fresh models, so a sweep pays one load per process instead of one per cell (a GGUF
    source is dequantized on every load: about 17 s of a 30 s SmolLM2 cell).

    The loaded model itself is never changed. Safe to share between threads.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.loads = 0
        """Times the model was read from its source (at most once)."""
        self._model: nn.Module | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> nn.Module:
        """The shared float model: read it, never change it."""
        with self._lock:
            if self._model is None:
                self._model = load_model(self.cfg)
                self.loads += 1
            return self._model

    def copy(self) -> nn.Module:
        """A deep copy that the caller owns and may change in place (quantize)."""
        return copy.deepcopy(self.model)

    def view(self) -> nn.Module:
        """A new module tree over the float model's own tensors (no tensor is copied).

        Replace its submodules freely; changing one of its tensors in place would change
        the float model.
        """
        source = self.model
        shared = {id(t): t for t in (*source.parameters(), *source.buffers())}
        view: nn.Module = copy.deepcopy(source, memo=shared)
        return view


class BlockCache:
    """Quantized blocks of data-free backends, made once per (backend, block, bits), and
    the :class:`FloatModel` every cell starts from.

    A data-free backend quantizes every linear from its own weight, so a model under any
    assignment can be assembled from blocks quantized one at a time: the modules are
    shared (read-only) between the models of one sweep instead of being re-quantized for
    every combination. Safe to share between threads (one lock around the assembly).

    Args:
        params: the sweep's params (model, group size).
        float_model: the float model to start from; share one between the caches of a
            process so that it is loaded once (default: a new one, loaded on first use).
    """

    def __init__(self, params: Params, float_model: FloatModel | None = None) -> None:
        self.params = params
        self.float_model = float_model if float_model is not None else FloatModel(params.model)
        self.quantized = 0
        """Blocks quantized so far (each (backend, block, bits) at most once)."""
        self._sources: dict[tuple[str, int], nn.Module] = {}
        self._done: dict[tuple[str, int], set[int]] = {}
        self._lock = threading.Lock()

    def assemble(self, backend: str, bits: dict[int, int]) -> tuple[nn.Module, int]:
        """A model with the quantized linears of every assigned block, the rest the float
        model's (shared, see :meth:`FloatModel.view`).

        Returns:
            The model and how many of its blocks were quantized now (not found cached).
        """
        engine = get_backend(backend)
        model = self.float_model.view()
        new = 0
        with self._lock:
            for block, b in sorted(bits.items()):
                key = (backend, b)
                if key not in self._sources:
                    self._sources[key] = self.float_model.copy()
                    self._done[key] = set()
                source = self._sources[key]
                if block not in self._done[key]:
                    engine.quantize(source, {block: b}, self.params.backends.group_size)
                    self._done[key].add(block)
                    self.quantized += 1
                    new += 1
                prefix = f"{get_layout(model).blocks}.{block}."
                for name in block_linears(model, block):
                    set_submodule(model, prefix + name, source.get_submodule(prefix + name))
        return model, new


def quantize_one(
    params: Params,
    backend: str,
    bits: dict[int, int],
    cache: BlockCache | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Quantize a fresh float model under ``bits``; return it and its sizes.

    With a ``cache`` the float model is the cache's (loaded once) and a data-free
    backend's blocks come from it (see :class:`BlockCache`); any other backend quantizes
    a copy. Without one the float model is loaded and quantized directly.

    Returns:
        The quantized model and ``stored_bytes`` (measured), ``expected_bytes``
        (footprint model), ``bits_per_weight`` (stored bits per quantized weight, metadata
        included), ``quantize_seconds`` (loading excluded) and ``blocks_quantized``
        (blocks quantized for this model, the rest came from the cache).
    """
    reference = cache.float_model.model if cache is not None else load_model(params.model)
    group = params.backends.group_size
    engine = get_backend(backend)
    expected = expected_bytes(reference, bits, group, engine.footprint(reference))
    n_weights = sum(
        m.get_parameter("weight").numel()
        for b in bits
        for m in block_linears(reference, b).values()
    )
    start = time.perf_counter()
    if cache is not None and engine.data_free:
        quantized, blocks_quantized = cache.assemble(backend, bits)
    else:
        blocks_quantized = len(bits)
        calibration = None
        if not engine.data_free:
            calibration = read_tensors(calibration_path(params))[0]["input_ids"]
        model = cache.float_model.copy() if cache is not None else reference
        quantized = engine.quantize(model, bits, group, calibration)
    stored = engine.stored_bytes(quantized)
    facts = {
        "stored_bytes": stored,
        "expected_bytes": expected,
        "bits_per_weight": 8 * stored / n_weights if n_weights else math.nan,
        "quantize_seconds": time.perf_counter() - start,
        "blocks_quantized": blocks_quantized,
    }
    return quantized, facts


def check_budget(
    params: Params, backend: str, assignment: Assignment, model: nn.Module, stored: int
) -> None:
    """Fail loudly when a quantized model stores more than its budget in its backend's bytes.

    Raises:
        OverBudgetError: see :func:`impq.backends.base.check_within_budget`.
    """
    precisions = assignment.extra.get("precisions", params.solver.precisions)
    check_within_budget(
        get_backend(backend), model, assignment.budget_bits, precisions,
        params.backends.group_size, stored,
    )  # fmt: skip


def evaluate_one(params: Params, model: nn.Module, ids: torch.Tensor) -> dict[str, Any]:
    """WikiText-2 perplexity of ``model`` under ``eval``, non-finite values flagged."""
    ev = params.eval
    start = time.perf_counter()
    result = perplexity(model, ids, ev.seqlen, ev.batch_size, ev.max_windows, progress=False)
    return {**_ppl_fields(result), "eval_seconds": time.perf_counter() - start}


def _ppl_fields(result: PerplexityResult) -> dict[str, Any]:
    status = "finite" if math.isfinite(result.ppl) else ("nan" if math.isnan(result.ppl) else "inf")
    return {
        "ppl": result.ppl if status == "finite" else None,
        "ppl_status": status,
        "ppl_finite": status == "finite",
        "mean_nll": result.mean_nll if math.isfinite(result.mean_nll) else None,
        "n_windows": result.n_windows,
        "n_tokens": result.n_tokens,
        "seqlen": result.seqlen,
        "window_nll": list(result.window_nll),  # for paired bootstrap intervals
    }


@contextmanager
def scorer_for(params: Params, backend: str) -> Iterator[Scorer | None]:
    """The scorer of a :class:`~impq.backends.base.ScoredBackend`, its files in a
    temporary folder removed on exit; None for a backend measured in process."""
    engine = get_backend(backend)
    if not isinstance(engine, ScoredBackend):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix=f"impq-{backend}-") as tmp:
        yield engine.scorer(params, Path(tmp))


def run_one(
    params: Params,
    backend: str,
    method: str,
    budget: float,
    *,
    reuse: dict[str, dict[str, Any]] | None = None,
    cache: BlockCache | None = None,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Quantize, measure and evaluate one combination; write and return its flat metrics.

    The metrics file is reused when its ``input_fingerprint`` matches. ``reuse`` maps
    ``backend|bits`` to metrics already measured in this run: the same backend and bits
    give the same model, so the measurement is copied (noted in ``reused_from``);
    ``cache`` shares quantized blocks between combinations (:class:`BlockCache`);
    ``scorer`` (:func:`scorer_for`) measures a backend that runs out of process, made
    here for this one combination when not given.

    Raises:
        FileNotFoundError: the assignment or the evaluation tokens are missing.
    """
    if scorer is None and isinstance(get_backend(backend), ScoredBackend):
        with scorer_for(params, backend) as made:
            return run_one(params, backend, method, budget, reuse=reuse, cache=cache, scorer=made)
    combo = Combination(backend, method, float(budget))
    path = metrics_path(params, combo)
    assignment = Assignment.load(assignment_input_path(params, method, combo.budget))
    ids, tokens_fp = _eval_tokens(params)
    input_fp = _input_fingerprint(params, combo, tokens_fp, scorer)
    if path.is_file():
        old = read_json(path)
        if old.get("input_fingerprint") == input_fp:
            log.info("%s: up to date, skipped", combo.key)
            return old
    bits_key = f"{backend}|{sorted(assignment.bits.items())}"
    head = {
        "backend": backend,
        "method": method,
        "budget": combo.budget,
        "avg_bits": assignment.avg_bits,
        "bits": ",".join(str(assignment.bits[i]) for i in sorted(assignment.bits)),
        "input_fingerprint": input_fp,
    }
    if reuse is not None and bits_key in reuse:
        source = reuse[bits_key]
        measured = {k: v for k, v in source.items() if k not in head and k != "reused_from"}
        row = {
            **head,
            **measured,
            "blocks_quantized": 0,
            "reused_from": f"{source['method']}-{source['budget']}",
        }
    elif scorer is not None:
        facts, result = scorer.measure(assignment.bits, ids)
        check_budget(params, backend, assignment, scorer.model, facts["stored_bytes"])
        row = {**head, **facts, **_ppl_fields(result)}
    else:
        model, facts = quantize_one(params, backend, assignment.bits, cache=cache)
        check_budget(params, backend, assignment, model, facts["stored_bytes"])
        row = {**head, **facts, **evaluate_one(params, model, ids)}
        del model
    write_json(path, row, versioned=False)
    if reuse is not None:
        reuse.setdefault(bits_key, row)
    log.info(
        "%s: avg %.3f bits, %.3f stored bits/weight, ppl %s",
        combo.key, row["avg_bits"], row["bits_per_weight"], row["ppl"] or row["ppl_status"],
    )  # fmt: skip
    return row


def float_metrics(params: Params, float_model: FloatModel | None = None) -> dict[str, Any]:
    """Perplexity of the float model under the same protocol (the plots' reference line).

    Written to ``metrics/sweep/float.json`` and reused while its inputs are unchanged.
    ``float_model`` is the sweep's (default: loaded here when needed).
    """
    ids, tokens_fp = _eval_tokens(params)
    ev = params.eval
    input_fp = fingerprint(
        params.model.model_dump_json(), f"{ev.seqlen}/{ev.max_windows}", tokens_fp
    )
    path = Path(params.paths.metrics) / "sweep" / "float.json"
    if path.is_file() and (old := read_json(path)).get("input_fingerprint") == input_fp:
        return old
    model = (float_model or FloatModel(params.model)).model
    row = {**evaluate_one(params, model, ids), "input_fingerprint": input_fp}
    write_json(path, row, versioned=False)
    return row


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
