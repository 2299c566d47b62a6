"""``impq serve``: the pipeline deployment registers with its schedule and runs on demand."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_registers_schedule_and_runs_dvc_repro(
    project: Path, server_env: dict[str, str], prefect_server: str, tmp_path: Path
) -> None:
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows", "serve", "--cron", "0 3 * * *", "--name", "it"],
        cwd=project,
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def deployment():
            r = httpx.get(f"{prefect_server}/deployments/name/impq-pipeline/it")
            return r.json() if r.status_code == 200 else None

        dep = wait_for(deployment, 120, "the deployment")
        crons = [s["schedule"].get("cron") for s in dep["schedules"]]
        assert crons == ["0 3 * * *"]
        assert dep["parameters"]["repo"] == str(project.resolve())

        def created():  # the shared test server (SQLite) may answer an error under load
            r = httpx.post(
                f"{prefect_server}/deployments/{dep['id']}/create_flow_run",
                json={"parameters": {"targets": ["prepare"]}},
            )
            answers.append(f"{r.status_code} {r.text[:300]}")
            return r.json() if r.status_code == 201 else None

        answers: list[str] = []
        try:
            run = wait_for(created, 60, "a flow run of the deployment")
        except AssertionError as err:
            raise AssertionError(f"{err}; the server answered: {answers[-3:]}") from None

        def finished():
            state = httpx.get(f"{prefect_server}/flow_runs/{run['id']}").json()["state_type"]
            return state if state in {"COMPLETED", "FAILED", "CRASHED"} else None

        assert wait_for(finished, 240, "the served flow run") == "COMPLETED", (
            tmp_path / "serve.log"
        ).read_text()[-4000:]
        assert (project / "dvc.lock").is_file()
        assert (project / "artifacts" / "data" / "calibration.safetensors").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
