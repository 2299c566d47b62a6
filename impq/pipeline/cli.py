"""``python -m impq <stage>``: run one declared stage in this process, without Prefect.

The same work as ``python -m flows <stage>`` (:mod:`flows.cli`), called directly: no task
cache, no retries, no MLflow run, no fork server. For debugging a stage, or running one
where Prefect is not wanted. The stage subcommands and their options are declared once,
here, from :data:`impq.pipeline.stages.STAGES`; :mod:`flows.cli` adds its own commands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from impq.config import ConfigError, Params
from impq.pipeline.params import load_params
from impq.pipeline.stages import STAGES, Stage

__all__ = [
    "add_stage_commands",
    "main",
    "report_errors",
    "setup_logging",
    "stage_options",
    "summarize",
]


def add_stage_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """One subcommand per declared stage, with ``--params`` and the stage's options."""
    for name, stage in STAGES.items():
        cmd = sub.add_parser(name, help=stage.help)
        cmd.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
        for flag, kind, text in stage.options:
            cmd.add_argument(flag, type=kind, default=None, help=text)


def stage_options(stage: Stage, args: argparse.Namespace) -> dict[str, Any]:
    """The stage's own options (:attr:`Stage.options`) as parsed from the command line."""
    dests = (flag.lstrip("-").replace("-", "_") for flag, _, _ in stage.options)
    return {dest: getattr(args, dest) for dest in dests}


def summarize(stage: Stage, params: Params, written: list[Path]) -> str:
    """What the command prints after the stage: its summary, else the files it wrote."""
    summary = stage.summary or (lambda p, files: "\n".join(f"wrote {f}" for f in files))
    return summary(params, written)


def setup_logging(verbose: bool) -> None:
    """Log records of impq and the libraries to stderr; the chatty ones at warnings only."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # torchao (pulled in by GPTQModel) warns on import about CUDA kernels a CPU cannot load.
    logging.getLogger("torchao").setLevel(logging.ERROR)


def report_errors(command: str, run: Callable[[], None]) -> int:
    """Call ``run()``; a bad params file or input exits 2 with the reason, else 0."""
    try:
        run()
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"impq {command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m impq",
        description="Run one pipeline stage in this process, without Prefect: no task "
        "cache, no retries, no MLflow run (`python -m flows <stage>` has them).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_stage_commands(parser.add_subparsers(dest="stage", required=True, metavar="STAGE"))
    return parser


def _run(name: str, params_path: str, options: dict[str, Any]) -> None:
    stage = STAGES[name]
    params = load_params(params_path)
    written: list[Path] = []
    for unit in stage.units(params, options):
        written += stage.written(params, stage.run(params, **unit))
    if text := summarize(stage, params, written):
        print(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage in this process; a bad params file or input exits 2 with the reason."""
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    options = stage_options(STAGES[args.stage], args)
    return report_errors(args.stage, lambda: _run(args.stage, args.params, options))
