"""Tiny Hugging Face folders that llama.cpp's converter accepts (helpers of the tests).

The models are random, with rows that are multiples of 256 (what K-quants need) unless a
test asks for other sizes, and the reference model's byte-level BPE tokenizer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from impq.export.gguf import GgufSettings
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


def save_tiny(folder: Path, arch: str, num_layers: int = 4, **sizes: int) -> Path:
    """Save a tiny random ``arch`` model with the reference tokenizer into ``folder``."""
    model = tiny_model(arch, num_layers, **{**GGUF_SIZES, **sizes})
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(REFERENCE_MODEL / name, folder / name)
    return folder
