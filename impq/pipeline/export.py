"""Stage ``export``: the model one assignment describes, written for its runtime and checked.

It reads ``export.method``'s assignment for the export budget (``export.budget``, else
the largest of ``budgets``; the file :func:`assignment_input` names), quantizes the float
model with ``export.backend``'s exporter and writes it to ``export.out`` in that runtime's
format. Nothing written is trusted:

1. the bits, weights and group size of every quantized module are read back from the
   files alone and must equal the assignment (:func:`impq.export.check_stored`);
2. the bytes those modules store must equal the exporter's footprint and stay within the
   budget in that footprint's bytes (:func:`impq.backends.base.budget_bytes_for`);
3. the files are reloaded through the runtime's library and their WikiText-2 perplexity
   (``eval`` protocol) must match the in-process model's within the exporter's
   ``ppl_rtol``;
4. an exporter whose runtime is not a torch library (llama.cpp,
   :class:`~impq.export.RuntimeChecked`) has the runtime load and score the files too,
   compared with the reloaded model under the runtime's own statistic.

The source model's tokenizer is written beside the weights. The folder is written beside
``export.out`` and moved there only when every check passed. The figures go to
``metrics/export.json``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from impq.artifacts import read_tensors, write_json
from impq.assignment import Assignment
from impq.backends.base import OverBudgetError, budget_bytes_for, expected_bytes
from impq.config import Params
from impq.eval import perplexity
from impq.export import ExportCheckError, Exporter, RuntimeChecked, check_stored, get_exporter
from impq.export.files import folder_bytes
from impq.models import block_linears, get_layout, load_model, load_tokenizer
from impq.pipeline.paths import calibration_path
from impq.pipeline.paths import export_dir as output_dir
from impq.pipeline.paths import export_metrics_path as metrics_path
from impq.pipeline.prepare import EvalTokens, read_eval_tokens
from impq.pipeline.sweep import assignment_input_path

__all__ = ["assignment_input", "expected_linears", "metrics_path", "output_dir", "run"]

log = logging.getLogger(__name__)


def assignment_input(params: Params) -> Path:
    """The assignment this stage ships (the sweep's path for that method and budget)."""
    return assignment_input_path(params, params.export.method, params.export_budget())


def expected_linears(model: nn.Module, bits: dict[int, int]) -> dict[str, tuple[int, int]]:
    """Full module name -> (bits, weights) of every linear ``bits`` quantizes."""
    prefix = get_layout(model).blocks
    return {
        f"{prefix}.{block}.{name}": (b, m.get_parameter("weight").numel())
        for block, b in bits.items()
        for name, m in block_linears(model, block).items()
    }


def _write_tokenizer(params: Params, folder: Path) -> None:
    """Ship the source model's tokenizer beside the weights (when it has one)."""
    try:
        tokenizer = load_tokenizer(params.model)
    except (OSError, ValueError) as err:
        log.warning("%s has no tokenizer to ship with the export (%s)", params.model.source, err)
        return
    tokenizer.save_pretrained(str(folder))


def _ppl(params: Params, model: nn.Module, tokens: EvalTokens) -> tuple[float, int]:
    ev = params.eval
    result = perplexity(
        model, tokens.ids, ev.seqlen, ev.batch_size, ev.max_windows, False, tokens.bos
    )
    return result.ppl, result.n_windows


def _check_budget(stored: int, expected: int, budget: int, name: str) -> None:
    if stored != expected:
        log.warning(
            "%s stores %d bytes where its footprint counts %d: check impq.footprint",
            name, stored, expected,
        )  # fmt: skip
    if stored > budget:
        raise OverBudgetError(
            f"the {name} export stores {stored} bytes in its quantized linears, over its "
            f"budget of {budget} bytes by {stored - budget}"
        )


def _check_reload(exporter: Exporter, in_process: float, reloaded: float) -> float:
    diff = abs(reloaded - in_process) / in_process if math.isfinite(in_process) else math.nan
    if not math.isfinite(reloaded) or not diff <= exporter.ppl_rtol:
        raise ExportCheckError(
            f"the reloaded {exporter.name} export has perplexity {reloaded}, the in-process "
            f"model {in_process} (relative difference {diff}, tolerance {exporter.ppl_rtol})"
        )
    return diff


def run(params: Params) -> dict[str, Any]:
    """Export, check, and write ``metrics/export.json``; return its metrics.

    Raises:
        FileNotFoundError: the assignment, calibration set or evaluation tokens are missing.
        ValueError: ``export.method`` is not in ``eval.methods``, or the assignment was
            solved for another group size.
        ExportCheckError: the files do not hold the assignment, or the reload disagrees.
        OverBudgetError: the stored model exceeds its budget.
    """
    cfg, group = params.export, params.backends.group_size
    params.check_export_method()
    budget = params.export_budget()
    assignment = Assignment.load(assignment_input(params))
    if assignment.extra.get("group_size", group) != group:
        raise ValueError(
            f"{assignment_input(params)} was solved for group size "
            f"{assignment.extra['group_size']}, backends.group_size is {group}: rerun its stage"
        )
    exporter = get_exporter(cfg.backend)
    model = load_model(params.model)
    expected = expected_linears(model, assignment.bits)
    footprint = exporter.footprint(model)
    expected_total = expected_bytes(model, assignment.bits, group, footprint)
    precisions = assignment.extra.get("precisions", params.solver.precisions)
    budget_total = budget_bytes_for(model, budget, group, precisions, footprint)
    _check_budget(expected_total, expected_total, budget_total, cfg.backend)  # before writing
    calibration = None
    if exporter.needs_calibration:
        calibration = read_tensors(calibration_path(params))[0]["input_ids"]
    tokens = read_eval_tokens(params)

    out = output_dir(params)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_tokenizer(params, tmp)  # a converter reads it (llama.cpp's)
        in_process = exporter.export(model, assignment.bits, group, calibration, tmp)
        _write_tokenizer(params, tmp)  # replaces the stand-in GPTQModel needs to quantize
        stored = exporter.read_stored(tmp)
        check_stored(stored, expected, group)
        stored_total = sum(s.nbytes for s in stored.values())
        _check_budget(stored_total, expected_total, budget_total, cfg.backend)
        device = next(in_process.parameters()).device
        ppl_in, n_windows = _ppl(params, in_process, tokens)
        del in_process, model
        ppl_re, _ = _ppl(params, exporter.load(tmp, device), tokens)
        diff = _check_reload(exporter, ppl_in, ppl_re)
        runtime: dict[str, Any] = {}
        if isinstance(exporter, RuntimeChecked):
            ev = params.eval
            runtime = exporter.check_runtime(tmp, tokens.ids, ev.seqlen, ev.max_windows, tokens.bos)
        if out.exists():
            shutil.rmtree(out)
        tmp.chmod(0o755)  # mkdtemp made it private
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    n_weights = sum(n for _, n in expected.values())
    metrics: dict[str, Any] = {
        "backend": cfg.backend,
        "method": cfg.method,
        "budget": budget,
        "out": str(out),
        "avg_bits": assignment.avg_bits,
        "bits": ",".join(str(assignment.bits[i]) for i in sorted(assignment.bits)),
        "linears": len(stored),
        "quantized_weights": n_weights,
        "stored_bytes": stored_total,
        "expected_bytes": expected_total,
        "budget_bytes": budget_total,
        "solver_budget_bytes": assignment.extra.get("budget_bytes"),
        "bits_per_weight": 8 * stored_total / n_weights,
        "size_on_disk_bytes": folder_bytes(out),
        "ppl_in_process": ppl_in,
        "ppl_reloaded": ppl_re,
        "ppl_rel_diff": diff,
        "ppl_rtol": exporter.ppl_rtol,
        "n_windows": n_windows,
        "seqlen": params.eval.seqlen,
        **runtime,
    }
    write_json(metrics_path(params), metrics, versioned=False)
    log.info(
        "export %s/%s/%s -> %s: %d linears checked, %d/%d bytes (%.3f bits/weight), "
        "%d bytes on disk, ppl %.4f in process, %.4f reloaded",
        cfg.backend, cfg.method, budget, out, len(stored), stored_total, budget_total,
        metrics["bits_per_weight"], metrics["size_on_disk_bytes"], ppl_in, ppl_re,
    )  # fmt: skip
    return metrics
