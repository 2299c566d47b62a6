"""One cell of the sweep: quantize, check the budget, evaluate; and the float reference.

A cell's metrics file (and the float reference's) is kept while its input fingerprint
matches (:func:`input_fingerprint`, the one rule of whether sweep work is up to date), so
an interrupted sweep resumes where it stopped and a rerun measures nothing again. A
non-finite perplexity (a 2-bit model can diverge) is recorded with ``ppl: null`` and
``ppl_status`` ``"inf"`` or ``"nan"``; it is counted and shown, never dropped.

A backend whose models run out of process (``llamacpp``: a
:class:`~impq.backends.base.ScoredBackend`) is measured by its scorer instead: each
assignment is written in the runtime's format and scored by the runtime itself, and the
plots' reference line is that runtime's score of the float model (``float_gguf_ppl``).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from impq.artifacts import fingerprint, read_json, read_tensors, write_json
from impq.assignment import Assignment
from impq.backends import Backend, get_backend
from impq.backends.base import ScoredBackend, Scorer, check_within_budget, expected_bytes
from impq.config import Params
from impq.data import bos_of, without_bos
from impq.eval import PerplexityResult, perplexity
from impq.models import block_linears, load_model
from impq.pipeline.paths import calibration_path, sweep_float_path
from impq.pipeline.prepare import EvalTokens, read_eval_tokens
from impq.pipeline.stages import (
    CALIBRATED_CELL_PARAMS,
    CELL_PARAMS,
    DATABASE_CELL_PARAMS,
    params_subset,
)
from impq.pipeline.sweep import plan
from impq.pipeline.sweep.cache import BlockCache, FloatModel, from_database
from impq.pipeline.sweep.plan import Combination, assignment_input_path, metrics_path

__all__ = [
    "check_budget",
    "evaluate_one",
    "float_metrics",
    "input_fingerprint",
    "quantize_one",
    "run_one",
    "scorer_for",
]

log = logging.getLogger(__name__)


def input_fingerprint(
    params: Params,
    tokens_fp: str,
    cell: tuple[str, dict[int, int]] | None = None,
    scorer: Scorer | None = None,
) -> str:
    """What a sweep measurement depends on: its metrics file is kept while this matches.

    Every measurement: :data:`~impq.pipeline.stages.CELL_PARAMS` and the evaluation tokens
    (``tokens_fp``); the float reference (``cell`` None) is keyed on these alone, so a
    group size change, which redoes every cell, redoes it too. A cell (``cell``: its
    backend and bits) adds :func:`~impq.pipeline.sweep.plan.bits_key`, the assignment's
    bits and not the rest of its file (a re-solve that picks the same bits with other
    timings keeps the cell); a calibrated backend's (not ``data_free``) the calibration
    ids and :data:`~impq.pipeline.stages.CALIBRATED_CELL_PARAMS`; one assembled from the
    game's database (:func:`~impq.pipeline.sweep.cache.from_database`) also
    :data:`~impq.pipeline.stages.DATABASE_CELL_PARAMS`; a scored backend's the
    ``scorer``'s parts. Files enter by their contents (the same ids written again with
    other metadata keep every cell); the code does not enter (a refactor keeps an
    hour-long sweep).
    """
    engine = None if cell is None else get_backend(cell[0])
    calibrated = engine is not None and not engine.data_free
    database = engine is not None and from_database(params, engine)
    keys = (
        *CELL_PARAMS,
        *(CALIBRATED_CELL_PARAMS if calibrated else ()),
        *(DATABASE_CELL_PARAMS if database else ()),
    )
    parts: list[str | Tensor] = [json.dumps(params_subset(params, *keys), sort_keys=True)]
    parts.append(tokens_fp)
    if cell is not None:
        parts.append(plan.bits_key(*cell))
    if calibrated:
        parts.append(read_tensors(calibration_path(params))[0]["input_ids"])
    if scorer is not None:
        parts += scorer.fingerprint_parts
    return fingerprint(*parts)


def _kept(path: Path, input_fp: str) -> dict[str, Any] | None:
    """The metrics at ``path`` when they were measured on ``input_fp``, else None."""
    if path.is_file() and (old := read_json(path)).get("input_fingerprint") == input_fp:
        return old
    return None


def _from_blocks(params: Params, engine: Backend) -> bool:
    """Whether the sweep assembles ``engine``'s models from cached blocks: always for a
    data-free backend, for a calibrated one under ``backends.calibrated_cells: blocks``
    (or ``database``: the blocks of the game's database)."""
    return engine.data_free or params.backends.calibrated_cells != "sequential"


def quantize_one(
    params: Params,
    backend: str,
    bits: dict[int, int],
    cache: BlockCache | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Quantize a fresh float model under ``bits``; return it and its sizes.

    With a ``cache`` the float model is the cache's (loaded once) and a data-free
    backend's blocks come from it (see :class:`BlockCache`), a calibrated backend's too
    under ``backends.calibrated_cells: blocks``; otherwise the backend quantizes a copy.
    Without one the float model is loaded and quantized directly. Under
    ``backends.calibrated_cells: database`` a calibrated backend's model is the one the
    SPQE game scores for ``bits``, from the game's per-block database (through a cache
    made here when none is given); it holds the shipped format's weights dequantized, so
    its ``stored_bytes`` are those of that format for ``bits`` (its footprint, which
    :meth:`~impq.backends.base.Backend.stored_bytes` of the shipped model equals).

    Returns:
        The quantized model and ``stored_bytes`` (measured), ``expected_bytes``
        (footprint model), ``bits_per_weight`` (stored bits per quantized weight, metadata
        included), ``quantize_seconds`` (loading excluded) and ``blocks_quantized``
        (blocks quantized for this model, the rest came from the cache; from the
        database, blocks read from it for this model).

    Raises:
        ValueError: from the database, ``bits`` uses a precision not on ``spqe.ladder``.
    """
    engine = get_backend(backend)
    database = from_database(params, engine)
    if database and cache is None:
        cache = BlockCache(params)
    reference = cache.float_model.model if cache is not None else load_model(params.model)
    group = params.backends.group_size
    expected = expected_bytes(reference, bits, group, engine.footprint(reference))
    n_weights = sum(
        m.get_parameter("weight").numel()
        for b in bits
        for m in block_linears(reference, b).values()
    )
    start = time.perf_counter()
    if cache is not None and _from_blocks(params, engine):
        quantized, blocks_quantized = cache.assemble(backend, bits)
    else:
        blocks_quantized = len(bits)
        calibration = None
        if not engine.data_free:
            calibration = read_tensors(calibration_path(params))[0]["input_ids"]
        model = cache.float_model.copy() if cache is not None else reference
        quantized = engine.quantize(model, bits, group, calibration)
    stored = expected if database else engine.stored_bytes(quantized)
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

    A reference point that is over the budget by design (``uniform-<bits>``, its
    assignment's ``extra.over_budget``) is not checked: its row reports its own bytes.

    Raises:
        OverBudgetError: see :func:`impq.backends.base.check_within_budget`.
    """
    if assignment.extra.get("over_budget"):
        return
    precisions = assignment.extra.get("precisions", params.solver.precisions)
    check_within_budget(
        get_backend(backend), model, assignment.budget_bits, precisions,
        params.backends.group_size, stored,
    )  # fmt: skip


def evaluate_one(params: Params, model: nn.Module, tokens: EvalTokens) -> dict[str, Any]:
    """WikiText-2 perplexity of ``model`` under ``eval``, non-finite values flagged."""
    ev = params.eval
    start = time.perf_counter()
    result = perplexity(
        model, tokens.ids, ev.seqlen, ev.batch_size, ev.max_windows, False, tokens.bos
    )
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
    calibration, meta = read_tensors(calibration_path(params))
    with tempfile.TemporaryDirectory(prefix=f"impq-{backend}-") as tmp:
        yield engine.scorer(
            params.model,
            params.eval,
            Path(tmp),
            group_size=params.backends.group_size,
            calibration=without_bos(calibration["input_ids"], bos_of(meta)),
            bos=read_eval_tokens(params).bos,
        )


def run_one(
    params: Params,
    backend: str,
    method: str,
    budget: float,
    *,
    reuse: dict[str, dict[str, Any]] | None = None,
    cache: BlockCache | None = None,
    scorer: Scorer | None = None,
    path: Path | None = None,
) -> dict[str, Any]:
    """Quantize, measure and evaluate one combination; write and return its flat metrics.

    The metrics file is kept while its :func:`input_fingerprint` matches. ``reuse`` maps
    ``backend|bits`` to metrics already measured in this run: the same backend and bits
    give the same model, so the measurement is copied (noted in ``reused_from``);
    ``cache`` shares quantized blocks between combinations (:class:`BlockCache`);
    ``scorer`` (:func:`scorer_for`) measures a backend that runs out of process, made
    here for this one combination when not given; ``path`` is where its metrics go
    (default: the sweep's file of the combination, :func:`metrics_path`).

    Raises:
        FileNotFoundError: the assignment or the evaluation tokens are missing.
    """
    if scorer is None and isinstance(get_backend(backend), ScoredBackend):
        with scorer_for(params, backend) as made:
            return run_one(
                params, backend, method, budget, reuse=reuse, cache=cache, scorer=made, path=path
            )
    combo = Combination(backend, method, float(budget))
    path = path or metrics_path(params, combo)
    assignment = Assignment.load(assignment_input_path(params, method, combo.budget))
    tokens = read_eval_tokens(params)
    input_fp = input_fingerprint(params, tokens.fingerprint, (backend, assignment.bits), scorer)
    if (old := _kept(path, input_fp)) is not None:
        log.info("%s: up to date, skipped", combo.key)
        return old
    bits_key = plan.bits_key(backend, assignment.bits)
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
        facts, result = scorer.measure(assignment.bits, tokens.ids)
        check_budget(params, backend, assignment, scorer.model, facts["stored_bytes"])
        row = {**head, **facts, **_ppl_fields(result)}
    else:
        model, facts = quantize_one(params, backend, assignment.bits, cache=cache)
        check_budget(params, backend, assignment, model, facts["stored_bytes"])
        row = {**head, **facts, **evaluate_one(params, model, tokens)}
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

    Written to ``metrics/sweep/float.json`` and kept while its :func:`input_fingerprint`
    matches. ``float_model`` is the sweep's (default: loaded here when needed).
    """
    tokens = read_eval_tokens(params)
    input_fp = input_fingerprint(params, tokens.fingerprint)
    path = sweep_float_path(params)
    if (old := _kept(path, input_fp)) is not None:
        return old
    model = (float_model or FloatModel(params.model)).model
    row = {**evaluate_one(params, model, tokens), "input_fingerprint": input_fp}
    write_json(path, row, versioned=False)
    return row
