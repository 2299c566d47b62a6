"""MLflow tracking against a real local store: nested runs, a shared parent, outages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from harness import free_port

from impq import tracking
from impq.pipeline.params import parse_params


def params_for(uri: str):
    return parse_params(
        {"model": {"source": "models/ref-llama-12l"}, "tracking": {"uri": uri, "experiment": "t"}}
    )


def test_stages_nest_under_one_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(tracking.RUN_GROUP_ENV, raising=False)
    (tmp_path / "params.yaml").write_text("model: {source: x}\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = params_for(uri)
    with tracking.stage_run(params, "spqe") as run:
        assert run.active
        run.log_params({"spqe": {"alpha": 0.5}})
        run.log_metrics({"evaluations": 12, "skipped": float("nan"), "name": "x"})
        (tmp_path / "a.json").write_text("{}")
        run.log_artifact(tmp_path / "a.json", "assign")
        with run.child("quanto/impq/3.0", tags={"backend": "quanto"}) as combo:
            combo.log_metrics({"ppl": 42.0})
    with tracking.stage_run(params, "report") as second:
        second.log_metrics({"plots": 3})

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("t")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    parents = [r for r in runs.values() if tracking.PIPELINE_KEY_TAG in r.data.tags]
    assert len(parents) == 1
    parent = parents[0].info.run_id
    assert runs["spqe"].data.tags["mlflow.parentRunId"] == parent
    assert runs["report"].data.tags["mlflow.parentRunId"] == parent
    combo_run = runs["quanto/impq/3.0"]
    assert combo_run.data.tags["mlflow.parentRunId"] == runs["spqe"].info.run_id
    assert combo_run.data.metrics == {"ppl": 42.0}
    assert runs["spqe"].data.params == {"spqe.alpha": "0.5"}
    assert runs["spqe"].data.metrics == {"evaluations": 12.0}
    assert runs["spqe"].info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(runs["spqe"].info.run_id, "assign")] == [
        "assign/a.json"
    ]


def test_failed_stage_is_marked_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(tracking.RUN_GROUP_ENV, "group-1")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(RuntimeError), tracking.stage_run(params_for(uri), "sweep"):
        raise RuntimeError("boom")

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("t")
    (run,) = client.search_runs([exp.experiment_id], "tags.`impq.stage` = 'sweep'")
    assert run.info.status == "FAILED"
    (parent,) = client.search_runs([exp.experiment_id], "tags.`impq.pipeline_key` = 'group-1'")
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_tracking_outage_does_not_stop_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    done = []
    with caplog.at_level(logging.WARNING), tracking.stage_run(params_for(dead), "assign") as run:
        assert not run.active
        run.log_metrics({"x": 1.0})
        run.log_artifact(tmp_path / "missing.json")
        done.append(True)
    assert done == [True]
    assert "unreachable" in caplog.text


def test_uri_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = params_for("http://example:5000").tracking
    assert tracking.resolve_uri(cfg) == "http://example:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking.resolve_uri(params_for(None).tracking) == "http://env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri = tracking.resolve_uri(params_for(None).tracking, tmp_path)
    assert uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
