"""Evaluation: WikiText-2 perplexity."""

from impq.eval.perplexity import PerplexityResult, batch_nll, perplexity, windows

__all__ = ["PerplexityResult", "batch_nll", "perplexity", "windows"]
