"""GGUF export, read-back and scoring through the real llama.cpp tools, on tiny models."""

from __future__ import annotations

import math
from pathlib import Path

import gguf
import pytest
import torch
from gguf_models import MIXED, REFERENCE_MODEL, SETTINGS, save_tiny
from transformers import AutoModelForCausalLM, AutoTokenizer

from impq.eval import windows
from impq.llamacpp.build import LlamaCpp
from impq.llamacpp.gguf import (
    GgufExportError,
    block_tensor_bytes,
    check_gguf,
    convert_to_gguf,
    export_gguf,
    gguf_block_types,
    gguf_tensor_types,
    quantize_gguf,
    score_windows,
    type_bits_per_weight,
)


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma2"])
def test_export_stores_each_block_in_its_type(
    exported: dict[str, tuple[Path, Path]], arch: str
) -> None:
    path, work = exported[arch]
    assert gguf_block_types(path) == {0: {"Q2_K"}, 1: {"Q4_K"}, 2: {"Q2_K"}, 3: {"Q4_K"}}
    types = gguf_tensor_types(path)
    assert types["token_embd.weight"] == "F16"
    assert types.get("output.weight", "F16") == "F16"  # gemma2 ties it to the embeddings
    assert types["blk.0.attn_norm.weight"] == "F32"  # norms are never quantized
    reader = gguf.GGUFReader(str(path))
    assert "quantize.imatrix.file" in reader.fields  # quantized with the importance matrix
    assert (work / "imatrix.gguf").is_file()
    for blocks, type_name in (([0, 2], "Q2_K"), ([1, 3], "Q4_K")):
        stored, n_weights = block_tensor_bytes(path, blocks)
        assert 8 * stored / n_weights == type_bits_per_weight(type_name)


def test_bits_per_weight_of_the_default_types() -> None:
    assert [type_bits_per_weight(SETTINGS.block_type(b)) for b in (2, 3, 4, 5, 6, 8)] == [
        2.625,
        3.4375,
        4.5,
        5.5,
        6.5625,
        8.5,
    ]


def test_unassigned_blocks_stay_float(
    exported: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    _, work = exported["llama"]
    out = quantize_gguf(work / "model-f16.gguf", tmp_path / "two.gguf", {0: 2, 3: 4}, SETTINGS)
    assert gguf_block_types(out) == {0: {"Q2_K"}, 1: {"F16"}, 2: {"F16"}, 3: {"Q4_K"}}
    reader = gguf.GGUFReader(str(out))
    assert "quantize.imatrix.file" not in reader.fields


def test_read_back_rejects_another_assignment(exported: dict[str, tuple[Path, Path]]) -> None:
    path, _ = exported["llama"]
    check_gguf(path, MIXED, SETTINGS)
    with pytest.raises(
        GgufExportError, match=r"blk\.0\.attn_q\.weight: stored Q2_K, expected Q4_K"
    ):
        check_gguf(path, {0: 4, 1: 4, 2: 2, 3: 4}, SETTINGS)
    with pytest.raises(GgufExportError, match=r"blocks \[7\]"):
        check_gguf(path, {**MIXED, 7: 2}, SETTINGS)


def test_rows_not_a_multiple_of_256_fail_before_the_imatrix(
    llamacpp: LlamaCpp, tmp_path: Path, calibration: torch.Tensor
) -> None:
    folder = save_tiny(
        tmp_path / "narrow", "llama", num_layers=2, hidden_size=64, intermediate_size=128,
        head_dim=16,
    )  # fmt: skip
    work = tmp_path / "work"
    with pytest.raises(GgufExportError) as err:
        export_gguf(folder, {0: 2, 1: 4}, calibration, tmp_path / "x.gguf", SETTINGS, work)
    message = str(err.value)
    assert "blk.0.attn_q.weight (64 columns, not a multiple of 256)" in message
    assert "q2_K -> llama.cpp would store q4_0" in message
    assert "blk.1.ffn_down.weight (128 columns, not a multiple of 256)" in message
    assert "q4_K -> llama.cpp would store q5_0" in message
    assert not (work / "imatrix.gguf").exists()
    assert not (tmp_path / "x.gguf").exists()


def _half_window_nll(model: torch.nn.Module, windows: torch.Tensor) -> list[float]:
    """llama-perplexity's statistic in torch: each window's mean NLL over its second half."""
    seqlen = windows.shape[1]
    first = seqlen // 2
    with torch.inference_mode():
        logits = model(windows).logits.double()
    nll = torch.nn.functional.cross_entropy(
        logits[:, first:-1].transpose(1, 2), windows[:, first + 1 :], reduction="none"
    )
    return nll.mean(dim=1).tolist()


@pytest.mark.parametrize("with_bos", [False, True])
def test_llama_perplexity_scores_the_sweep_windows(
    llamacpp: LlamaCpp, reference_ids: torch.Tensor, tmp_path: Path, with_bos: bool
) -> None:
    """The trained reference model: llama.cpp on the f32 GGUF equals torch on the same
    token windows under llama-perplexity's statistic, window by window (so the tokens
    and the windows are the same), with and without a BOS starting each window."""
    seqlen, n = 128, 4
    eval_ids = reference_ids[-(n + 1) * seqlen :]  # the end of the text; calibration is the start
    f32 = convert_to_gguf(REFERENCE_MODEL, tmp_path / "ref-f32.gguf", "f32", llamacpp)
    tokenizer = AutoTokenizer.from_pretrained(str(REFERENCE_MODEL))
    bos = tokenizer.bos_token_id if with_bos else None
    result = score_windows(f32, tokenizer, eval_ids, seqlen, max_windows=n, threads=1, bos=bos)
    model = AutoModelForCausalLM.from_pretrained(str(REFERENCE_MODEL), dtype=torch.float32)
    expected = _half_window_nll(model.eval(), windows(eval_ids, seqlen, n, bos))
    assert result.n_windows == n
    assert result.n_tokens == n * (seqlen // 2 - 1)
    # llama.cpp prints its running mean NLL to 6 decimals: window k within k * 1e-6
    assert result.window_nll == pytest.approx(expected, abs=1e-4)
    assert result.mean_nll == pytest.approx(sum(expected) / n, abs=1e-4)
    assert result.ppl == pytest.approx(math.exp(sum(expected) / n), rel=1e-4)
    assert 1.0 < result.ppl < 4096.0  # a trained model, far better than uniform
