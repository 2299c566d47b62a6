"""``dvc repro`` end to end in a temporary git+DVC project, reporting to real servers.

The tests of this module share one project and run in order: a full reproduction, a
no-op rerun, a one-key change, then push / clone / pull into a second checkout. Each test
first brings the project to the state it starts from (:func:`at_budgets`, a reproduction
that is a no-op when an earlier test left it there), so each also passes alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from harness import experiment_of, run

from flows import forkserver
from flows.server import ForkServer

pytestmark = pytest.mark.slow

STAGE_NAMES = {
    "prepare",
    "evaluate",
    "spqe",
    "interactions",
    "assign",
    "baselines",
    "evopress",
    "verify",
    "seeded",
    "sweep",
    "assembled",
    "report",
    "compare",
    "export",
}
"""Every stage: each is a Prefect flow of that name and an MLflow run tagged with it."""

BUDGET_STAGES = {
    "assign",
    "baselines",
    "evopress",
    "verify",
    "seeded",
    "sweep",
    "assembled",
    "compare",
    "export",
}
"""The stages that read ``budgets``: a budget change reruns exactly these."""


@pytest.fixture(scope="module")
def stage_env(project: Path, server_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``server_env`` with a fork server of the project's code, as ``make repro`` runs the
    stages (test_any_architecture runs them each in its own process)."""
    forks = ForkServer(project.parent / "forkserver.log")
    env = {**server_env, forkserver.ENV: str(forks.socket)}
    forks.start(env, cwd=project)
    try:
        assert forks.ready(), forks.log.read_text()
        yield env
    finally:
        forks.stop()


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


def at_budgets(project: Path, env: dict[str, str], budgets: list[float]) -> None:
    """Set ``budgets`` in the project's params.yaml and reproduce (nothing runs when the
    project is already there)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    if params["budgets"] != budgets:
        params["budgets"] = budgets
        path.write_text(yaml.safe_dump(params, sort_keys=False))
    repro(project, env)


def test_repro_runs_every_stage(project: Path, stage_env: dict[str, str]) -> None:
    ran = repro(project, stage_env)
    assert {s.split("@")[0] for s in ran} == all_stages(project)
    served = (project.parent / "forkserver.log").read_text()
    assert {s for s in STAGE_NAMES if f": impq {s} --params" in served} == STAGE_NAMES
    assert "refused" not in served  # DVC ran every stage in a child of the fork server
    assert "assign" in ran
    float_metrics = json.loads((project / "metrics" / "float.json").read_text())
    assert float_metrics["n_windows"] == 2
    assert float_metrics["ppl"] > 1.0
    sweep = json.loads((project / "metrics" / "sweep.json").read_text())
    assert sweep["combinations"] == 3  # quanto x three methods x one budget
    for name in ("shapley.png", "interactions.png", "shapley.csv", "sweep/ppl_vs_bits_quanto.png"):
        assert (project / "plots" / name).is_file(), name
    assert sorted(p.name for p in (project / "artifacts" / "baselines").iterdir()) == [
        "lim",
        "uniform",
    ]
    # the stage shares quantized blocks between combinations: each (block, bits) once
    rows = [json.loads(p.read_text()) for p in (project / "metrics/sweep/quanto").glob("*.json")]
    assert len(rows) == 3
    pairs = {(i, b) for r in rows for i, b in enumerate(r["bits"].split(","))}
    assert sum(r["blocks_quantized"] for r in rows) == len(pairs)


def test_second_repro_runs_nothing(project: Path, stage_env: dict[str, str]) -> None:
    repro(project, stage_env)
    assert repro(project, stage_env) == set()


def push_and_clone(project: Path, env: dict[str, str], name: str) -> Path:
    """Commit and push the project, then clone it beside itself and pull."""
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-q", "-m", f"pipeline results ({name})"], project, env)
    run(["dvc", "push"], project, env)
    clone = project.parent / name
    run(["git", "clone", "-q", str(project), str(clone)], project.parent, env)
    run(["dvc", "pull"], clone, env)
    return clone


def test_push_clone_pull_recomputes_nothing(project: Path, stage_env: dict[str, str]) -> None:
    env = stage_env
    repro(project, env)
    clone = push_and_clone(project, env, "clone")
    status = run(["dvc", "status"], clone, env).stdout
    assert "up to date" in status, status
    assert repro(clone, env) == set()
    assert (clone / "artifacts" / "data" / "eval_tokens.safetensors").is_file()


def test_one_budget_reruns_only_downstream(project: Path, stage_env: dict[str, str]) -> None:
    at_budgets(project, stage_env, [3.0])
    params = project / "params.yaml"
    text = params.read_text()
    assert "budgets:\n- 3.0\n" in text
    params.write_text(text.replace("budgets:\n- 3.0\n", "budgets:\n- 2.5\n"))
    assert repro(project, stage_env) == BUDGET_STAGES
    assert (project / "artifacts" / "assign" / "impq" / "2.5.json").is_file()
    assert not (
        project / "artifacts" / "assign" / "impq" / "3.0.json"
    ).exists()  # DVC emptied the output folder
    assert "budgets" in run(["dvc", "params", "diff"], project, stage_env).stdout
    metrics_diff = run(["dvc", "metrics", "diff"], project, stage_env).stdout
    assert "quanto/impq/2.5/ppl" in metrics_diff


def test_clone_after_a_budget_change_recomputes_nothing(
    project: Path, stage_env: dict[str, str]
) -> None:
    # the 3.0 assignment is gone; its file must not be part of what the sweep depends on
    at_budgets(project, stage_env, [2.5])
    clone = push_and_clone(project, stage_env, "clone-after-budget-change")
    status = run(["dvc", "status"], clone, stage_env).stdout
    assert "up to date" in status, status
    assert sorted(p.name for p in (clone / "artifacts" / "assign" / "impq").iterdir()) == [
        "2.5.json"
    ]


def test_servers_saw_the_runs(
    project: Path, stage_env: dict[str, str], prefect_server: str, mlflow_server: str
) -> None:
    repro(project, stage_env)  # at least one pipeline execution
    flows = httpx.post(f"{prefect_server}/flows/filter", json={}).json()
    flow_names = {f["name"] for f in flows}
    assert flow_names >= STAGE_NAMES
    runs = httpx.post(
        f"{prefect_server}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["evaluate"]}}},
    ).json()
    assert any(r["state_type"] == "COMPLETED" for r in runs)
    tasks = httpx.post(
        f"{prefect_server}/task_runs/filter",
        json={"task_runs": {"name": {"like_": "evaluation"}}},
    ).json()
    assert tasks and all(t["state_type"] == "COMPLETED" for t in tasks)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name(experiment_of(project))
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = {r.info.run_id: r for r in runs if "impq.pipeline_key" in r.data.tags}
    # one pipeline execution per params.yaml content (two after the budget change)
    assert parents
    stages = {r.info.run_id: r for r in runs if "impq.stage" in r.data.tags}
    assert {r.data.tags["mlflow.parentRunId"] for r in stages.values()} <= set(parents)
    by_stage = {r.data.tags["impq.stage"] for r in stages.values()}
    assert by_stage == STAGE_NAMES
    evaluations = [r for r in stages.values() if r.data.tags["impq.stage"] == "evaluate"]
    assert evaluations and all(r.data.metrics["float.ppl"] > 1.0 for r in evaluations)
    combos = [r for r in runs if "backend" in r.data.tags]
    sweeps = [r for r in stages.values() if r.data.tags["impq.stage"] == "sweep"]
    assert sweeps and len(combos) == 3 * len(sweeps)  # 3 combinations per sweep (1 budget)
    for combo in combos:
        parent = stages[combo.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags["impq.stage"] == "sweep"
        assert combo.data.metrics["avg_bits"] > 0 and combo.data.metrics["stored_bytes"] > 0


def test_alpha_change_reassembles_without_sampling(
    project: Path, stage_env: dict[str, str]
) -> None:
    # after test_servers_saw_the_runs: it adds a pipeline execution to the tracking server
    repro(project, stage_env)
    params = project / "params.yaml"
    text = params.read_text()
    assert "  alpha: 0.5\n" in text
    samples = (project / "artifacts" / "spqe" / "samples.npz").read_bytes()
    shapley = (project / "artifacts" / "spqe" / "shapley.npz").read_bytes()
    params.write_text(text.replace("  alpha: 0.5\n", "  alpha: 0.25\n"))
    ran = repro(project, stage_env)
    assert "spqe" not in ran and "prepare" not in ran and "evaluate" not in ran
    assert {"interactions", "assign", "baselines", "verify", "report"} <= ran
    assert ran <= {"interactions", "report", *BUDGET_STAGES} - {"evopress"}
    assert (project / "artifacts" / "spqe" / "samples.npz").read_bytes() == samples
    assert (project / "artifacts" / "spqe" / "shapley.npz").read_bytes() != shapley
    assert repro(project, stage_env) == set()


def test_experiment_with_one_param_changed(project: Path, stage_env: dict[str, str]) -> None:
    # runs last: it adds another pipeline execution to the tracking server
    repro(project, stage_env)
    out = run(["dvc", "exp", "run", "-S", "budgets=[3.5]"], project, stage_env)
    assert ran_stages(out.stdout + out.stderr) == BUDGET_STAGES
    sweep = json.loads((project / "metrics" / "sweep.json").read_text())
    assert "quanto/impq/3.5/ppl" in sweep and "quanto/impq/2.5/ppl" not in sweep
    shown = run(["dvc", "exp", "show", "--json"], project, stage_env).stdout
    assert "3.5" in shown
