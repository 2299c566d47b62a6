"""``export.backend: llamacpp``: the export stage writes a GGUF that llama.cpp loads and scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from gguf_models import GGUF_SIZES, MIXED

from impq.artifacts import write_tensors
from impq.assignment import Assignment
from impq.backends.base import OverBudgetError, budget_bytes_for
from impq.config import Params
from impq.export import RuntimeChecked, get_exporter
from impq.export.gguf_exporter import GGUF_FILE
from impq.llamacpp.build import LlamaCpp
from impq.llamacpp.gguf import type_bits_per_weight
from impq.models.tiny import tiny_model
from impq.pipeline import export
from impq.pipeline.params import parse_params
from impq.pipeline.prepare import calibration_path, eval_tokens_path

SEQLEN, WINDOWS = 64, 4


def _params(folder: Path, tmp_path: Path, ids: torch.Tensor, budget: float) -> Params:
    params = parse_params(
        {
            "model": {"source": str(folder), "device": "cpu"},
            "eval": {"seqlen": SEQLEN, "max_windows": WINDOWS, "methods": ["impq"]},
            "backends": {"names": ["llamacpp"], "group_size": 64},
            "budgets": [2.5, 3.0],
            "export": {"backend": "llamacpp", "budget": budget, "out": str(tmp_path / "ship")},
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    write_tensors(calibration_path(params), {"input_ids": ids[: 4 * SEQLEN].view(4, SEQLEN)}, {})
    eval_ids = ids[-(WINDOWS + 1) * SEQLEN :]  # the end of the text, the start calibrates
    write_tensors(eval_tokens_path(params), {"input_ids": eval_ids}, {"fingerprint": "eval"})
    return params


def _assign(params: Params, bits: dict[int, int], budget: float) -> None:
    model = tiny_model("llama", 4, **GGUF_SIZES)  # the shapes of the saved model
    Assignment(
        bits=bits, method="impq", budget_bits=budget, stored_bytes=0,
        avg_bits=sum(bits.values()) / len(bits),
        extra={"precisions": [2, 4], "group_size": 64,
               "budget_bytes": budget_bytes_for(model, budget, 64, (2, 4))},
    ).save(export.assignment_input(params))  # fmt: skip


def test_exporter_is_registered_and_checked_in_its_runtime() -> None:
    exporter = get_exporter("llamacpp")
    assert isinstance(exporter, RuntimeChecked) and exporter.needs_calibration
    assert not isinstance(get_exporter("hqq"), RuntimeChecked)


@pytest.mark.slow  # about 20 s of CPU: conversion, imatrix, quantize, two loads, two scores
def test_stage_ships_a_gguf_that_llamacpp_loads_within_budget(
    llamacpp: LlamaCpp, tiny_dirs: dict[str, Path], reference_ids: torch.Tensor, tmp_path: Path
) -> None:
    params = _params(tiny_dirs["llama"], tmp_path, reference_ids, 3.0)
    _assign(params, MIXED, 3.0)
    metrics = export.run(params)

    out = export.output_dir(params)
    assert (out / GGUF_FILE).is_file() and (out / "tokenizer.json").is_file()
    assert json.loads(export.metrics_path(params).read_text()) == metrics
    assert metrics["linears"] == 4 * 7 and metrics["bits"] == "2,4,2,4"
    assert metrics["stored_bytes"] == metrics["expected_bytes"] <= metrics["budget_bytes"]
    assert metrics["solver_budget_bytes"] < metrics["budget_bytes"]  # Q2_K: 2.625 bits/weight
    q2, q4 = type_bits_per_weight("Q2_K"), type_bits_per_weight("Q4_K")
    assert metrics["bits_per_weight"] == pytest.approx((q2 + q4) / 2)
    assert metrics["size_on_disk_bytes"] > metrics["stored_bytes"]  # + f16 embeddings, head
    assert metrics["ppl_reloaded"] == pytest.approx(metrics["ppl_in_process"], rel=1e-6)
    assert metrics["ppl_llamacpp_rel_diff"] <= metrics["ppl_llamacpp_rtol"]
    assert metrics["ppl_llamacpp"] > 1.0


def test_stage_refuses_a_gguf_over_budget_and_ships_nothing(
    llamacpp: LlamaCpp, tiny_dirs: dict[str, Path], reference_ids: torch.Tensor, tmp_path: Path
) -> None:
    params = _params(tiny_dirs["llama"], tmp_path, reference_ids, 2.5)
    _assign(params, {0: 4, 1: 4, 2: 2, 3: 4}, 2.5)  # 3.5 average bits for a 2.5 budget
    with pytest.raises(OverBudgetError, match="llamacpp export stores"):
        export.run(params)
    assert not export.output_dir(params).exists()
    assert not export.metrics_path(params).exists()
