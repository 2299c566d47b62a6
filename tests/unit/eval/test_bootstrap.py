import math

import numpy as np
import pytest

from impq.eval import paired_ppl_ratio, ppl_interval


def test_ppl_interval_brackets_the_estimate_and_narrows_with_windows() -> None:
    rng = np.random.default_rng(0)
    few = rng.normal(3.0, 0.5, size=16)
    many = rng.normal(3.0, 0.5, size=1024)
    est, lo, hi = ppl_interval(few)
    assert est == pytest.approx(math.exp(few.mean()))
    assert lo < est < hi
    _, lo_m, hi_m = ppl_interval(many)
    assert (hi_m - lo_m) < (hi - lo) / 4  # ~ sqrt(64) = 8x narrower in log space


def test_ppl_interval_covers_the_true_perplexity_at_the_stated_rate() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(200):
        x = rng.normal(2.0, 0.4, size=64)
        _, lo, hi = ppl_interval(x, n_boot=2000, seed=trial)
        hits += lo <= math.exp(2.0) <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_paired_ratio_is_narrow_when_models_agree_window_by_window() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(3.0, 1.0, size=64)  # windows differ a lot
    better = base - 0.05 + rng.normal(0, 0.01, size=64)  # but b is 5% better on each
    ratio, lo, hi = paired_ppl_ratio(better, base)
    assert ratio == pytest.approx(math.exp(-0.05), abs=0.005)
    assert hi < 1.0 and hi - lo < 0.02
    # unpaired intervals of the two perplexities overlap heavily
    assert ppl_interval(better).high > ppl_interval(base).low


def test_non_finite_windows_give_nan_intervals_and_shapes_are_checked() -> None:
    x = np.array([1.0, np.inf, 2.0])
    assert all(math.isnan(v) for v in ppl_interval(x))
    assert all(math.isnan(v) for v in paired_ppl_ratio(x, np.ones(3)))
    with pytest.raises(ValueError, match="same windows"):
        paired_ppl_ratio(np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match="at least 2 windows"):
        ppl_interval([1.0])
