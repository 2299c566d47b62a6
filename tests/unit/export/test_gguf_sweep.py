"""The llamacpp backend: assignments measured as GGUF files and scored by llama-perplexity."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from gguf_models import MIXED, SETTINGS, save_tiny

from impq.artifacts import write_tensors
from impq.backends import UnsupportedError, get_backend
from impq.backends.llamacpp import PPL_PROTOCOL
from impq.config import Params, parse_params
from impq.export.gguf import GgufExportError, type_bits_per_weight
from impq.export.llamacpp import LlamaCpp
from impq.models.tiny import tiny_model
from impq.pipeline.prepare import calibration_path

SEQLEN, WINDOWS = 64, 4


def _params(model_dir: Path, tmp_path: Path, calibration: torch.Tensor) -> Params:
    params = parse_params(
        {
            "model": {"source": str(model_dir), "device": "cpu"},
            "eval": {"seqlen": SEQLEN, "max_windows": WINDOWS},
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    write_tensors(calibration_path(params), {"input_ids": calibration}, {})
    return params


def test_in_process_use_is_refused_with_the_way_out() -> None:
    backend = get_backend("llamacpp")
    assert not backend.data_free
    with pytest.raises(UnsupportedError, match="scorer"):
        backend.quantize(tiny_model("llama", 2), {0: 2}, 64)
    with pytest.raises(UnsupportedError, match="'quanto' or 'hqq'"):
        backend.dequantize_weight(torch.zeros(4, 64), 2, 64)


def test_scorer_measures_and_scores_a_mixed_gguf(
    llamacpp: LlamaCpp,
    tiny_dirs: dict[str, Path],
    exported: dict[str, tuple[Path, Path]],
    calibration: torch.Tensor,
    reference_ids: torch.Tensor,
    tmp_path: Path,
) -> None:
    params = _params(tiny_dirs["llama"], tmp_path, calibration)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(exported["llama"][1] / "model-f16.gguf", work)  # reuse the conversion
    scorer = get_backend("llamacpp").scorer(params, work, SETTINGS)
    eval_ids = reference_ids[-(WINDOWS + 1) * SEQLEN :]
    facts, result = scorer.measure(MIXED, eval_ids)
    assert facts["gguf_types"] == "Q2_K,Q4_K,Q2_K,Q4_K"
    # blocks of equal size, half at Q2_K and half at Q4_K
    assert facts["bits_per_weight"] == pytest.approx(
        (type_bits_per_weight("Q2_K") + type_bits_per_weight("Q4_K")) / 2
    )
    assert facts["stored_bytes"] < facts["file_bytes"]  # embeddings and head stay in f16
    assert facts["ppl_protocol"] == PPL_PROTOCOL
    assert (result.n_windows, result.seqlen) == (WINDOWS, SEQLEN)
    assert math.isfinite(result.ppl) and result.ppl > 1.0
    assert math.isfinite(facts["float_gguf_ppl"])
    assert (work / "imatrix.gguf").is_file()
    assert not (work / "assignment.gguf").exists()  # scored, then removed


def test_scorer_refuses_shapes_llamacpp_would_widen(
    llamacpp: LlamaCpp, calibration: torch.Tensor, reference_ids: torch.Tensor, tmp_path: Path
) -> None:
    folder = save_tiny(
        tmp_path / "smollm2-like", "llama", num_layers=1, hidden_size=576,
        intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
    )  # fmt: skip
    scorer = get_backend("llamacpp").scorer(_params(folder, tmp_path, calibration), tmp_path)
    with pytest.raises(GgufExportError, match=r"blk\.0\.attn_q\.weight \(576 columns"):
        scorer.measure({0: 2}, reference_ids[-(WINDOWS + 1) * SEQLEN :])
    assert not (tmp_path / "imatrix.gguf").exists()
