"""The llamacpp backend: assignments measured as GGUF files and scored by llama-perplexity."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from gguf_models import MIXED, SETTINGS, save_tiny

from impq.artifacts import write_tensors
from impq.backends import UnsupportedError, get_backend
from impq.backends.base import expected_bytes
from impq.backends.llamacpp import PPL_PROTOCOL
from impq.config import Params
from impq.eval import PerplexityResult
from impq.llamacpp.build import LlamaCpp
from impq.llamacpp.gguf import GgufExportError, type_bits_per_weight
from impq.models.tiny import tiny_model
from impq.pipeline import baselines, sweep
from impq.pipeline.params import parse_params
from impq.pipeline.prepare import calibration_path, eval_tokens_path

SEQLEN, WINDOWS = 64, 4


def _params(model_dir: Path, tmp_path: Path, calibration: torch.Tensor) -> Params:
    params = parse_params(
        {
            "model": {"source": str(model_dir), "device": "cpu"},
            "eval": {"seqlen": SEQLEN, "max_windows": WINDOWS, "methods": ["uniform"]},
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
    scorer = get_backend("llamacpp").scorer(
        params.model, params.eval, work, group_size=params.backends.group_size,
        calibration=calibration, settings=SETTINGS,
    )  # fmt: skip
    eval_ids = reference_ids[-(WINDOWS + 1) * SEQLEN :]
    facts, result = scorer.measure(MIXED, eval_ids)
    assert facts["gguf_types"] == "Q2_K,Q4_K,Q2_K,Q4_K"
    # blocks of equal size, half at Q2_K and half at Q4_K
    assert facts["bits_per_weight"] == pytest.approx(
        (type_bits_per_weight("Q2_K") + type_bits_per_weight("Q4_K")) / 2
    )
    assert facts["stored_bytes"] < facts["file_bytes"]  # embeddings and head stay in f16
    assert facts["stored_bytes"] == facts["expected_bytes"]  # llama.cpp's footprint, exactly
    assert len(result.window_nll) == WINDOWS
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
    params = _params(folder, tmp_path, calibration)
    scorer = get_backend("llamacpp").scorer(
        params.model, params.eval, tmp_path, group_size=params.backends.group_size,
        calibration=calibration,
    )  # fmt: skip
    with pytest.raises(GgufExportError, match=r"blk\.0\.attn_q\.weight \(576 columns"):
        scorer.measure({0: 2}, reference_ids[-(WINDOWS + 1) * SEQLEN :])
    assert not (tmp_path / "imatrix.gguf").exists()


@pytest.mark.slow  # about 25 s of CPU: a conversion, an imatrix, two cells and the float GGUF
def test_sweep_scores_llamacpp_cells_with_window_nll_and_resumes(
    llamacpp: LlamaCpp, tiny_dirs: dict[str, Path], reference_ids: torch.Tensor, tmp_path: Path
) -> None:
    """``backends.names: [llamacpp]`` end to end: each cell is a GGUF scored by
    llama-perplexity, within its budget in llama.cpp's bytes, with per-window NLLs."""
    params = parse_params(
        {
            "model": {"source": str(tiny_dirs["llama"]), "device": "cpu"},
            "eval": {"seqlen": SEQLEN, "max_windows": WINDOWS, "methods": ["uniform", "random-0"]},
            "backends": {"names": ["llamacpp"], "group_size": 64},
            "budgets": [3.0],
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    calibration = reference_ids[: 4 * SEQLEN].view(4, SEQLEN)  # the start of the text
    eval_ids = reference_ids[-(WINDOWS + 1) * SEQLEN :]  # the end: no overlap
    write_tensors(calibration_path(params), {"input_ids": calibration}, {})
    write_tensors(eval_tokens_path(params), {"input_ids": eval_ids}, {"fingerprint": "eval"})
    baselines.run(params)
    rows, _, written = sweep.run(params)

    assert len(rows) == 2
    for row in rows:
        assert row["ppl_finite"] and row["ppl_protocol"] == PPL_PROTOCOL
        assert row["stored_bytes"] == row["expected_bytes"]  # llama.cpp's own footprint
        assert set(row["gguf_types"].split(",")) <= {"Q2_K", "Q4_K"}
        nll = row["window_nll"]
        assert len(nll) == row["n_windows"] == WINDOWS
        assert sum(nll) / len(nll) == pytest.approx(row["mean_nll"], abs=1e-9)
        assert math.exp(row["mean_nll"]) == pytest.approx(row["ppl"])
        assert len(set(nll)) == WINDOWS  # windows differ: not one value spread over them
    flat = json.loads(sweep.table_paths(params)[0].read_text())
    assert flat["llamacpp/float/ppl"] == rows[0]["float_gguf_ppl"]
    assert all(math.isfinite(r["float_gguf_ppl"]) for r in rows)
    assert sweep.plot_paths(params)["llamacpp"] in written

    stamps = {p: p.stat().st_mtime_ns for p in Path(params.paths.metrics, "sweep").rglob("*.json")}
    again, _, _ = sweep.run(params)
    assert again == rows
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}  # nothing recomputed


class _FixedScorer:
    """A stand-in scorer (unit test of the sweep's hook, not of llama.cpp)."""

    def __init__(self, parts: tuple[str, ...]) -> None:
        self.fingerprint_parts = parts
        self.model = tiny_model("llama", 2, hidden_size=256, intermediate_size=512)
        self.calls = 0

    def measure(self, bits: dict[int, int], ids: torch.Tensor) -> tuple[dict, PerplexityResult]:
        self.calls += 1
        stored = expected_bytes(self.model, bits, 64, get_backend("llamacpp").footprint(self.model))
        facts = {"stored_bytes": stored, "expected_bytes": stored, "bits_per_weight": 3.0,
                 "quantize_seconds": 0.0, "blocks_quantized": len(bits), "eval_seconds": 0.0,
                 "float_gguf_ppl": 10.0}  # fmt: skip
        return facts, PerplexityResult(20.0, math.log(20.0), 62, 2, 64, (2.9, 3.09))


def test_the_scorer_fingerprint_decides_what_is_reused(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    tiny_model("llama", 2, hidden_size=256, intermediate_size=512).save_pretrained(model_dir)
    params = parse_params(
        {
            "model": {"source": str(model_dir), "device": "cpu"},
            "eval": {"seqlen": 64, "max_windows": 2, "methods": ["uniform"]},
            "backends": {"names": ["llamacpp"], "group_size": 64},
            "budgets": [3.0],
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    write_tensors(calibration_path(params), {"input_ids": torch.zeros(2, 64, dtype=torch.long)}, {})
    write_tensors(eval_tokens_path(params), {"input_ids": torch.ones(192, dtype=torch.long)}, {})
    baselines.run(params)
    first = _FixedScorer(("llama.cpp A",))
    row = sweep.run_one(params, "llamacpp", "uniform", 3.0, scorer=first)
    assert first.calls == 1 and row["window_nll"] == [2.9, 3.09]
    same = _FixedScorer(("llama.cpp A",))
    assert sweep.run_one(params, "llamacpp", "uniform", 3.0, scorer=same) == row
    assert same.calls == 0  # reused from its metrics file
    other = _FixedScorer(("llama.cpp B",))
    sweep.run_one(params, "llamacpp", "uniform", 3.0, scorer=other)
    assert other.calls == 1  # another llama.cpp or other settings: measured again
    write_tensors(calibration_path(params), {"input_ids": torch.ones(2, 64, dtype=torch.long)}, {})
    sweep.run_one(params, "llamacpp", "uniform", 3.0, scorer=other)
    assert other.calls == 2  # the importance matrix's calibration set changed
