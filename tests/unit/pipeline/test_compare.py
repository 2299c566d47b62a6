"""The compare stage on synthetic sweep rows: intervals, the best isolated baseline, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from impq.artifacts import write_json
from impq.config import ConfigError, Params
from impq.pipeline import compare
from impq.pipeline.params import parse_params
from impq.pipeline.sweep import Combination, metrics_path

METHODS = ["impq", "lim", "zd", "shapley"]


def _params(tmp_path: Path, **compare_cfg: object) -> Params:
    return parse_params(
        {
            "model": {"source": "unused"},
            "eval": {"methods": METHODS},
            "backends": {"names": ["quanto"]},
            "budgets": [2.5],
            "compare": {"n_boot": 2000, **compare_cfg},
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots", "results")},
        }
    )


def _row(method: str, nll: np.ndarray, status: str = "finite") -> dict:
    mean = float(nll.mean())
    return {
        "backend": "quanto",
        "method": method,
        "budget": 2.5,
        "avg_bits": 2.5,
        "bits_per_weight": 3.0,
        "ppl": math.exp(mean) if status == "finite" else None,
        "ppl_status": status,
        "window_nll": nll.tolist(),
        "n_windows": len(nll),
        "seqlen": 256,
    }


def _write_sweep(params: Params, rows: list[dict]) -> None:
    for row in rows:
        write_json(metrics_path(params, Combination("quanto", row["method"], 2.5)), row)


def test_each_method_is_compared_with_the_best_isolated_baseline(tmp_path: Path) -> None:
    params = _params(tmp_path)
    rng = np.random.default_rng(0)
    base = rng.normal(4.0, 0.8, size=64)
    rows = [
        _row("impq", base - 0.2 + rng.normal(0, 0.02, 64)),  # ~18% lower ppl
        _row("lim", base + 0.3),
        _row("zd", base + 0.6),
        _row("shapley", base.copy()),  # the best isolated one
    ]
    _write_sweep(params, rows)
    written = compare.run(params)
    assert all(Path(p).is_file() for p in written)
    results = json.loads(compare.result_paths(params)["json"].read_text())
    by = {r["method"]: r for r in results}
    assert {r["best_isolated"] for r in results} == {"shapley"}
    impq = by["impq"]
    assert impq["vs_isolated"] == pytest.approx(math.exp(-0.2), abs=0.01)
    assert impq["vs_isolated_ci_high"] < 1.0 < by["lim"]["vs_isolated_ci_low"]
    assert by["shapley"]["vs_isolated"] == pytest.approx(1.0)
    for r in results:
        assert r["ppl_ci_low"] < r["ppl"] < r["ppl_ci_high"]
        assert {"backend", "method", "avg_bits", "stored_bits", "ppl"} <= r.keys()
    table = compare.result_paths(params)["markdown"].read_text()
    assert "| 2.50 | impq |" in table and "(shapley)" in table


def test_non_finite_cells_are_kept_and_never_chosen_as_best(tmp_path: Path) -> None:
    params = _params(tmp_path)
    nll = np.full(8, 3.0)
    bad = nll.copy()
    bad[0] = np.inf
    _write_sweep(
        params,
        [_row("impq", nll), _row("lim", bad, "inf"), _row("zd", nll + 1), _row("shapley", nll + 2)],
    )
    compare.run(params)
    by = {r["method"]: r for r in json.loads(compare.result_paths(params)["json"].read_text())}
    assert by["lim"]["ppl"] is None and by["lim"]["vs_isolated"] is None
    assert by["impq"]["best_isolated"] == "zd"


def test_a_missing_cell_and_an_unknown_isolated_baseline_are_errors(tmp_path: Path) -> None:
    params = _params(tmp_path)
    with pytest.raises(FileNotFoundError, match="run the stage"):
        compare.run(params)
    with pytest.raises(ConfigError, match=r"compare.isolated: .*unknown baselines \['awq'\]"):
        _params(tmp_path, isolated=["lim", "awq"])


def test_isolated_baselines_that_are_not_evaluated_are_left_out(tmp_path: Path) -> None:
    params = _params(tmp_path, isolated=["lim", "zd-tuned"])
    nll = np.full(8, 3.0)
    _write_sweep(params, [_row(m, nll + i) for i, m in enumerate(METHODS)])
    compare.run(params)
    rows = json.loads(compare.result_paths(params)["json"].read_text())
    assert {r["best_isolated"] for r in rows} == {"lim"}


def test_every_row_is_compared_with_uniform_fit_and_evopress(tmp_path: Path) -> None:
    methods = ["impq", "surrogate", "lim", "evopress", "uniform-fit", "uniform-3"]
    params = _params(tmp_path)
    params = params.model_copy(update={"eval": params.eval.model_copy(update={"methods": methods})})
    rng = np.random.default_rng(1)
    base = rng.normal(4.0, 0.8, size=64)
    shifts = {"impq": -0.1, "surrogate": -0.3, "lim": 0.2, "evopress": -0.2}
    shifts |= {"uniform-fit": 0.0, "uniform-3": 0.0}
    _write_sweep(params, [_row(m, base + d + rng.normal(0, 0.01, 64)) for m, d in shifts.items()])
    compare.run(params)
    by = {r["method"]: r for r in json.loads(compare.result_paths(params)["json"].read_text())}
    surrogate = by["surrogate"]
    assert surrogate["vs_uniform_fit"] == pytest.approx(math.exp(-0.3), abs=0.01)
    assert surrogate["vs_evopress"] == pytest.approx(math.exp(-0.1), abs=0.01)
    assert surrogate["vs_uniform_fit_ci_low"] < surrogate["vs_uniform_fit"]
    assert surrogate["vs_uniform_fit_ci_high"] < 1.0
    assert by["impq"]["vs_evopress_ci_low"] > 1.0  # EvoPress beats impq here
    assert by["uniform-fit"]["vs_uniform_fit"] == pytest.approx(1.0)
    # the summary table's row is the best impq variant (surrogate), not a baseline
    best = compare.best_variants(list(by.values()))
    assert [r["method"] for r in best] == ["surrogate"]
    table = compare.result_paths(params)["markdown"].read_text()
    assert "| 2.50 | surrogate | 3.000 |" in table and "vs EvoPress" in table
    metrics = json.loads(compare.metrics_file(params).read_text())
    assert metrics["quanto/surrogate/2.5/vs_uniform_fit"] == pytest.approx(
        surrogate["vs_uniform_fit"]
    )
