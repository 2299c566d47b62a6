"""BOS at the start of every window, for tokenizers that add one (Gemma, Llama 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoTokenizer, GemmaTokenizer, PreTrainedTokenizerFast

from impq.artifacts import read_tensors
from impq.config import parse_params
from impq.data import bos_token, sample_windows, without_bos
from impq.eval import perplexity, windows
from impq.models.tiny import tiny_model
from impq.pipeline import prepare

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
BOS = 2


def _vocab() -> dict[str, int]:
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for char in "▁abcdefghijklmnopqrstuvwxyz0123456789.,;:'\"()-@=\n":
        vocab.setdefault(char, len(vocab))
    return vocab


def gemma_style() -> Any:
    """A character-level tokenizer of Gemma's class that sets ``add_bos_token``."""
    return GemmaTokenizer(vocab=_vocab(), merges=[], add_bos_token=True)


def llama3_style() -> Any:
    """A tokenizer whose post-processor puts BOS first, ``add_bos_token`` unset."""
    raw = Tokenizer(models.WordLevel(_vocab(), unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    raw.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", BOS)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<bos>", unk_token="<unk>")


def test_a_tokenizer_that_adds_bos_gives_its_bos(tmp_path: Path) -> None:
    gemma = gemma_style()
    assert gemma("ab")["input_ids"][0] == BOS
    assert bos_token(gemma) == BOS
    assert bos_token(llama3_style()) == BOS
    gemma.save_pretrained(str(tmp_path))  # reloaded, only its post-processor says so
    assert bos_token(AutoTokenizer.from_pretrained(str(tmp_path))) == BOS


def test_the_override_wins_and_a_missing_bos_is_a_clear_error(reference_model_dir: Path) -> None:
    assert bos_token(gemma_style(), add_bos=False) is None
    reference = AutoTokenizer.from_pretrained(str(reference_model_dir))
    assert bos_token(reference) is None  # byte-level BPE that adds nothing
    assert bos_token(reference, add_bos=True) == reference.bos_token_id
    no_bos = GemmaTokenizer(vocab=_vocab(), merges=[], bos_token=None)
    with pytest.raises(ValueError, match=r"eval\.add_bos is true but the tokenizer has no BOS"):
        bos_token(no_bos, add_bos=True)


def test_eval_windows_are_bos_and_seqlen_minus_one_text_tokens() -> None:
    ids = torch.arange(10, 10 + 4 * 16 - 1)  # 63 tokens: 3 windows without BOS, 4 with
    assert windows(ids, 16).shape == (3, 16)
    with_bos = windows(ids, 16, bos=BOS)
    assert with_bos.shape == (4, 16)
    for k in range(4):  # llama.cpp's perplexity: BOS, then text k*seqlen ... k*seqlen+14
        assert with_bos[k, 0] == BOS
        assert torch.equal(with_bos[k, 1:], ids[k * 16 : k * 16 + 15])
    assert windows(ids, 16, max_windows=2, bos=BOS).shape == (2, 16)


def test_calibration_windows_keep_their_offsets_and_start_with_bos() -> None:
    ids = torch.arange(100, 5100)
    plain = sample_windows(ids, 6, 32, seed=3)
    with_bos = sample_windows(ids, 6, 32, seed=3, bos=BOS)
    assert with_bos.shape == (6, 32)
    assert (with_bos[:, 0] == BOS).all()
    assert torch.equal(with_bos[:, 1:], plain[:, :-1])
    assert torch.equal(without_bos(with_bos, BOS), plain[:, :-1])
    assert torch.equal(without_bos(plain, BOS), plain)


def _nll_by_hand(model: torch.nn.Module, rows: torch.Tensor) -> float:
    with torch.no_grad():
        logp = torch.log_softmax(model(rows).logits.double(), dim=-1)
    picked = logp[:, :-1].gather(2, rows[:, 1:, None]).squeeze(2)
    return -picked.mean().item()


def test_perplexity_with_bos_scores_the_same_targets_after_a_bos() -> None:
    model = tiny_model("gemma2", num_layers=2, seed=0, vocab_size=len(_vocab()))
    ids = torch.randint(5, len(_vocab()), (4 * 32,), generator=torch.Generator().manual_seed(1))
    plain = perplexity(model, ids, seqlen=32, progress=False)
    with_bos = perplexity(model, ids, seqlen=32, progress=False, bos=BOS)
    assert with_bos.n_windows == 4 and with_bos.n_tokens == 4 * 31  # no loss on the BOS
    rows = torch.cat([torch.full((4, 1), BOS), ids.view(4, 32)[:, :-1]], dim=1)
    assert with_bos.mean_nll == pytest.approx(_nll_by_hand(model, rows), rel=1e-6)
    assert with_bos.mean_nll != pytest.approx(plain.mean_nll, rel=1e-6)


@pytest.mark.slow
def test_prepare_records_the_bos_of_a_gemma_style_tokenizer(
    tmp_path: Path, data_root: Path
) -> None:
    gemma_style().save_pretrained(str(tmp_path / "model"))
    params = parse_params(
        {
            "model": {"source": str(tmp_path / "model")},
            "data": {"root": str(data_root), "calibration": {"n_samples": 4, "seqlen": 64}},
            "eval": {"seqlen": 64, "methods": ["impq"]},
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    prepare.run(params)
    calibration, meta = read_tensors(prepare.calibration_path(params))
    assert (calibration["input_ids"][:, 0] == BOS).all() and meta["bos_token_id"] == str(BOS)
    tokens = prepare.read_eval_tokens(params)
    assert tokens.bos == BOS and tokens.ids[0] != BOS  # the text alone; windows add the BOS
    off = params.model_copy(update={"eval": params.eval.model_copy(update={"add_bos": False})})
    prepare.run(off)
    assert prepare.read_eval_tokens(off).bos is None
    assert prepare.read_eval_tokens(off).fingerprint != tokens.fingerprint
    assert not (read_tensors(prepare.calibration_path(off))[0]["input_ids"][:, 0] == BOS).all()
