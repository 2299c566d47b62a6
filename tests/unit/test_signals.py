"""A terminated ``dvc repro`` stops its stage process (real dvc, real subprocesses)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two real `dvc repro` runs, a few seconds each

REPO = Path(__file__).resolve().parents[2]

STOP_WITHIN_S = 10.0
"""How soon a SIGTERM or SIGINT stops a running stage, with the fork server or without."""

STAGE = """
import atexit, os, sys, time
from pathlib import Path
from flows.cli import stop_with_parent

stop_with_parent()  # what `python -m flows <stage>` does first
out = Path(sys.argv[1])
atexit.register(lambda: (out / "clean").write_text("atexit ran"))  # e.g. Prefect's server stop
(out / "pid").write_text(str(os.getpid()))
while True:  # a stage that would run for hours, writing its checkpoint
    (out / "beat").write_text(str(time.monotonic()))
    time.sleep(0.1)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    status = Path(f"/proc/{pid}/status")
    return not (status.is_file() and "\nState:\tZ" in status.read_text())


def _wait(predicate, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, int]:
    dvc = Path(sys.executable).with_name("dvc")
    if not dvc.exists() and shutil.which("dvc") is None:
        pytest.skip("dvc is not installed")
    repo, out = tmp_path / "repo", tmp_path / "out"
    repo.mkdir()
    out.mkdir()
    (repo / "stage.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(
        f"stages:\n  forever:\n    cmd: {sys.executable} stage.py {out}\n"
        "    deps: [stage.py]\n    outs: [never.txt]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHELL": "/bin/bash", "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], [str(dvc), "init", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [str(dvc), "repro"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as a scheduler starts it
    )
    assert _wait(lambda: (out / "beat").is_file(), 120), "the stage never started"
    return proc, out, int((out / "pid").read_text())


def _stopped(out: Path, pid: int) -> None:
    assert _wait(lambda: not _alive(pid), 30), "the stage process kept running"
    assert (out / "clean").read_text() == "atexit ran"
    beat = (out / "beat").read_text()
    time.sleep(0.5)
    assert (out / "beat").read_text() == beat  # nothing writes any more


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups, /proc")
def test_sigterm_to_the_process_group_stops_the_stage(tmp_path: Path) -> None:
    proc, out, pid = _start(tmp_path)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    _stopped(out, pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
def test_a_killed_dvc_takes_its_stage_with_it(tmp_path: Path) -> None:
    proc, out, pid = _start(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)  # dvc alone, with no chance to pass anything on
    proc.wait(timeout=60)
    _stopped(out, pid)


FLOW_STAGE = """
import os, sys, time
from pathlib import Path
from prefect import flow, task
from flows.cli import stop_with_parent

stop_with_parent()
out = Path(sys.argv[1])

@task
def work():  # runs for hours, inside a flow run: Prefect's signal handlers are in charge
    (out / "pid").write_text(str(os.getpid()))
    while True:
        (out / "beat").write_text(str(time.monotonic()))
        time.sleep(0.1)

@flow
def stage():
    work()

stage()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups, /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stop_signal_stops_a_stage_inside_a_prefect_flow_run(
    tmp_path: Path, stop: signal.Signals
) -> None:
    # Prefect marks the run crashed and then waits on its API server, which the same
    # signal to the group stopped; without the hard exit the process lived on for minutes
    from flows.cli import HARD_EXIT_AFTER_S

    (tmp_path / "stage.py").write_text(FLOW_STAGE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)  # its own temporary server, in its process group
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "stage.py"), str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert _wait(lambda: (tmp_path / "beat").is_file(), 300), "the flow never started"
        stopped = time.monotonic()
        os.killpg(proc.pid, stop)
        proc.wait(timeout=HARD_EXIT_AFTER_S + 30)
        assert time.monotonic() - stopped < STOP_WITHIN_S
        assert proc.returncode != 0
        beat = (tmp_path / "beat").read_text()
        time.sleep(0.5)
        assert (tmp_path / "beat").read_text() == beat  # nothing writes any more
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
