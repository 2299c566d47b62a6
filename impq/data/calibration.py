"""Tokenization and seeded sampling of calibration sequences."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["sample_windows", "tokenize"]


def tokenize(tokenizer: Any, text: str) -> torch.Tensor:
    """Token ids of ``text`` as one 1-D ``int64`` tensor (no special tokens added)."""
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.int64)


def sample_windows(ids: torch.Tensor, n: int, seqlen: int, seed: int) -> torch.Tensor:
    """``n`` windows of ``seqlen`` tokens at seeded random offsets of ``ids``: (n, seqlen).

    Raises:
        ValueError: the text holds fewer than ``seqlen`` + 1 tokens.
    """
    if ids.ndim != 1:
        raise ValueError(f"expected 1-D token ids, got shape {tuple(ids.shape)}")
    span = ids.numel() - seqlen
    if span <= 0:
        raise ValueError(
            f"calibration text has {ids.numel()} tokens, fewer than one window of {seqlen}; "
            "use a larger text or a smaller data.calibration.seqlen"
        )
    starts = np.random.default_rng(seed).integers(0, span, size=n)
    return torch.stack([ids[s : s + seqlen] for s in starts.tolist()])
