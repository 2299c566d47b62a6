"""Helpers of the integration tests: server processes, subprocess runs, temporary projects."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from flows.server import stop_process_group

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TINY_OVERRIDES: dict[str, Any] = {
    "model": {"source": "models/ref-llama-12l", "device": "cpu"},
    "data": {"calibration": {"n_samples": 2, "seqlen": 64}},
    # the paper's two-level game on quanto: fast, and it keeps the 2/4 mode running end to end
    "spqe": {
        "permutations": 2,
        "n_samples": 2,
        "batch_size": None,
        "backend": "quanto",
        "ladder": [4, 2],
    },
    "solver": {"num_reads": 4, "num_sweeps": 50, "precisions": [2, 4]},
    "budgets": [3.0],
    "eval": {
        "seqlen": 64,
        "batch_size": 4,
        "max_windows": 2,
        "methods": ["impq", "lim", "uniform"],
    },
    "backends": {"names": ["quanto"]},
    "tracking": {"experiment": "impq-it", "uri": None},
}
"""What the integration projects change in the repository's params.yaml (a tiny run)."""


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, recursively."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny_params(over: dict[str, Any] | None = None) -> str:
    """The repository's params.yaml with :data:`TINY_OVERRIDES` and ``over``.

    Starting from the real file keeps every key that dvc.yaml tracks present.
    """
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    return yaml.safe_dump(merge(merge(base, TINY_OVERRIDES), over or {}), sort_keys=False)


PROJECT_FILES = (
    "impq",
    "flows",
    "models/ref-llama-12l",
    "dvc.yaml",
    "pyproject.toml",
    ".gitignore",
    ".dvcignore",
    ".dvc/config",
    ".dvc/.gitignore",
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server process started by a fixture."""

    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        """Stop the server and everything it started."""
        stop_process_group(self.proc, grace=20)


def start_server(cmd: list[str], health: str, log: Path, env: dict[str, str]) -> Server:
    """Start ``cmd`` in its own process group and wait until ``health`` answers 200."""
    out = log.open("w")
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    server = Server(health, proc, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"{' '.join(cmd)} did not become healthy:\n{log.read_text()[-3000:]}")


def base_env() -> dict[str, str]:
    """The environment the tests hand to subprocesses (offline, no telemetry)."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    # set in this process when a test module imports `flows`: every project's stages would
    # share one result cache (and hit each other's entries) instead of their own
    env.pop("PREFECT_RESULTS_LOCAL_STORAGE_PATH", None)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True):
    """Run a command, failing with its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def experiment_of(project: Path) -> str:
    """The MLflow experiment a project's stages log to."""
    return str(yaml.safe_load((project / "params.yaml").read_text())["tracking"]["experiment"])


def make_project(
    dest: Path, env: dict[str, str], params: str | None = None, experiment: str = "impq-it"
) -> Path:
    """A git+DVC repository at ``dest``: the project files, tiny params, one commit."""
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    over = {"tracking": {"experiment": experiment}}
    (dest / "params.yaml").write_text(params or tiny_params(over))
    run(["git", "init", "-q", "-b", "main"], dest, env)
    run(["git", "config", "user.email", "it@impq.test"], dest, env)
    run(["git", "config", "user.name", "impq integration test"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-q", "-m", "project"], dest, env)
    return dest
