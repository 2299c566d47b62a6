"""The ``assign`` stage's numerical entry point on synthetic objectives.

The CLI runs this through its Prefect flow (tested with the flows); here the stage
function is called directly, so no orchestration is started.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from impq.assignment import Assignment
from impq.config import Params
from impq.estimate import LevelObjective
from impq.pipeline import assign
from impq.pipeline.interactions import objective_path
from impq.pipeline.params import load_params
from impq.solve.synthetic import synthetic_level_objective, synthetic_shapley


def _params(tmp_path: Path, methods: list[str], walks: str = "prefix") -> Params:
    doc = {
        "model": {"source": str(tmp_path)},  # a folder: params load; assign reads no model
        "spqe": {"walks": walks},
        "solver": {"num_reads": 8, "num_sweeps": 200, "exact_check": True},
        "budgets": [2.5, 3.0],
        "eval": {"methods": methods},
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


@pytest.fixture
def params(tmp_path: Path) -> Params:
    return _params(tmp_path, ["lim", "surrogate", "impq"])


def test_assign_writes_one_feasible_artifact_per_method_and_budget(params: Params) -> None:
    for seed, method in enumerate(("impq", "surrogate")):
        result = synthetic_shapley(12, block_params=np.arange(1, 13) * 4096, seed=3 + seed)
        LevelObjective.from_shapley(result).save(objective_path(params, method))

    written = assign.run(params, budget=3.0, method="impq")
    assert written == [assign.assignment_path(params, 3.0, "impq")]
    a = Assignment.load(written[0])
    assert written[0].name == "3.0.json" and written[0].parent.name == "impq"
    assert a.method == "impq" and a.budget_bits == 3.0 and sorted(a.bits) == list(range(12))
    assert a.stored_bytes <= a.extra["budget_bytes"]
    assert 2.0 <= a.avg_bits <= 3.0 + 1e-9
    assert a.extra["solver"] == "anneal" and a.extra["exact_proven_optimal"]
    assert a.extra["gap_to_exact"] == pytest.approx(0.0, abs=1e-9)

    written = assign.run(params)
    assert [(p.parent.name, p.name) for p in written] == [
        (m, f"{b}.json") for m in ("surrogate", "impq") for b in (2.5, 3.0)
    ]  # eval.methods order, baselines (lim) left to their own stage
    assert Assignment.load(assign.assignment_path(params, 3.0, "impq")).bits == a.bits
    assert Assignment.load(written[0]).method == "surrogate"


def test_assign_reports_a_missing_objective_a_bad_method_and_a_bad_budget(
    params: Params, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="run `impq interactions` first"):
        assign.run(params)
    with pytest.raises(ValueError, match="not among the objective methods"):
        assign.run(params, method="lim")
    LevelObjective.from_shapley(synthetic_shapley(6, seed=0)).save(
        objective_path(params, "surrogate")
    )
    with pytest.raises(ValueError, match=r"feasible range is \[2, 4\]"):
        assign.run(params, budget=4.5, method="surrogate")
    with pytest.raises(ValueError, match=r"method 'sii' needs spqe\.walks"):
        assign.run(_params(tmp_path, ["sii"], walks="prefix"))


def test_assign_over_a_three_level_ladder(tmp_path: Path) -> None:
    params = _params(tmp_path, ["impq"])
    ladder = params.spqe.model_copy(update={"ladder": [4, 3, 2]})
    params = params.model_copy(
        update={
            "spqe": ladder,
            "solver": params.solver.model_copy(update={"precisions": [2, 3, 4]}),
        }
    )
    objective = synthetic_level_objective(8, (4, 3, 2), block_params=np.arange(1, 9) * 4096, seed=1)
    objective.save(objective_path(params, "impq"))
    written = assign.run(params, budget=3.0)
    a = Assignment.load(written[0])
    assert set(a.bits.values()) <= {2, 3, 4} and a.stored_bytes <= a.extra["budget_bytes"]
    assert a.extra["ladder"] == [4, 3, 2] and a.extra["gap_to_exact"] == pytest.approx(0, abs=1e-9)
    off_ladder = params.model_copy(
        update={"solver": params.solver.model_copy(update={"precisions": [2, 4, 8]})}
    )
    with pytest.raises(ValueError, match=r"precisions \[8\] are not on the ladder \[4, 3, 2\]"):
        assign.run(off_ladder, budget=3.0)
    two = params.model_copy(update={"spqe": params.spqe.model_copy(update={"ladder": [4, 2]})})
    with pytest.raises(ValueError, match=r"measured on the ladder \[4, 3, 2\], but spqe.ladder"):
        assign.run(two, budget=3.0)
