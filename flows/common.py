"""What every stage flow shares: task settings, cache keys, artifact snapshots, hooks.

A stage task returns the bytes of the artifacts it wrote (a :data:`Files` snapshot) and
the flow writes them back with :func:`restore`. The result is persisted, so a rerun with
the same cache key skips the work and still puts every artifact in place, even after
DVC removed the stage's outputs before running it. The sweep's cell tasks are the
exception (:data:`UNCACHED`): each cell's own input fingerprint decides whether it is
redone.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.task_runners import ThreadPoolTaskRunner

from impq.artifacts import atomic_path, fingerprint_path
from impq.config import Params, RunnerConfig
from impq.llamacpp.build import LlamaCppNotBuiltError
from impq.pipeline.stages import params_subset

__all__ = [
    "CACHE_POLICY",
    "DETERMINISTIC",
    "FAULT_ENV",
    "KILL_ENV",
    "STAGE_TASK",
    "TASK_RUNNERS",
    "TASK_RUNNER_ENV",
    "UNCACHED",
    "Files",
    "InjectedFault",
    "fault_point",
    "fingerprint_path",
    "kill_point",
    "params_subset",
    "prefect_api_url",
    "restore",
    "retry_unless",
    "runner_name",
    "snapshot",
    "task_runner",
]

Files = dict[str, bytes]
"""Artifact path (as the stage wrote it) -> its bytes."""

FAULT_ENV = "IMPQ_FAULT_ONCE"
TASK_RUNNER_ENV = "IMPQ_TASK_RUNNER"
TASK_RUNNERS = ("local", "ray")
KILL_ENV = "IMPQ_KILL_ONCE"

CACHE_POLICY = INPUTS - "params" - "model" + TASK_SOURCE
"""Cache on a task's explicit key arguments and its source; never on params or a model.

Tasks receive ``params`` for the work and a ``key`` that holds exactly what the result
depends on: the params keys of the stage, fingerprints of its input files and
:meth:`impq.pipeline.stages.Stage.code_version`.
"""

DETERMINISTIC: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    LlamaCppNotBuiltError,
)
"""Failures a retry would only repeat: bad params or input (``ConfigError``, a layout
that does not fit, unsupported bits, an over-budget or failed export check are all
``ValueError``), a missing file, llama.cpp not built. Anything else (a lost worker, a
flaky tool, the network) may pass on a retry."""


def retry_unless(final: tuple[type[BaseException], ...]) -> Any:
    """A ``retry_condition_fn`` that retries unless the task failed with one of ``final``
    (failures a retry would only repeat)."""

    def may_pass(task: Any, run: Any, state: Any) -> bool:
        try:
            state.result()
        except final:
            return False
        except Exception:
            return True
        return True

    return may_pass


STAGE_TASK: dict[str, Any] = {
    "cache_policy": CACHE_POLICY,
    "persist_result": True,
    "retries": 2,
    "retry_delay_seconds": [1, 5],
    "retry_condition_fn": retry_unless(DETERMINISTIC),
}
"""Options of every task that does a stage's work (cached, persisted, retried unless
the failure is :data:`DETERMINISTIC`)."""

UNCACHED: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
"""Task options that neither cache nor persist its result: for a task whose work decides
itself whether it is up to date, or whose output only DVC should keep."""


class InjectedFault(RuntimeError):
    """The failure raised once by :func:`fault_point` (a test hook)."""


def fault_point(task_name: str) -> None:
    """Fail once in ``task_name`` when ``$IMPQ_FAULT_ONCE`` is ``<task name>:<marker file>``.

    A test hook: the first attempt creates the marker file and raises
    :class:`InjectedFault`; attempts that find the marker go on. Without the variable
    this does nothing.
    """
    spec = os.environ.get(FAULT_ENV, "")
    name, _, marker = spec.partition(":")
    if name != task_name or not marker or Path(marker).exists():
        return
    Path(marker).write_text(f"{task_name} failed once\n")
    raise InjectedFault(f"injected fault in task {task_name!r} ({FAULT_ENV}={spec})")


def snapshot(paths: Iterable[str | Path]) -> Files:
    """The bytes of each written artifact, keyed by its path."""
    return {str(p): Path(p).read_bytes() for p in paths}


def restore(files: Files) -> list[Path]:
    """Write each snapshotted artifact back where it belongs (when missing or different)."""
    written = []
    for name, data in files.items():
        path = Path(name)
        if not path.is_file() or path.read_bytes() != data:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        written.append(path)
    return written


def runner_name(params: Params | None = None) -> str:
    """``local`` or ``ray``: ``$IMPQ_TASK_RUNNER`` when set, else ``params.runner.name``.

    Raises:
        ValueError: ``$IMPQ_TASK_RUNNER`` names neither.
    """
    cfg = params.runner if params is not None else RunnerConfig()
    choice = os.environ.get(TASK_RUNNER_ENV) or cfg.name
    if choice not in TASK_RUNNERS:
        raise ValueError(f"unknown {TASK_RUNNER_ENV}={choice!r}; choose from {list(TASK_RUNNERS)}")
    return choice


def task_runner(params: Params | None = None) -> Any:
    """The task runner of ``params.runner``: local (a thread, one unit at a time) or Ray.

    ``$IMPQ_TASK_RUNNER`` (``local`` or ``ray``) overrides ``runner.name``. With Ray the
    runner connects to ``runner.address`` (default: a local Ray instance, or the one this
    process already joined), and its workers report their task runs to this process's
    Prefect API: ``$PREFECT_API_URL`` when set, else the temporary server started here
    (the same one the flow uses), so that no worker starts a server of its own.
    """
    cfg = params.runner if params is not None else RunnerConfig()
    if runner_name(params) == "local":
        return ThreadPoolTaskRunner(max_workers=1)
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as err:
        raise ValueError("runner.name: ray needs prefect-ray: pip install -e '.[ray]'") from err
    env = {"PREFECT_API_URL": prefect_api_url()}
    for name in ("PYTHONPATH", "IMPQ_DATA_DIR", "HF_HUB_OFFLINE", KILL_ENV):
        if name in os.environ:
            env[name] = os.environ[name]
    return RayTaskRunner(
        address=cfg.address or os.environ.get("RAY_ADDRESS"),
        init_kwargs={"runtime_env": {"env_vars": env}},
    )


def prefect_api_url() -> str:
    """``$PREFECT_API_URL``, else the URL of this process's temporary Prefect server
    (started now if need be; the flows of this process use the same one)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        return str(url)
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # one per process: the one get_client() starts
    server.start()
    return str(server.api_url)


def kill_point(task_name: str) -> None:
    """Kill this process (SIGKILL, as a lost node would) once in ``task_name`` when
    ``$IMPQ_KILL_ONCE`` is ``<task name>:<trigger file>`` and the trigger file exists.

    A test hook for worker faults: the first process to claim the trigger (rename it)
    dies at once, mid-task; without the variable or the file this does nothing.
    """
    name, _, trigger = os.environ.get(KILL_ENV, "").partition(":")
    if name != task_name or not trigger:
        return
    try:
        os.rename(trigger, trigger + ".fired")
    except OSError:
        return  # no trigger, or another process claimed it
    os.kill(os.getpid(), signal.SIGKILL)
