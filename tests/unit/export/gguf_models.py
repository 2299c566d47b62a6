"""Tiny Hugging Face folders that llama.cpp's converter accepts (helpers of the tests).

The models are random, with rows that are multiples of 256 (what K-quants need) unless a
test asks for other sizes. Llama and Qwen-3 get the reference model's byte-level BPE
tokenizer; Gemma-2, whose converter reads only SentencePiece, a SentencePiece BPE model
trained in milliseconds on this repository's README.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer

from impq.llamacpp.gguf import GgufSettings
from impq.models.tiny import tiny_model

REPO = Path(__file__).resolve().parents[3]
REFERENCE_MODEL = REPO / "models" / "ref-llama-12l"
MIXED = {0: 2, 1: 4, 2: 2, 3: 4}
SETTINGS = GgufSettings(threads=1)

GGUF_SIZES = dict(
    vocab_size=4096,  # the reference tokenizer's
    hidden_size=256,
    intermediate_size=512,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
)


SPM_VOCAB = 1000


def _save_sentencepiece(folder: Path) -> None:
    import sentencepiece as spm

    lines = [line for line in (REPO / "README.md").read_text("utf-8").splitlines() if line]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=SPM_VOCAB,
        model_type="bpe", byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        minloglevel=2,
    )  # fmt: skip
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    special = {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "GemmaTokenizer", **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def save_tiny(folder: Path, arch: str, num_layers: int = 4, **sizes: int) -> Path:
    """Save a tiny random ``arch`` model and a tokenizer the converter accepts."""
    spm = arch == "gemma2"
    base = {**GGUF_SIZES, "vocab_size": 1024} if spm else GGUF_SIZES
    tiny_model(arch, num_layers, **{**base, **sizes}).save_pretrained(folder)
    if spm:
        _save_sentencepiece(folder)
    else:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(REFERENCE_MODEL / name, folder / name)
    return folder


def text_ids(folder: Path) -> torch.Tensor:
    """Token ids of this repository's README under the tokenizer in ``folder``."""
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    ids = tokenizer((REPO / "README.md").read_text("utf-8"), add_special_tokens=False)
    return torch.tensor(ids["input_ids"], dtype=torch.int64)
