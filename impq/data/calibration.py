"""Tokenization, the BOS a window starts with, and seeded sampling of calibration sequences.

A window of ``seqlen`` tokens is formed as llama.cpp's ``perplexity`` and ``imatrix``
form theirs: when the tokenizer adds a BOS token (Gemma, Llama 3), the window is that
BOS followed by ``seqlen - 1`` consecutive text tokens, so the model sees text as it
does in use; otherwise it is ``seqlen`` text tokens. Position 0 is never a prediction
target, so no loss is counted on the BOS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["BOS_KEY", "bos_of", "bos_token", "sample_windows", "tokenize", "without_bos"]

BOS_KEY = "bos_token_id"
"""Metadata key of a token artifact whose windows start with a BOS token (absent: none)."""


def tokenize(tokenizer: Any, text: str) -> torch.Tensor:
    """Token ids of ``text`` as one 1-D ``int64`` tensor (no special tokens added)."""
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.int64)


def bos_token(tokenizer: Any, add_bos: bool | None = None) -> int | None:
    """The BOS id each window starts with, or None for windows of text tokens only.

    Args:
        tokenizer: a Hugging Face tokenizer.
        add_bos: ``eval.add_bos``; None follows the tokenizer: a BOS when it sets
            ``add_bos_token`` or puts its BOS first when it tokenizes text.

    Raises:
        ValueError: ``add_bos`` is True and the tokenizer has no BOS token.
    """
    bos = tokenizer.bos_token_id
    if add_bos is None:
        adds = getattr(tokenizer, "add_bos_token", False) is True
        add_bos = bos is not None and (adds or tokenizer("x")["input_ids"][:1] == [bos])
    if add_bos and bos is None:
        raise ValueError(
            "eval.add_bos is true but the tokenizer has no BOS token: set it to null or false"
        )
    return int(bos) if add_bos else None


def bos_of(meta: Mapping[str, str]) -> int | None:
    """The BOS id recorded in a token artifact's metadata (None: its windows have none)."""
    value = meta.get(BOS_KEY)
    return None if value is None else int(value)


def sample_windows(
    ids: torch.Tensor, n: int, seqlen: int, seed: int, bos: int | None = None
) -> torch.Tensor:
    """``n`` windows of ``seqlen`` tokens at seeded random offsets of ``ids``: (n, seqlen).

    With ``bos`` each window is that id followed by ``seqlen - 1`` text tokens (see the
    module docstring); the offsets drawn are the same either way.

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
    starts = np.random.default_rng(seed).integers(0, span, size=n).tolist()
    if bos is None:
        return torch.stack([ids[s : s + seqlen] for s in starts])
    head = torch.tensor([bos], dtype=ids.dtype)
    return torch.stack([torch.cat([head, ids[s : s + seqlen - 1]]) for s in starts])


def without_bos(rows: torch.Tensor, bos: int | None) -> torch.Tensor:
    """Calibration ``rows`` less their first column when every row starts with ``bos``:
    the text tokens, for a tool that puts its own BOS first (llama.cpp's ``imatrix``)."""
    if bos is None or rows.ndim != 2 or not bool((rows[:, 0] == bos).all()):
        return rows
    return rows[:, 1:]
