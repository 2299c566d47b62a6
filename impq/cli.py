"""Command line: one subcommand per pipeline stage (``impq <stage> --params params.yaml``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from impq.config import ConfigError, Params, load_params

__all__ = ["main"]


def _prepare(params: Params, args: argparse.Namespace) -> None:
    from impq.pipeline import prepare

    for path in prepare.run(params):
        print(f"wrote {path}")


def _evaluate(params: Params, args: argparse.Namespace) -> None:
    from impq.pipeline import evaluate

    result = evaluate.run(params)
    print(f"float perplexity: {result.ppl:.3f} ({result.n_windows} windows of {result.seqlen})")
    print(f"wrote {evaluate.float_metrics_path(params)}")


STAGES: dict[str, tuple[str, Callable[[Params, argparse.Namespace], None]]] = {
    "prepare": ("tokenize the evaluation split and draw the calibration set", _prepare),
    "evaluate": ("perplexity of the unquantized model", _evaluate),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impq", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (help_text, _) in STAGES.items():
        stage = sub.add_parser(name, help=help_text)
        stage.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage; a bad params file or input exits 2 with the reason."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        params = load_params(args.params)
        STAGES[args.stage][1](params, args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"impq {args.stage}: error: {err}", file=sys.stderr)
        return 2
    return 0
