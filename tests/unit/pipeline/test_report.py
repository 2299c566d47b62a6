"""The report stage: Shapley bars with error bars, their CSV, the interaction heatmap."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from impq.estimate import ShapleyResult
from impq.pipeline import report
from impq.pipeline.params import parse_params
from impq.pipeline.spqe import shapley_path


def result(n: int = 5, k_scale: float = 1.0) -> ShapleyResult:
    rng = np.random.default_rng(0)
    k = rng.normal(size=(n, n)) * k_scale
    return ShapleyResult(
        values=np.linspace(0.5, 0.1, n),
        values_se=np.full(n, 0.05),
        interactions=(k + k.T) / 2,
        interactions_se=np.full((n, n), np.nan),
        block_params=np.full(n, 1000),
    )


@pytest.fixture
def params(tmp_path: Path):
    return parse_params(
        {
            "model": {"source": "m"},
            "paths": {"artifacts": str(tmp_path / "a"), "plots": str(tmp_path / "p")},
        }
    )


def assert_not_blank(path: Path) -> None:
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.05, f"{path} looks blank"


def test_run_writes_plots_and_csv(params) -> None:
    res = result()
    res.save(shapley_path(params))
    written = report.run(params)
    paths = report.plot_paths(params)
    assert sorted(written) == sorted(paths.values())
    assert_not_blank(paths["bars"])
    assert_not_blank(paths["heatmap"])
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [int(r["block"]) for r in rows] == list(range(5))
    np.testing.assert_allclose([float(r["value"]) for r in rows], res.values)
    np.testing.assert_allclose([float(r["se"]) for r in rows], res.values_se)


def test_zero_interactions_and_unknown_errors_still_plot(tmp_path: Path) -> None:
    res = result(k_scale=0.0)
    res.values_se[:] = np.nan
    assert_not_blank(report.interaction_heatmap(res, tmp_path / "k.png"))
    assert_not_blank(report.shapley_bars(res, tmp_path / "v.png"))


def test_missing_result_says_which_stage_to_run(params) -> None:
    with pytest.raises(FileNotFoundError, match="spqe"):
        report.run(params)
