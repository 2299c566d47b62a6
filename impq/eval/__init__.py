"""Evaluation: WikiText-2 perplexity and its bootstrap intervals."""

from impq.eval.bootstrap import Interval, paired_ppl_ratio, ppl_interval
from impq.eval.perplexity import PerplexityResult, batch_nll, perplexity, windows

__all__ = [
    "Interval",
    "PerplexityResult",
    "batch_nll",
    "paired_ppl_ratio",
    "perplexity",
    "ppl_interval",
    "windows",
]
