"""One declaration per pipeline stage: what it runs, reads, writes and measures.

A :class:`Stage` names the function that does the work, the source it runs, the params
keys it reads, the artifacts it reads and writes and its metrics. Everything else is
derived from :data:`STAGES`:

- the CLI subcommands ``python -m flows <stage>`` (:mod:`flows.cli`, through Prefect) and
  ``python -m impq <stage>`` (:mod:`impq.pipeline.cli`, in the process);
- the Prefect flow of the stage (:mod:`flows.stage`, one generic flow; ``spqe`` and
  ``sweep`` have flows of their own that fan out their work) and its task cache key
  (:func:`cache_key`: the declared params, fingerprints of the declared inputs, the
  code; the sweep's cells have none: each is kept by its input fingerprint, built from
  :data:`CELL_PARAMS`);
- the MLflow stage run (:func:`impq.tracking.record_stage`: the declared params, the
  declared metrics, the written artifacts);
- ``dvc.yaml`` (:func:`impq.pipeline.dvc.dvc_yaml`, ``python -m flows dvc-yaml``; a unit
  test fails when the committed file differs).

This module imports neither Prefect, DVC nor MLflow, and no stage module until a stage
runs.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from impq.artifacts import fingerprint_path, read_json
from impq.config import SPQE_SAMPLING_EXCLUDES, Params, SpqeConfig
from impq.pipeline import paths
from impq.pipeline.code import code_deps, code_fingerprint

__all__ = [
    "CALIBRATED_CELL_PARAMS",
    "CELL_PARAMS",
    "DATABASE_CELL_PARAMS",
    "STAGES",
    "Out",
    "Stage",
    "cache_key",
    "model_deps",
    "params_subset",
]

Unit = dict[str, Any]
"""Keyword arguments of one call of a stage's work function (one task run)."""


@dataclass(frozen=True)
class Out:
    """One thing a stage writes: an artifact (``outs``), a metrics file or a plot file.

    Attributes:
        path: where, relative to the repository.
        kind: the ``dvc.yaml`` section it goes to.
        cache: whether DVC caches it (small files committed to git are not).
        persist: DVC keeps it between runs (a folder the stage resumes from).
        plot: its entry in ``dvc.yaml``'s top-level ``plots`` (``{}``: listed bare;
            None: not listed).
        param: the params key that names the path (``export.out``): ``dvc.yaml`` says
            ``${<key>}`` when it reads params.yaml, so the key alone moves the output.
    """

    path: Path
    kind: Literal["outs", "metrics", "plots"] = "outs"
    cache: bool = True
    persist: bool = False
    plot: dict[str, str] | None = None
    param: str | None = None


@dataclass(frozen=True)
class Stage:
    """The declaration of one pipeline stage.

    Attributes:
        name: the stage, its CLI subcommand, its Prefect flow and its MLflow run.
        help: one line for ``impq --help``.
        work: ``"module:function"``, called as ``function(params, **unit)``; it writes the
            stage's outputs.
        task: the name of the Prefect task that runs ``work``.
        params: dotted params keys the work reads.
        inputs: the artifacts the work reads (other stages' outputs).
        outs: what the work writes.
        model: whether it loads ``model.source`` (a dependency when it is local).
        units: the task runs of one stage run, as keyword arguments of ``work`` (default:
            one run, no arguments), from the params and the CLI options.
        cached: whether the task's result is cached and persisted (the export is not:
            it can be gigabytes, and DVC already decides whether it is stale).
        assignments: its outputs are assignments, logged as one MLflow child run each.
        flow: ``"module:flow"`` of a flow of its own (default: :mod:`flows.stage`).
        options: extra CLI options, ``(flag, type, help)``, handed to ``units``.
        summary: the line the CLI prints after the stage, from its outputs.
        final_errors: ``"module:Class"`` of failures a retry would only repeat.
        key_extra: what else the cache key holds (``prepare``: the text it reads from
            outside the repository).
    """

    name: str
    help: str
    work: str
    task: str
    params: tuple[str, ...]
    inputs: Callable[[Params], list[Path]] = lambda p: []
    outs: Callable[[Params], list[Out]] = lambda p: []
    model: bool = False
    units: Callable[[Params, dict[str, Any]], list[Unit]] = lambda p, o: [{}]
    cached: bool = True
    assignments: bool = False
    flow: str | None = None
    options: tuple[tuple[str, type, str], ...] = ()
    summary: Callable[[Params, list[Path]], str] | None = None
    final_errors: tuple[str, ...] = ()
    key_extra: Callable[[Params], dict[str, Any]] = lambda p: {}

    def run(self, params: Params, **unit: Any) -> Any:
        """Call the work function on one unit."""
        module, name = self.work.split(":")
        return getattr(importlib.import_module(module), name)(params, **unit)

    def out_paths(self, params: Params, kind: str | None = None) -> list[Path]:
        """The paths of the stage's outputs (of one ``kind``, or all)."""
        return [o.path for o in self.outs(params) if kind is None or o.kind == kind]

    def written(self, params: Params, result: Any) -> list[Path]:
        """The files one call of the work wrote: what it returned when it returns paths,
        else every file under the stage's outputs."""
        if isinstance(result, list) and all(isinstance(p, Path) for p in result):
            return result
        return self.files(params)

    def files(self, params: Params) -> list[Path]:
        """Every file now under the stage's outputs (folders walked)."""
        found: list[Path] = []
        for path in self.out_paths(params):
            if path.is_file():
                found.append(path)
            elif path.is_dir():
                found += sorted(p for p in path.rglob("*") if p.is_file())
        return found

    def deps(self, params: Params) -> list[str]:
        """``dvc.yaml`` deps: the code, the input artifacts, the model when it is local."""
        model = model_deps(params) if self.model else []
        return [*self.code, *(str(p) for p in self.inputs(params)), *model]

    @property
    def flow_module(self) -> str:
        """The module of the flow that runs the stage (:mod:`flows.stage` by default)."""
        return (self.flow or "flows.stage:stage_flow").split(":")[0]

    @property
    def flow_file(self) -> str:
        """The source of the flow that runs the stage."""
        return self.flow_module.replace(".", "/") + ".py"

    @functools.cached_property
    def code(self) -> tuple[str, ...]:
        """The source files and folders the work and its flow run, read from their imports
        (:func:`impq.pipeline.code.code_deps`): ``dvc.yaml`` deps and the cache key's code."""
        return tuple(code_deps([self.work.split(":")[0], self.flow_module]))

    def code_version(self) -> str:
        """Fingerprint of :attr:`code`: a change in any of it invalidates the stage's cache."""
        return code_fingerprint(self.code)

    def dvc_params(self) -> list[str]:
        """The params keys as ``dvc.yaml`` lists them."""
        return list(self.params)

    def error_types(self) -> tuple[type[BaseException], ...]:
        """The classes of :attr:`final_errors`."""
        classes = []
        for ref in self.final_errors:
            module, name = ref.split(":")
            classes.append(getattr(importlib.import_module(module), name))
        return tuple(classes)


# --------------------------------------------------------------------------- helpers


def local_model(params: Params) -> bool:
    """Whether ``model.source`` is a folder here (else a hub id)."""
    return Path(params.model.source).is_dir()


def model_deps(params: Params) -> list[str]:
    """What of the model a stage depends on: the GGUF file or the folder, when local."""
    cfg = params.model
    if not local_model(params):
        return []
    if cfg.gguf_file:
        return [str(Path(cfg.source) / cfg.gguf_file)]
    return [cfg.source]


def _tokenizer_deps(params: Params) -> list[Path]:
    """``prepare`` reads only the tokenizer: its file when the source has one."""
    cfg = params.model
    if not local_model(params):
        return []
    if cfg.gguf_file:
        return [Path(cfg.source) / cfg.gguf_file]
    tok = Path(cfg.source) / "tokenizer.json"
    return [tok] if tok.is_file() else [Path(cfg.source)]


def params_subset(params: Params, *keys: str) -> dict[str, Any]:
    """The values of dotted ``keys`` of ``params`` (as in dvc.yaml), JSON-ready."""
    tree = params.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key in keys:
        node: Any = tree
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def cache_key(stage: Stage, params: Params, unit: Unit | None = None) -> dict[str, Any]:
    """What a stage's task result depends on, and nothing else.

    The declared params (and ``paths``, which name the files), a fingerprint of every
    declared input and of the model when local, the stage's code (:meth:`Stage.code_version`)
    and the unit. DVC's deps are the same code and inputs (:meth:`Stage.deps`).
    """
    inputs = [*stage.inputs(params)]
    key: dict[str, Any] = {
        "stage": stage.name,
        "params": params_subset(params, *stage.params, "paths"),
        "inputs": {str(p): fingerprint_path(p) for p in inputs},
        "code": stage.code_version(),
        **stage.key_extra(params),
    }
    if stage.model:
        key["model"] = fingerprint_path(params.model.source) or params.model.source
    if unit:
        key["unit"] = unit
    return key


# --------------------------------------------------------------------------- summaries


def _wrote(params: Params, files: list[Path]) -> str:
    return "\n".join(f"wrote {p}" for p in files)


def _evaluate_summary(params: Params, files: list[Path]) -> str:
    m = read_json(paths.float_metrics_path(params))
    return f"float perplexity: {m['ppl']:.3f} ({m['n_windows']} windows of {m['seqlen']})"


def _assign_summary(params: Params, files: list[Path]) -> str:
    from impq.assignment import Assignment

    lines = []
    for path in files:
        a = Assignment.load(path)
        gap = a.extra.get("gap_to_exact")
        gap_text = "n/a" if gap is None else f"{100 * gap:.4f}%"
        lines.append(
            f"wrote {path}: {a.avg_bits:.3f} avg bits, {a.stored_bytes} bytes, "
            f"objective {a.extra['objective']:.6g} ({a.extra['solver']}), gap to exact {gap_text}"
        )
    return "\n".join(lines)


def _sweep_summary(params: Params, files: list[Path]) -> str:
    from impq.pipeline import sweep

    rows = [read_json(sweep.metrics_path(params, c)) for c in sweep.combinations(params)]
    reference = read_json(paths.sweep_float_path(params))
    return sweep.format_table(rows, reference) + "\n" + _wrote(params, files)


def _export_summary(params: Params, files: list[Path]) -> str:
    m = read_json(paths.export_metrics_path(params))
    return (
        f"wrote {m['out']} ({m['backend']}, {m['method']} at {m['budget']} bits): "
        f"{m['linears']} quantized linears checked, {m['stored_bytes']} of "
        f"{m['budget_bytes']} budget bytes ({m['bits_per_weight']:.3f} bits/weight), "
        f"{m['size_on_disk_bytes']} bytes on disk; perplexity {m['ppl_in_process']:.4f} "
        f"in process, {m['ppl_reloaded']:.4f} reloaded"
    )


def _assign_units(params: Params, options: dict[str, Any]) -> list[Unit]:
    from impq.pipeline.assign import methods

    budget = options.get("budget")
    budgets = params.budgets if budget is None else [budget]
    return [{"method": m, "budget": float(b)} for m in methods(params) for b in budgets]


def _prepare_key(params: Params) -> dict[str, Any]:
    root = params.data.resolved_root()
    source = Path(params.data.calibration.source)
    return {
        "data": fingerprint_path(root) if root else "hub",
        "calibration_text": fingerprint_path(source) if source.is_file() else "",
        "tokenizer": [fingerprint_path(p) for p in _tokenizer_deps(params)],
    }


def _metrics(path: Path) -> Out:
    return Out(path, kind="metrics", cache=False)


def _assignment_dirs(params: Params) -> list[Path]:
    return [
        paths.assign_dir(params),
        paths.baselines_dir(params),
        paths.evopress_dir(params),
        paths.verify_dir(params),
        paths.seeded_dir(params),
    ]


SAMPLING_KEYS = tuple(
    f"spqe.{k}" for k in SpqeConfig.model_fields if k not in SPQE_SAMPLING_EXCLUDES
)
"""The ``spqe`` keys the samples depend on: all but the assembly options and the cache
size (:data:`impq.config.SPQE_SAMPLING_EXCLUDES`)."""

CELL_PARAMS = ("model", "backends.group_size", "eval.seqlen", "eval.max_windows")
"""The params one sweep cell's measurement depends on: the params part of its input
fingerprint (:func:`impq.pipeline.sweep.cells.input_fingerprint`).
``eval.add_bos`` reaches a cell through the evaluation tokens it changes, and
``eval.batch_size`` only sets how many of the same windows run at once."""

CALIBRATED_CELL_PARAMS = ("backends.calibrated_cells",)
"""What else a calibrated backend's cell depends on (a data-free backend's cells are
assembled from blocks either way)."""

DATABASE_CELL_PARAMS = ("spqe.ladder", "spqe.calibration_bits", "spqe.n_samples")
"""What else a cell assembled from the SPQE game's per-block database depends on
(``backends.calibrated_cells: database``): the settings the database is built with, beside
the model, the group size and the calibration ids every calibrated cell depends on."""

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            name="prepare",
            help="tokenize the evaluation split and draw the calibration set",
            work="impq.pipeline.prepare:run",
            task="calibration-prep",
            params=("model.source", "model.gguf_file", "data", "eval.add_bos"),
            inputs=_tokenizer_deps,
            outs=lambda p: [Out(paths.calibration_path(p)), Out(paths.eval_tokens_path(p))],
            key_extra=_prepare_key,
        ),
        Stage(
            name="evaluate",
            help="perplexity of the unquantized model",
            work="impq.pipeline.evaluate:run",
            task="evaluation",
            params=("model", "eval.seqlen", "eval.batch_size", "eval.max_windows"),
            inputs=lambda p: [paths.eval_tokens_path(p)],
            outs=lambda p: [_metrics(paths.float_metrics_path(p))],
            model=True,
            summary=_evaluate_summary,
        ),
        Stage(
            name="spqe",
            help="SPQE coalition sampling of the blocks' game (resumable)",
            work="impq.pipeline.spqe:run",
            task="spqe-sampling",
            params=("model", *SAMPLING_KEYS),
            inputs=lambda p: [paths.calibration_path(p)],
            # the walks are small and cost hours: committed to git and kept between runs,
            # so a clone or a rerun resumes them
            outs=lambda p: [
                Out(paths.samples_path(p), cache=False, persist=True),
                # kept between runs: it carries what the kept samples cost
                Out(paths.sampling_metrics_path(p), cache=False, persist=True),
            ],
            model=True,
            flow="flows.spqe:spqe_flow",
        ),
        Stage(
            name="interactions",
            help="Shapley values and every method's interaction model from the SPQE samples",
            work="impq.pipeline.interactions:run",
            task="interaction-assembly",
            params=("spqe.alpha", "spqe.min_pair_samples", "spqe.interaction_fdr", "spqe.walks"),
            inputs=lambda p: [paths.samples_path(p), paths.sampling_metrics_path(p)],
            outs=lambda p: [
                Out(paths.shapley_path(p)),
                Out(paths.marginals_path(p)),
                Out(paths.objectives_dir(p)),
                _metrics(paths.spqe_metrics_path(p)),
            ],
        ),
        Stage(
            name="report",
            help="plot Shapley values and the interaction heatmap",
            work="impq.pipeline.report:run",
            task="report-plots",
            params=(),
            inputs=lambda p: [paths.shapley_path(p)],
            outs=lambda p: [
                Out(paths.report_plot_paths(p)["bars"], cache=False, plot={}),
                Out(paths.report_plot_paths(p)["heatmap"], cache=False, plot={}),
                Out(
                    paths.report_plot_paths(p)["csv"],
                    kind="plots",
                    cache=False,
                    plot={
                        "title": "SPQE Shapley value per decoder block",
                        "template": "bar_horizontal_sorted",
                        "x": "value",
                        "y": "block",
                    },
                ),
            ],
        ),
        Stage(
            name="assign",
            help="bit assignment of every objective method per budget",
            work="impq.pipeline.assign:run",
            task="annealing-solve",
            params=(
                "budgets",
                "eval.methods",
                "solver",
                "backends.group_size",
                "spqe.ladder",
                "spqe.walks",
            ),
            inputs=lambda p: [paths.objectives_dir(p)],
            outs=lambda p: [Out(paths.assign_dir(p))],
            units=_assign_units,
            assignments=True,
            options=(("--budget", float, "average bits (default: every budget)"),),
            summary=_assign_summary,
        ),
        Stage(
            name="baselines",
            help="isolated-metric baseline assignments (LIM, ZD, ...)",
            work="impq.pipeline.baselines:run",
            task="baseline-scores",
            params=(
                "model",
                "budgets",
                "eval.methods",
                "eval.seed",
                "eval.batch_size",
                "solver.precisions",
                "backends.group_size",
                "spqe.ladder",
            ),
            inputs=lambda p: [paths.calibration_path(p), paths.shapley_path(p)],
            outs=lambda p: [Out(paths.baselines_dir(p))],
            model=True,
            assignments=True,
        ),
        Stage(
            name="evopress",
            help="EvoPress search per budget at SPQE's evaluation count",
            work="impq.pipeline.evopress:run",
            task="evopress-search",
            params=(
                "model",
                "budgets",
                "eval.methods",
                "evopress",
                "spqe.backend",
                "spqe.group_size",
                "spqe.ladder",
                "spqe.n_samples",
                "spqe.calibration_bits",
                "solver.precisions",
                "backends.group_size",
            ),
            # the samples' evaluation count is EvoPress's budget
            inputs=lambda p: [paths.calibration_path(p), paths.samples_path(p)],
            outs=lambda p: [
                # kept between runs: a budget searched before with the same inputs is kept
                Out(paths.evopress_dir(p), persist=True),
                _metrics(paths.evopress_metrics_path(p)),
            ],
            model=True,
            assignments=True,
        ),
        Stage(
            name="verify",
            help="verified final pick per budget on held-back calibration data",
            work="impq.pipeline.verify:run",
            task="verified-pick",
            params=(
                "model",
                "budgets",
                "eval.methods",
                "verify",
                "spqe",
                "solver.precisions",
                "backends.group_size",
            ),
            inputs=lambda p: [
                paths.calibration_path(p),
                paths.objectives_dir(p),
                *_assignment_dirs(p)[:3],  # every other method's assignments
            ],
            outs=lambda p: [
                # kept between runs: a budget verified before with the same inputs is kept
                Out(paths.verify_dir(p), persist=True),
                _metrics(paths.verify_metrics_path(p)),
            ],
            model=True,
            assignments=True,
        ),
        Stage(
            name="seeded",
            help="the search seeded by impq's candidates per budget, picked on held-back data",
            work="impq.pipeline.seeded:run",
            task="seeded-search",
            params=(
                "model",
                "budgets",
                "eval.methods",
                "seeded",
                "verify.n_samples",
                "spqe",
                "solver.precisions",
                "backends.group_size",
            ),
            inputs=lambda p: [
                paths.calibration_path(p),
                paths.assign_dir(p),  # the objectives' picks
                paths.verify_dir(p),  # the verified pick
            ],
            outs=lambda p: [
                # kept between runs: a budget searched before with the same inputs is kept
                Out(paths.seeded_dir(p), persist=True),
                _metrics(paths.seeded_metrics_path(p)),
            ],
            model=True,
            assignments=True,
        ),
        Stage(
            name="sweep",
            help="quantize and evaluate every backend x method x budget",
            work="impq.pipeline.sweep:run",
            task="quantize-evaluate",
            params=(
                *CELL_PARAMS,
                *CALIBRATED_CELL_PARAMS,
                *DATABASE_CELL_PARAMS,
                # which cells there are, and the budget check's precisions
                "budgets",
                "backends.names",
                "eval.methods",
                "solver.precisions",
            ),
            inputs=lambda p: [
                paths.eval_tokens_path(p),
                paths.calibration_path(p),
                *_assignment_dirs(p),
            ],
            outs=lambda p: [
                # one file per combination, kept between runs so the sweep resumes
                Out(paths.sweep_cells_dir(p), cache=False, persist=True),
                Out(paths.sweep_plot_dir(p), cache=False, plot={}),
                _metrics(paths.sweep_table_paths(p)[0]),
                Out(
                    paths.sweep_table_paths(p)[1],
                    kind="plots",
                    cache=False,
                    plot={
                        "title": "WikiText-2 perplexity against average bits (every backend "
                        "and method)",
                        "template": "scatter",
                        "x": "avg_bits",
                        "y": "ppl",
                    },
                ),
            ],
            model=True,
            flow="flows.sweep:sweep_flow",
            summary=_sweep_summary,
        ),
        Stage(
            name="assembled",
            help="the game's model (blocks from its database) against the sweep's shipped cells",
            work="impq.pipeline.assembled:run",
            task="assembled-cells",
            params=(
                *CELL_PARAMS,
                *CALIBRATED_CELL_PARAMS,
                *DATABASE_CELL_PARAMS,
                "budgets",
                "backends.names",
                "eval.methods",
                "spqe.backend",
                "compare.level",
                "compare.n_boot",
                "compare.seed",
            ),
            inputs=lambda p: [
                paths.eval_tokens_path(p),
                paths.calibration_path(p),
                *_assignment_dirs(p),
                paths.sweep_cells_dir(p),  # the shipped cells it pairs with
            ],
            outs=lambda p: [
                # one file per combination, kept between runs like the sweep's (in the
                # DVC cache: on a data-free game the folder is empty, which git drops)
                Out(paths.assembled_cells_dir(p), persist=True),
                Out(paths.assembled_result_path(p), cache=False),
                _metrics(paths.assembled_metrics_path(p)),
            ],
            model=True,
        ),
        Stage(
            name="compare",
            help="perplexity intervals and ratios to uniform-fit, the best isolated baseline and EvoPress",
            work="impq.pipeline.compare:run",
            task="compare",
            params=("compare", "budgets", "backends.names", "eval.methods"),
            inputs=lambda p: [paths.sweep_cells_dir(p)],
            outs=lambda p: [
                *(Out(path, cache=False) for path in paths.compare_result_paths(p).values()),
                _metrics(paths.compare_metrics_path(p)),
            ],
        ),
        Stage(
            name="export",
            help="write the chosen model for its runtime and check it",
            work="impq.pipeline.export:run",
            task="model-export",
            params=(
                "model",
                "export",
                "budgets",  # export.budget null: the largest budget
                "backends.group_size",
                "solver.precisions",
                "eval.seqlen",
                "eval.batch_size",
                "eval.max_windows",
            ),
            # the assignment of export.method at the export budget, in one of these
            inputs=lambda p: [
                paths.eval_tokens_path(p),
                paths.calibration_path(p),
                *_assignment_dirs(p),
            ],
            outs=lambda p: [
                Out(paths.export_dir(p), param="export.out"),
                _metrics(paths.export_metrics_path(p)),
            ],
            model=True,
            cached=False,
            summary=_export_summary,
            final_errors=(
                "impq.export:ExportCheckError",
                "impq.backends.base:OverBudgetError",
                "impq.backends:UnsupportedError",
                "builtins:FileNotFoundError",
            ),
        ),
    )
}
"""Stage name -> declaration, in pipeline order."""
