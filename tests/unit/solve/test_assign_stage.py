"""The ``assign`` stage's numerical entry point on a synthetic SPQE result.

The CLI runs this through its Prefect flow (tested with the flows); here the stage
function is called directly, so no orchestration is started.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from impq.assignment import Assignment
from impq.config import Params, load_params
from impq.pipeline import assign
from impq.solve.synthetic import synthetic_shapley


@pytest.fixture
def params(tmp_path: Path) -> Params:
    doc = {
        "model": {"source": "unused"},
        "solver": {"num_reads": 8, "num_sweeps": 200, "exact_check": True},
        "budgets": [2.5, 3.0],
        "tracking": {"enabled": False},
        "paths": {
            "artifacts": str(tmp_path / "artifacts"),
            "metrics": str(tmp_path / "metrics"),
            "plots": str(tmp_path / "plots"),
        },
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_params(path)


def test_assign_writes_one_feasible_artifact_per_budget(params: Params) -> None:
    result = synthetic_shapley(12, block_params=np.arange(1, 13) * 4096, seed=3)
    result.save(assign.shapley_input_path(params))

    [path] = assign.run(params, budget=3.0)
    assert path == assign.assignment_path(params, 3.0)
    assert path.name == "3.0.json" and path.parent.name == "impq"
    a = Assignment.load(path)
    assert a.method == "impq" and a.budget_bits == 3.0 and sorted(a.bits) == list(range(12))
    assert a.stored_bytes <= a.extra["budget_bytes"]
    assert 2.0 <= a.avg_bits <= 3.0 + 1e-9
    assert a.extra["solver"] == "anneal" and a.extra["exact_proven_optimal"]
    assert a.extra["gap_to_exact"] == pytest.approx(0.0, abs=1e-9)

    written = assign.run(params)
    assert [p.name for p in written] == ["2.5.json", "3.0.json"]
    assert Assignment.load(written[1]).bits == a.bits


def test_assign_reports_a_missing_result_and_a_bad_budget(params: Params) -> None:
    with pytest.raises(FileNotFoundError, match="run `impq spqe` first"):
        assign.run(params)
    synthetic_shapley(6, seed=0).save(assign.shapley_input_path(params))
    with pytest.raises(ValueError, match=r"feasible range is \[2, 4\]"):
        assign.run(params, budget=4.5)
