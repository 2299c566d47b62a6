"""Command line: one subcommand per pipeline stage (``impq <stage> --params params.yaml``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from impq.config import ConfigError, Params, load_params

__all__ = ["STAGES", "Stage", "main", "run_flow"]


def run_flow(ref: str, params: Params, args: argparse.Namespace, **kwargs: Any) -> Any:
    """Run the Prefect flow ``ref`` (``"flows.<module>:<flow>"``) for one stage.

    Every stage runs through its flow, with the task runner chosen by
    ``$IMPQ_TASK_RUNNER``; flows are imported here, so ``impq`` itself never imports
    Prefect. Returns what the flow returns.
    """
    from flows.common import task_runner

    module, name = ref.split(":")
    flow = getattr(importlib.import_module(module), name)
    return flow.with_options(task_runner=task_runner())(params, args.params, **kwargs)


def _prepare(params: Params, args: argparse.Namespace) -> None:
    for path in run_flow("flows.prepare:prepare_flow", params, args):
        print(f"wrote {path}")


def _evaluate(params: Params, args: argparse.Namespace) -> None:
    m = run_flow("flows.evaluate:evaluate_flow", params, args)
    print(f"float perplexity: {m['ppl']:.3f} ({m['n_windows']} windows of {m['seqlen']})")


def _spqe(params: Params, args: argparse.Namespace) -> None:
    for path in run_flow("flows.spqe:spqe_flow", params, args):
        print(f"wrote {path}")


def _interactions(params: Params, args: argparse.Namespace) -> None:
    for path in run_flow("flows.spqe:interactions_flow", params, args):
        print(f"wrote {path}")


def _report(params: Params, args: argparse.Namespace) -> None:
    for path in run_flow("flows.report:report_flow", params, args):
        print(f"wrote {path}")


def _assign(params: Params, args: argparse.Namespace) -> None:
    from impq.assignment import Assignment

    for path in run_flow("flows.assign:assign_flow", params, args, budget=args.budget):
        a = Assignment.load(path)
        gap = a.extra.get("gap_to_exact")
        gap_text = "n/a" if gap is None else f"{100 * gap:.4f}%"
        print(
            f"wrote {path}: {a.avg_bits:.3f} avg bits, {a.stored_bytes} bytes, "
            f"objective {a.extra['objective']:.6g} ({a.extra['solver']}), gap to exact {gap_text}"
        )


def _assign_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget", type=float, default=None, help="average bits (default: every budget)"
    )


def _serve(params: Params, args: argparse.Namespace) -> None:
    from flows.deploy import serve

    serve(params, cron=args.cron, name=args.name)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cron", default=None, help="cron schedule (default: tracking.cron)")
    parser.add_argument("--name", default="impq", help="deployment name (impq)")


def _baselines(params: Params, args: argparse.Namespace) -> None:
    for path in run_flow("flows.baselines:baselines_flow", params, args):
        print(f"wrote {path}")


def _evopress(params: Params, args: argparse.Namespace) -> None:
    for path in run_flow("flows.evopress:evopress_flow", params, args):
        print(f"wrote {path}")


def _verify(params: Params, args: argparse.Namespace) -> None:
    for path in run_flow("flows.verify:verify_flow", params, args):
        print(f"wrote {path}")


def _sweep(params: Params, args: argparse.Namespace) -> None:
    from impq.pipeline import sweep

    rows, reference, written = run_flow("flows.sweep:sweep_flow", params, args)
    print(sweep.format_table(rows, reference))
    for path in written:
        print(f"wrote {path}")


def _compare(params: Params, args: argparse.Namespace) -> None:
    for path in run_flow("flows.compare:compare_flow", params, args):
        print(f"wrote {path}")


def _export(params: Params, args: argparse.Namespace) -> None:
    m = run_flow("flows.export:export_flow", params, args)
    print(
        f"wrote {m['out']} ({m['backend']}, {m['method']} at {m['budget']} bits): "
        f"{m['linears']} quantized linears checked, {m['stored_bytes']} of "
        f"{m['budget_bytes']} budget bytes ({m['bits_per_weight']:.3f} bits/weight), "
        f"{m['size_on_disk_bytes']} bytes on disk; perplexity {m['ppl_in_process']:.4f} "
        f"in process, {m['ppl_reloaded']:.4f} reloaded"
    )


class Stage(NamedTuple):
    """One subcommand: its help, its handler, and (optionally) its extra arguments."""

    help: str
    run: Callable[[Params, argparse.Namespace], None]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


STAGES: dict[str, Stage] = {
    "prepare": Stage("tokenize the evaluation split and draw the calibration set", _prepare),
    "evaluate": Stage("perplexity of the unquantized model", _evaluate),
    "spqe": Stage("SPQE coalition sampling of the blocks' game (resumable)", _spqe),
    "interactions": Stage(
        "Shapley values and every method's interaction model from the SPQE samples",
        _interactions,
    ),
    "report": Stage("plot Shapley values and the interaction heatmap", _report),
    "assign": Stage(
        "bit assignment of every objective method per budget", _assign, _assign_arguments
    ),
    "baselines": Stage("isolated-metric baseline assignments (LIM, ZD, ...)", _baselines),
    "evopress": Stage("EvoPress search per budget at SPQE's evaluation count", _evopress),
    "verify": Stage("verified final pick per budget on held-back calibration data", _verify),
    "sweep": Stage("quantize and evaluate every backend x method x budget", _sweep),
    "compare": Stage("perplexity intervals and ratios to the best isolated baseline", _compare),
    "export": Stage("write the chosen model for its runtime and check it", _export),
    "serve": Stage("serve the whole pipeline as a Prefect deployment", _serve, _serve_arguments),
}
"""Stage name -> Stage; a handler runs the stage's flow (see :func:`run_flow`) and prints."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impq", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, value in STAGES.items():
        entry = Stage(*value)
        stage = sub.add_parser(name, help=entry.help)
        stage.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
        if entry.arguments is not None:
            entry.arguments(stage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage; a bad params file or input exits 2 with the reason."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # torchao (pulled in by GPTQModel) warns on import about CUDA kernels a CPU cannot load.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        params = load_params(args.params)
        Stage(*STAGES[args.stage]).run(params, args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"impq {args.stage}: error: {err}", file=sys.stderr)
        return 2
    return 0
