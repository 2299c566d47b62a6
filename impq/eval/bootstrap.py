"""Uncertainty of perplexities: bootstrap over evaluation windows.

Every window predicts the same number of tokens, so a perplexity is ``exp`` of the mean
of its windows' mean NLLs. Windows are the resampled unit (tokens inside a window are
not independent). Two models scored on the same windows are compared by a *paired*
bootstrap: the same resampled windows for both, so the interval of their ratio is
narrow when they agree window by window, whatever the spread of the windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Interval", "paired_ppl_ratio", "ppl_interval"]

N_BOOT = 10_000
LEVEL = 0.95


class Interval(NamedTuple):
    """An estimate and its interval; all NaN where the inputs are not finite."""

    estimate: float
    low: float
    high: float


_NAN = Interval(math.nan, math.nan, math.nan)


def _windows(nll: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(nll, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"need the per-window NLLs of at least 2 windows, got shape {x.shape}")
    return x


def _exp(x: np.ndarray | float) -> np.ndarray:
    return np.exp(np.minimum(x, 709.0))


def _resampled_means(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    idx = np.random.default_rng(seed).integers(0, x.shape[-1], size=(n_boot, x.shape[-1]))
    return x[..., idx].mean(axis=-1)


def ppl_interval(
    window_nll: Sequence[float] | np.ndarray,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Interval:
    """Perplexity and its percentile bootstrap interval over windows."""
    x = _windows(window_nll)
    if not np.isfinite(x).all():
        return _NAN
    means = _resampled_means(x, n_boot, seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(_exp(x.mean())), float(_exp(lo)), float(_exp(hi)))


def paired_ppl_ratio(
    window_nll_a: Sequence[float] | np.ndarray,
    window_nll_b: Sequence[float] | np.ndarray,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Interval:
    """``ppl(a) / ppl(b)`` on the same windows and its paired bootstrap interval.

    Raises:
        ValueError: the two were not scored on the same number of windows.
    """
    a, b = _windows(window_nll_a), _windows(window_nll_b)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same windows: {a.size} vs {b.size}")
    d = a - b
    if not np.isfinite(d).all():
        return _NAN
    means = _resampled_means(d, n_boot, seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(np.exp(d.mean())), float(np.exp(lo)), float(np.exp(hi)))
