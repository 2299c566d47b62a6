"""The export stage on a tiny saved model: checks, budget, metrics, params, dvc.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from impq.artifacts import fingerprint, write_tensors
from impq.assignment import Assignment
from impq.backends.base import OverBudgetError, budget_bytes_for
from impq.config import ConfigError, Params
from impq.models.tiny import tiny_model
from impq.pipeline import export
from impq.pipeline.params import parse_params
from impq.pipeline.prepare import calibration_path, eval_tokens_path

REPO = Path(__file__).resolve().parents[3]
GROUP = 32


def _params(tmp_path: Path, **export_cfg: Any) -> Params:
    tiny_model("llama", num_layers=4).save_pretrained(tmp_path / "model")
    params = parse_params(
        {
            "model": {"source": str(tmp_path / "model"), "device": "cpu"},
            "eval": {"seqlen": 32, "batch_size": 4, "max_windows": 4, "methods": ["impq"]},
            "backends": {"names": ["hqq"], "group_size": GROUP},
            "budgets": [2.5, 3.0],
            "export": {"out": str(tmp_path / "shipped"), **export_cfg},
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    ids = torch.randint(0, 256, (1024,), generator=torch.Generator().manual_seed(0))
    write_tensors(eval_tokens_path(params), {"input_ids": ids}, {"fingerprint": fingerprint(ids)})
    write_tensors(calibration_path(params), {"input_ids": ids[:128].view(4, 32)}, {})
    return params


def _write_assignment(params: Params, bits: dict[int, int], budget: float) -> None:
    model = tiny_model("llama", num_layers=4)
    Assignment(
        bits=bits,
        method="impq",
        budget_bits=budget,
        stored_bytes=0,
        avg_bits=sum(bits.values()) / len(bits),
        extra={
            "precisions": [2, 4],
            "group_size": GROUP,
            "budget_bytes": budget_bytes_for(model, budget, GROUP, (2, 4)),
        },
    ).save(export.assignment_input(params))


def test_stage_ships_a_checked_model_and_its_figures(tmp_path: Path) -> None:
    params = _params(tmp_path, budget=3.0)
    _write_assignment(params, {0: 4, 1: 2, 2: 2, 3: 4}, 3.0)
    metrics = export.run(params)

    out = export.output_dir(params)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "qmodel.pt"]
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temp
    assert json.loads(export.metrics_path(params).read_text()) == metrics
    assert metrics["linears"] == 4 * 7 and metrics["bits"] == "4,2,2,4"
    assert metrics["stored_bytes"] == metrics["expected_bytes"] <= metrics["budget_bytes"]
    assert metrics["budget_bytes"] == metrics["solver_budget_bytes"]  # HQQ: 16-bit scale+zero
    assert metrics["bits_per_weight"] == pytest.approx(3.0 + 8 * 4 / GROUP)  # + 4 B a group
    assert metrics["size_on_disk_bytes"] > metrics["stored_bytes"]  # + float parts, config
    assert metrics["ppl_reloaded"] == pytest.approx(metrics["ppl_in_process"], rel=1e-6)
    assert metrics["ppl_rel_diff"] <= metrics["ppl_rtol"] and metrics["n_windows"] == 4


def test_stage_fails_over_budget_and_ships_nothing(tmp_path: Path) -> None:
    params = _params(tmp_path, budget=2.5)
    _write_assignment(params, dict.fromkeys(range(4), 4), 2.5)  # all-4 does not fit 2.5 bits
    with pytest.raises(OverBudgetError, match="over its budget"):
        export.run(params)
    assert not export.output_dir(params).exists()
    assert not export.metrics_path(params).exists()
    assert [p.name for p in export.output_dir(params).parent.iterdir() if p.name[0] == "."] == []


def test_a_method_no_stage_writes_is_refused_when_params_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'zd' is not in eval.methods \['impq'\]"):
        _params(tmp_path, method="zd")


def test_stage_refuses_an_assignment_of_another_group_size(tmp_path: Path) -> None:
    params = _params(tmp_path)  # budget null: the largest, 3.0
    assert params.export_budget() == 3.0
    _write_assignment(params, dict.fromkeys(range(4), 2), 3.0)
    a = Assignment.load(export.assignment_input(params))
    a.extra["group_size"] = 64
    a.save(export.assignment_input(params))
    with pytest.raises(ValueError, match="group size 64"):
        export.run(params)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"export": {"backend": "awq"}}, "unknown export backend 'awq'"),
        ({"export": {"budget": 2.75}}, "export.budget 2.75 is not in budgets"),
        ({"export": {"method": "hawq"}}, "export.method 'hawq' is not in eval.methods"),
        ({"export": {"outdir": "x"}}, "export.outdir: unknown key"),
    ],
)
def test_export_params_are_validated(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_params({"model": {"source": "x"}, **section})


def test_dvc_stage_declares_the_model_folder_and_the_metrics() -> None:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stage = dvc["stages"]["export"]
    assert stage["cmd"] == "python -m flows export --params params.yaml"
    assert stage["outs"] == ["${export.out}"]
    assert [next(iter(m)) for m in stage["metrics"]] == ["metrics/export.json"]
    assert {"export", "budgets", "backends.group_size"} <= set(stage["params"])
    assert {"impq/pipeline/export.py", "flows/stage.py", "impq/export"} <= set(stage["deps"])
    assert "metrics/export.json" in dvc["metrics"]
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())["export"]
    assert parse_params({"model": {"source": "x"}, "export": defaults}).export.backend == "hqq"


def test_flow_retries_only_what_may_pass() -> None:
    from prefect.states import Failed

    from flows.common import retry_unless
    from impq.pipeline.stages import STAGES

    _may_pass = retry_unless(STAGES["export"].error_types())

    assert not _may_pass(None, None, Failed(data=OverBudgetError("over")))
    assert not _may_pass(None, None, Failed(data=FileNotFoundError("gone")))
    assert _may_pass(None, None, Failed(data=RuntimeError("flaky")))
