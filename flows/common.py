"""What every stage flow shares: task settings, cache keys, artifact snapshots, hooks.

A stage task returns the bytes of the artifacts it wrote (a :data:`Files` snapshot) and
the flow writes them back with :func:`restore`. The result is persisted, so a rerun with
the same cache key skips the work and still puts every artifact in place, even after
DVC removed the stage's outputs before running it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.task_runners import ThreadPoolTaskRunner

from impq.artifacts import atomic_path, fingerprint_path
from impq.pipeline.stages import code_version, params_subset

__all__ = [
    "CACHE_POLICY",
    "FAULT_ENV",
    "STAGE_TASK",
    "TASK_RUNNERS",
    "TASK_RUNNER_ENV",
    "Files",
    "InjectedFault",
    "code_version",
    "fault_point",
    "fingerprint_path",
    "params_subset",
    "restore",
    "retry_unless",
    "snapshot",
    "task_runner",
]

Files = dict[str, bytes]
"""Artifact path (as the stage wrote it) -> its bytes."""

FAULT_ENV = "IMPQ_FAULT_ONCE"
TASK_RUNNER_ENV = "IMPQ_TASK_RUNNER"
TASK_RUNNERS = ("thread", "ray")

CACHE_POLICY = INPUTS - "params" - "model" + TASK_SOURCE
"""Cache on a task's explicit key arguments and its source; never on params or a model.

Tasks receive ``params`` for the work and a ``key`` that holds exactly what the result
depends on: the params keys of the stage, fingerprints of its input files and
:func:`code_version`.
"""

STAGE_TASK: dict[str, Any] = {
    "cache_policy": CACHE_POLICY,
    "persist_result": True,
    "retries": 2,
    "retry_delay_seconds": [1, 5],
}
"""Options of every task that does a stage's work (retried, cached, persisted)."""


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


def task_runner() -> Any:
    """The task runner chosen by ``$IMPQ_TASK_RUNNER``: ``thread`` (default) or ``ray``.

    ``ray`` needs the ``ray`` extra (``pip install -e .[ray]``) and connects to
    ``$RAY_ADDRESS`` when set, else starts a local Ray instance.
    """
    choice = os.environ.get(TASK_RUNNER_ENV, "thread")
    if choice == "thread":
        return ThreadPoolTaskRunner()
    if choice == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as err:
            raise ValueError(
                f"{TASK_RUNNER_ENV}=ray needs prefect-ray: pip install -e '.[ray]'"
            ) from err
        return RayTaskRunner(address=os.environ.get("RAY_ADDRESS"))
    raise ValueError(f"unknown {TASK_RUNNER_ENV}={choice!r}; choose from {list(TASK_RUNNERS)}")
