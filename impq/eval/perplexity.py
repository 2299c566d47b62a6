"""Perplexity by the GPTQ / llama.cpp protocol.

The evaluation text is tokenized once and cut into non-overlapping windows of
``seqlen`` tokens (the short tail is dropped); each window predicts its last
``seqlen - 1`` tokens from the ones before, and PPL = exp(mean NLL over every predicted
token).

When the tokenizer adds a BOS token (``bos``), window ``k`` is that BOS followed by text
tokens ``k * seqlen`` to ``k * seqlen + seqlen - 2``, exactly what llama.cpp's
``perplexity`` scores (it prepends one BOS to the text and overwrites the first token of
every window with BOS): the window still holds ``seqlen`` tokens, predicts the same
``seqlen - 1`` positions, and no loss is counted on the BOS. Non-finite losses are kept, not hidden: a model that produces NaN or inf logits
gets a NaN or inf perplexity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

__all__ = ["PerplexityResult", "batch_nll", "perplexity", "windows"]


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity and what it was computed over.

    ``window_nll`` holds each window's mean NLL (every window predicts ``seqlen - 1``
    tokens, so ``mean_nll`` is their plain mean): the unit a bootstrap resamples.
    """

    ppl: float
    mean_nll: float
    n_tokens: int
    n_windows: int
    seqlen: int
    window_nll: tuple[float, ...] = field(default=(), repr=False)

    def as_metrics(self) -> dict[str, float | int]:
        """Flat metrics for a JSON file or a tracking server (the scalars only)."""
        return {
            "ppl": self.ppl,
            "mean_nll": self.mean_nll,
            "n_tokens": self.n_tokens,
            "n_windows": self.n_windows,
            "seqlen": self.seqlen,
        }


def windows(
    ids: torch.Tensor, seqlen: int, max_windows: int | None = None, bos: int | None = None
) -> torch.Tensor:
    """Non-overlapping windows ``(n, seqlen)`` of 1-D ``ids``, the tail dropped; each
    starts with ``bos`` when given (see the module docstring)."""
    n = (ids.numel() + (bos is not None)) // seqlen
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"{ids.numel()} tokens do not fill one window of {seqlen}")
    if bos is None:
        return ids[: n * seqlen].view(n, seqlen)
    # the pad fills the last window's last column, which the BOS shifts out
    text = torch.cat([ids, ids.new_zeros(1)])[: n * seqlen].view(n, seqlen)[:, :-1]
    return torch.cat([text.new_full((n, 1), bos), text], dim=1)


@torch.inference_mode()
def batch_nll(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Summed next-token NLL of each row of ``batch`` (n, T), as float64 of shape (n,)."""
    logits = model(batch).logits[:, :-1].float()
    targets = batch[:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return nll.double().sum(dim=1)


def perplexity(
    model: nn.Module,
    ids: torch.Tensor,
    seqlen: int,
    batch_size: int = 8,
    max_windows: int | None = None,
    progress: bool = True,
    bos: int | None = None,
) -> PerplexityResult:
    """Perplexity of ``model`` on 1-D token ids ``ids``, every window starting with
    ``bos`` when given (see the module docstring)."""
    device = next(model.parameters()).device
    chunks = windows(ids, seqlen, max_windows, bos)
    sums = []
    bar = tqdm(range(0, len(chunks), batch_size), desc="perplexity", disable=not progress)
    for start in bar:
        batch = chunks[start : start + batch_size].to(device)
        sums.append(batch_nll(model, batch).cpu())
    per_window = torch.cat(sums)
    n_tokens = len(chunks) * (seqlen - 1)
    mean = per_window.sum().item() / n_tokens
    ppl = math.inf if mean > 709.0 else math.exp(mean)  # NaN stays NaN
    window_nll = tuple((per_window / (seqlen - 1)).tolist())
    return PerplexityResult(ppl, mean, n_tokens, len(chunks), seqlen, window_nll)
