"""Command line: one subcommand per declared stage, run as its Prefect flow
(``impq <stage> --params params.yaml``, ``python -m flows <stage>``), ``impq serve`` and
``impq dvc-yaml``.

The ``impq`` console script points here; ``python -m impq <stage>`` runs the same stage
without Prefect (:mod:`impq.pipeline.cli`). In a fork server (:mod:`flows.forkserver`)
:func:`preload` runs once and :func:`main` in each child.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from impq.config import Params
from impq.pipeline.cli import (
    add_stage_commands,
    report_errors,
    setup_logging,
    stage_options,
    summarize,
)
from impq.pipeline.params import load_params
from impq.pipeline.stages import STAGES

__all__ = ["COMMANDS", "PRELOAD", "main", "preload", "run_stage"]


def run_stage(name: str, params: Params, args: argparse.Namespace) -> None:
    """Run a declared stage through its Prefect flow and print what it wrote."""
    from flows.stage import run_stage as run_flow

    stage = STAGES[name]
    written = run_flow(name, params, args.params, **stage_options(stage, args))
    if text := summarize(stage, params, written):
        print(text)


def _serve(params: Params, args: argparse.Namespace) -> None:
    from flows.deploy import serve

    serve(params, cron=args.cron, name=args.name)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cron", default=None, help="cron schedule (default: tracking.cron)")
    parser.add_argument("--name", default="impq", help="deployment name (impq)")


def _dvc_yaml(params: Params, args: argparse.Namespace) -> None:
    from impq.artifacts import atomic_path
    from impq.pipeline.dvc import render_dvc_yaml

    text = render_dvc_yaml(params, args.params, args.out or "dvc.yaml")
    if args.out is None:
        print(text, end="")
        return
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(f"wrote {args.out}")


def _dvc_yaml_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="file to write (default: print it)")


class Command(NamedTuple):
    """A subcommand that is not a stage: its help, its handler, its extra arguments."""

    help: str
    run: Callable[[Params, argparse.Namespace], None]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: dict[str, Command] = {
    "serve": Command("serve the whole pipeline as a Prefect deployment", _serve, _serve_arguments),
    "dvc-yaml": Command(
        "write dvc.yaml from the stage declarations", _dvc_yaml, _dvc_yaml_arguments
    ),
}
"""Subcommands beside the stages (:data:`impq.pipeline.stages.STAGES`)."""


HARD_EXIT_AFTER_S = 5.0
"""Seconds a stopped stage (SIGTERM, or SIGINT: Ctrl-C) gets to unwind (stop its Prefect
server, mark its runs) before it exits regardless: a stage stops within 10 s, although
Prefect would go on retrying its run's events against an API server the same signal
stopped (about 7 s each)."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_PR_SET_PDEATHSIG = 1


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM: unwind now (finally blocks, atexit: the temporary Prefect server stops)."""
    raise SystemExit(128 + signum)


def _exit_after_stop_signal() -> None:
    """Exit within :data:`HARD_EXIT_AFTER_S` of a SIGTERM or SIGINT, whichever handler
    takes it.

    Inside a flow run Prefect takes the signal (its own SIGTERM handler replaces
    :func:`_terminate`; a SIGINT arrives as a ``KeyboardInterrupt``), marks the run
    crashed and may then wait for minutes on an API server the same signal stopped. The
    interpreter writes every handled signal's number to its wakeup file descriptor
    whoever the handler is; a thread reads it and ends the process once the grace time
    is over, even if a thread or a handler still runs.
    """
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def watch() -> None:
        while not (stop := set(os.read(read, 64)) & set(STOP_SIGNALS)):
            pass
        time.sleep(HARD_EXIT_AFTER_S)
        os._exit(128 + min(stop))

    threading.Thread(target=watch, name="impq-exit-after-stop-signal", daemon=True).start()


def stop_with_parent() -> None:
    """Make a SIGTERM or SIGINT stop this process, and (under DVC, on Linux) its parent's
    death too.

    ``dvc repro`` runs a stage in its own process group; a SIGTERM to that group (what a
    scheduler or a container stop sends) reaches the stage, which then stops instead of
    running on and writing its checkpoint. Under DVC (``$DVC_STAGE`` is set) the kernel
    also sends it a SIGTERM when ``dvc`` dies, even by SIGKILL.
    """
    signal.signal(signal.SIGTERM, _terminate)
    _exit_after_stop_signal()
    if os.environ.get("DVC_STAGE") and sys.platform.startswith("linux"):
        parent = os.getppid()
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="impq",
        description="Run a pipeline stage as a Prefect flow (cached, retried, tracked in "
        "MLflow), serve the pipeline, or write dvc.yaml.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    add_stage_commands(sub)
    for name, command in COMMANDS.items():
        cmd = sub.add_parser(name, help=command.help)
        cmd.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
        if command.arguments is not None:
            command.arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage; a bad params file or input exits 2 with the reason."""
    args = _parser().parse_args(argv)
    stop_with_parent()
    setup_logging(args.verbose)

    def run() -> None:
        params = load_params(args.params)
        if args.stage in STAGES:
            run_stage(args.stage, params, args)
        else:
            COMMANDS[args.stage].run(params, args)

    return report_errors(args.stage, run)


PRELOAD = (
    "flows.stage",
    "impq.tracking",
    "impq.baselines",
    "impq.models",
    "mlflow.store.tracking.sqlalchemy_store",  # 2 s, imported when a run opens its store
    "alembic.command",
)
"""Imported by a fork server before it serves; every stage's work and flow modules too."""


def preload() -> None:
    """Import what the stages import (:data:`PRELOAD`, each stage's work and flow)."""
    for name in PRELOAD:
        importlib.import_module(name)
    for stage in STAGES.values():
        for target in (stage.work, stage.flow):
            if target:
                importlib.import_module(target.split(":")[0])
