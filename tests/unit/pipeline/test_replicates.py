"""Random seeds in the sweep's table and flat metrics: mean and spread per cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from impq.pipeline import replicates, sweep
from impq.pipeline.params import parse_params


def _row(method: str, ppl: float | None, backend: str = "quanto", budget: float = 3.0) -> dict:
    return {
        "backend": backend,
        "method": method,
        "budget": budget,
        "avg_bits": 2.9,
        "bits_per_weight": 3.4,
        "stored_bytes": 4096,
        "ppl": ppl,
        "ppl_status": "finite" if ppl is not None else "inf",
        "ppl_finite": ppl is not None,
    }


ROWS: list[dict[str, Any]] = [
    _row("impq", 50.0),
    _row("random-0", 80.0),
    _row("random-1", 90.0),
    _row("random-2", 130.0),
    _row("random-0", 70.0, budget=2.5),
    _row("random-1", None, budget=2.5),
    _row("random-0", 60.0, backend="hqq"),
]


def test_summary_is_mean_and_spread_over_the_seeds_of_each_cell() -> None:
    assert replicates.replicate_of("random-2") == "random"
    assert replicates.replicate_of("random") is None and replicates.replicate_of("impq") is None
    by_cell = {(s["backend"], s["budget"]): s for s in replicates.summarise(ROWS)}
    three = by_cell[("quanto", 3.0)]
    assert three["method"] == "random" and three["n"] == three["n_finite"] == 3
    assert three["ppl_mean"] == pytest.approx(100.0)
    assert three["ppl_std"] == pytest.approx(np.std([80.0, 90.0, 130.0], ddof=1))
    assert (three["ppl_min"], three["ppl_max"]) == (80.0, 130.0)
    diverged = by_cell[("quanto", 2.5)]  # one seed gave an infinite perplexity: counted
    assert diverged["n"] == 2 and diverged["n_finite"] == 1 and diverged["ppl_mean"] == 70.0
    assert by_cell[("hqq", 3.0)]["ppl_std"] == 0.0


def test_table_and_flat_metrics_show_mean_and_spread(tmp_path: Path) -> None:
    params = parse_params(
        {
            "model": {"source": "x"},
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    reference = {"ppl": 40.0, "ppl_status": "finite"}
    sweep.write_table(params, ROWS, reference)
    flat = json.loads(sweep.table_paths(params)[0].read_text())
    assert flat["quanto/random/3.0/ppl_mean"] == pytest.approx(100.0)
    assert flat["quanto/random/3.0/n"] == 3 and flat["quanto/random-1/3.0/ppl"] == 90.0
    text = sweep.format_table(ROWS, reference)
    assert "random x3" in text and "ppl 100.000 ± 26.458" in text
    assert "1/2 seeds" in text
