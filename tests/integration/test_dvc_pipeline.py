"""``dvc repro`` end to end in a temporary git+DVC project, reporting to real servers.

The tests of this module share one project and run in order: a full reproduction, a
no-op rerun, a one-key change, then push / clone / pull into a second checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import yaml
from harness import run

pytestmark = pytest.mark.slow


def ran_stages(output: str) -> set[str]:
    """The stages DVC ran, from its ``Running stage '<name>'`` lines."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def all_stages(project: Path) -> set[str]:
    """Every stage of the project's dvc.yaml (foreach stages as ``name@key``)."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    return set(stages)


def repro(project: Path, env: dict[str, str]) -> set[str]:
    out = run(["dvc", "repro"], project, env)
    return ran_stages(out.stdout + out.stderr)


def test_repro_runs_every_stage(project: Path, server_env: dict[str, str]) -> None:
    ran = repro(project, server_env)
    assert {s.split("@")[0] for s in ran} == all_stages(project)
    float_metrics = yaml.safe_load((project / "metrics" / "float.json").read_text())
    assert float_metrics["n_windows"] == 2
    assert float_metrics["ppl"] > 1.0
    assert (project / "artifacts" / "data" / "calibration.safetensors").is_file()


def test_second_repro_runs_nothing(project: Path, server_env: dict[str, str]) -> None:
    assert repro(project, server_env) == set()


def test_one_key_reruns_only_downstream(project: Path, server_env: dict[str, str]) -> None:
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("max_windows: 2", "max_windows: 3"))
    ran = repro(project, server_env)
    assert ran == {"evaluate"}
    assert yaml.safe_load((project / "metrics" / "float.json").read_text())["n_windows"] == 3
    diff = run(["dvc", "params", "diff"], project, server_env).stdout
    assert "eval.max_windows" in diff
    metrics_diff = run(["dvc", "metrics", "diff"], project, server_env).stdout
    assert "n_windows" in metrics_diff


def test_push_clone_pull_recomputes_nothing(
    project: Path, server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = server_env
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-q", "-m", "pipeline results"], project, env)
    run(["dvc", "push"], project, env)
    clone = project.parent / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], project.parent, env)
    run(["dvc", "pull"], clone, env)
    status = run(["dvc", "status"], clone, env).stdout
    assert "up to date" in status, status
    assert repro(clone, env) == set()
    assert (clone / "artifacts" / "data" / "eval_tokens.safetensors").is_file()


def test_servers_saw_the_runs(project: Path, prefect_server: str, mlflow_server: str) -> None:
    flows = httpx.post(f"{prefect_server}/flows/filter", json={}).json()
    flow_names = {f["name"] for f in flows}
    assert {"prepare", "evaluate"} <= flow_names
    runs = httpx.post(
        f"{prefect_server}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["evaluate"]}}},
    ).json()
    assert sum(r["state_type"] == "COMPLETED" for r in runs) >= 2
    tasks = httpx.post(
        f"{prefect_server}/task_runs/filter",
        json={"task_runs": {"name": {"like_": "evaluation"}}},
    ).json()
    assert tasks and all(t["state_type"] == "COMPLETED" for t in tasks)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("impq-it")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "impq.pipeline_key" in r.data.tags]
    # one pipeline execution per params.yaml content: the original and the edited one
    assert len(parents) == 2
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    by_stage = {r.data.tags["impq.stage"] for r in children}
    assert {"prepare", "evaluate"} <= by_stage
    evaluations = [r for r in children if r.data.tags["impq.stage"] == "evaluate"]
    assert all(r.data.metrics["float.ppl"] > 1.0 for r in evaluations)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} <= {p.info.run_id for p in parents}
