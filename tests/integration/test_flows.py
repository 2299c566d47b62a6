"""Stage flows against a real Prefect server: a failing task is retried; a rerun is cached."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from harness import run

pytestmark = pytest.mark.slow


def task_runs(api: str, name: str, since: datetime) -> list[dict]:
    """Task runs named like ``name`` expected to start after ``since``, newest first (the
    server is shared with every other test of the session)."""
    runs = {"name": {"like_": name}, "expected_start_time": {"after_": since.isoformat()}}
    return httpx.post(
        f"{api}/task_runs/filter", json={"task_runs": runs, "sort": "EXPECTED_START_TIME_DESC"}
    ).json()


def _now() -> datetime:
    return datetime.now(UTC)


def test_failing_task_is_retried_and_flow_completes(
    project: Path, server_env: dict[str, str], prefect_server: str, tmp_path: Path
) -> None:
    marker = tmp_path / "fault-marker"
    since = _now()
    env = {**server_env, "IMPQ_FAULT_ONCE": f"calibration-prep:{marker}"}
    out = run([sys.executable, "-m", "flows", "prepare"], project, env)
    assert marker.is_file(), "the injected fault did not fire"
    assert "injected fault" in out.stderr
    assert (project / "artifacts" / "data" / "calibration.safetensors").is_file()
    retried = [
        t for t in task_runs(prefect_server, "calibration-prep", since) if t["run_count"] == 2
    ]
    assert len(retried) == 1
    assert retried[0]["state_type"] == "COMPLETED"


def test_rerun_hits_the_task_cache(
    project: Path, server_env: dict[str, str], prefect_server: str
) -> None:
    artifact = project / "artifacts" / "data" / "calibration.safetensors"
    before = artifact.read_bytes()
    artifact.unlink()  # as DVC does before it runs a stage
    since = _now()
    out = run([sys.executable, "-m", "flows", "prepare"], project, server_env)
    assert "Cached" in out.stderr
    latest = task_runs(prefect_server, "calibration-prep", since)[0]
    assert latest["state_name"] == "Cached"
    assert artifact.read_bytes() == before


def test_alpha_change_hits_the_sampling_cache(
    project: Path, server_env: dict[str, str], prefect_server: str
) -> None:
    # after the tests above: the calibration set is in place
    since = _now()
    run([sys.executable, "-m", "flows", "spqe"], project, server_env)
    run([sys.executable, "-m", "flows", "interactions"], project, server_env)
    samples = project / "artifacts" / "spqe" / "samples.npz"
    before = samples.read_bytes()
    params = project / "params.yaml"
    text = params.read_text()
    assert "  alpha: 0.5\n" in text
    params.write_text(text.replace("  alpha: 0.5\n", "  alpha: 0.25\n"))
    out = run([sys.executable, "-m", "flows", "spqe"], project, server_env)
    assert "Cached" in out.stderr
    assert task_runs(prefect_server, "spqe-sampling", since)[0]["state_name"] == "Cached"
    assert samples.read_bytes() == before
    run([sys.executable, "-m", "flows", "interactions"], project, server_env)
    assembly = task_runs(prefect_server, "interaction-assembly", since)
    assert [t["state_name"] for t in assembly[:2]] == ["Completed", "Completed"]
