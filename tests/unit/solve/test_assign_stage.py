"""The ``assign`` stage end to end through the CLI, on a synthetic SPQE result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from impq.assignment import Assignment
from impq.cli import main
from impq.config import load_params
from impq.pipeline import assign
from impq.solve.synthetic import synthetic_shapley


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    doc = {
        "model": {"source": "unused"},
        "solver": {"num_reads": 8, "num_sweeps": 200, "exact_check": True},
        "budgets": [2.5, 3.0],
        "paths": {
            "artifacts": str(tmp_path / "artifacts"),
            "metrics": str(tmp_path / "metrics"),
            "plots": str(tmp_path / "plots"),
        },
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_assign_writes_one_feasible_artifact_per_budget(
    params_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = load_params(params_file)
    result = synthetic_shapley(12, block_params=np.arange(1, 13) * 4096, seed=3)
    result.save(assign.shapley_input_path(params))

    assert main(["assign", "--params", str(params_file), "--budget", "3.0"]) == 0
    path = assign.assignment_path(params, 3.0)
    assert path.name == "3.0.json" and path.parent.name == "impq"
    a = Assignment.load(path)
    assert a.method == "impq" and a.budget_bits == 3.0 and sorted(a.bits) == list(range(12))
    assert a.stored_bytes <= a.extra["budget_bytes"]
    assert 2.0 <= a.avg_bits <= 3.0 + 1e-9
    assert a.extra["solver"] == "anneal" and a.extra["exact_proven_optimal"]
    assert a.extra["gap_to_exact"] == pytest.approx(0.0, abs=1e-9)
    assert "gap to exact 0.0000%" in capsys.readouterr().out

    written = assign.run(params)
    assert [p.name for p in written] == ["2.5.json", "3.0.json"]
    assert Assignment.load(written[1]).bits == a.bits


def test_assign_reports_a_bad_budget_and_a_missing_result(
    params_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["assign", "--params", str(params_file)]) == 2
    assert "run `impq spqe` first" in capsys.readouterr().err
    params = load_params(params_file)
    synthetic_shapley(6, seed=0).save(assign.shapley_input_path(params))
    assert main(["assign", "--params", str(params_file), "--budget", "4.5"]) == 2
    assert "feasible range is [2, 4]" in capsys.readouterr().err
