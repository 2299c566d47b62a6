"""Typed configuration: one pydantic model per section of ``params.yaml``.

Every model forbids unknown keys, so a typo in ``params.yaml`` fails at load time with
the key's path instead of silently falling back to a default. This is the schema alone:
types, ranges and checks within the params; it imports no other impq module. The
registries' names and the input paths are checked where a stage loads the params
(:func:`impq.pipeline.params.load_params`).
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "SPQE_ASSEMBLY_OPTIONS",
    "SPQE_SAMPLING_EXCLUDES",
    "BackendsConfig",
    "CalibrationConfig",
    "CompareConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "EvoPressConfig",
    "ExportConfig",
    "LayoutConfig",
    "ModelConfig",
    "Params",
    "PathsConfig",
    "RunnerConfig",
    "SeededConfig",
    "SolverConfig",
    "SpqeConfig",
    "TrackingConfig",
    "VerifyConfig",
    "invalid",
    "parse_params",
]

DATA_DIR_ENV = "IMPQ_DATA_DIR"


class ConfigError(ValueError):
    """``params.yaml`` is missing, malformed or holds a value that cannot work."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayoutConfig(_Section):
    """Where the decoder blocks and their linears are, for a model whose inferred layout is
    wrong (checked against the model when it loads)."""

    blocks: str = Field(
        min_length=1, description="Dotted path of the ModuleList of blocks, e.g. model.layers."
    )
    linears: list[str] = Field(
        min_length=1,
        description="Paths inside a block of the linears to quantize; fnmatch patterns "
        "such as 'mlp.experts.*.down_proj' are allowed.",
    )

    @field_validator("linears")
    @classmethod
    def _distinct(cls, linears: list[str]) -> list[str]:
        for name in linears:
            if not name or name != name.strip() or name.startswith(".") or name.endswith("."):
                raise ValueError(f"{name!r} is not a dotted path inside a block")
        if len(set(linears)) != len(linears):
            raise ValueError(
                f"entries repeat: {sorted(n for n in set(linears) if linears.count(n) > 1)}"
            )
        return linears


class ModelConfig(_Section):
    """Which checkpoint to quantize and where to run it."""

    source: str = Field(description="Local directory or Hugging Face hub id.")
    gguf_file: str | None = Field(None, description="GGUF file inside `source`, if any.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Dtype the model is loaded and run in."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model runs; 'auto': cuda when present, else cpu."
    )
    layout: LayoutConfig | None = Field(
        None, description="null: the built-in layout of the family, else inferred."
    )


class CalibrationConfig(_Section):
    """Calibration sequences drawn from a text source disjoint from the evaluation text."""

    source: str = Field(
        "heldout",
        description=(
            "'heldout' (data root's reference-corpus/heldout.txt), 'wikitext2-valid' "
            "(data root's tokenized valid split), 'wikitext2-train' or 'c4' (hub), "
            "or a path to a UTF-8 text file."
        ),
    )
    n_samples: int = Field(
        32,
        gt=0,
        description="Calibration sequences drawn; SPQE uses the first spqe.n_samples, the "
        "verified pick scores on the others, LIM and GPTQ use all of them.",
    )
    seqlen: int = Field(256, gt=1, description="Tokens per calibration sequence.")
    seed: int = Field(0, description="Seed of the draw of calibration sequences.")


class DataConfig(_Section):
    """Where text comes from: a local folder laid out like ``shared/data`` or the hub."""

    root: str | None = Field(
        None,
        description=f"Local data folder; null reads ${DATA_DIR_ENV}, unset means the hub.",
    )
    calibration: CalibrationConfig = CalibrationConfig()

    def resolved_root(self) -> Path | None:
        """The local data folder in force, or None when text comes from the hub."""
        root = self.root or os.environ.get(DATA_DIR_ENV) or None
        if root is None:
            return None
        path = Path(root).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"data.root: {path} is not a directory. Point data.root (or ${DATA_DIR_ENV}) "
                "at a folder laid out like shared/data (wikitext-2-raw/wiki.test.raw, ...), "
                "or leave both unset to download WikiText-2 from the hub."
            )
        return path


SPQE_ASSEMBLY_OPTIONS = frozenset({"alpha", "min_pair_samples", "interaction_fdr"})
"""``spqe`` keys only the assembly of the interaction models reads (stage ``interactions``)."""

SPQE_SAMPLING_EXCLUDES = SPQE_ASSEMBLY_OPTIONS | {"cache_mb"}
"""``spqe`` keys the samples do not depend on: the assembly options, and ``cache_mb`` (how
much the game caches, never a value)."""


class SpqeConfig(_Section):
    """Shapley-based progressive quantization estimation: the sampling of walks, and the
    assembly options of the interaction models (``alpha``, ``min_pair_samples``,
    ``interaction_fdr``), which reuse the samples."""

    permutations: int = Field(
        48,
        gt=1,
        description="Permutations M; keep M well above L (M ≥ 2L keeps the covariance meaningful).",
    )
    walks: Literal["prefix", "sii"] = Field(
        "prefix",
        description=(
            "'prefix': every inner prefix of each walk, L*(len(ladder)-1) - 1 of them (methods "
            "impq, surrogate, shapley); 'sii' (two-level ladders only): also S+{b} for each "
            "adjacent pair, 2(L-1) per permutation (adds sii)."
        ),
    )
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="impq: K = (1-α)C + α diag(C).")
    min_pair_samples: int = Field(
        2, ge=2, description="sii: drop pairs sampled adjacent fewer times than this."
    )
    interaction_fdr: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description=(
            "sii: keep pairs discovered at this false-discovery rate (Benjamini-Hochberg); "
            "1 keeps every pair with a standard error."
        ),
    )
    backend: str = Field(
        "quanto",
        description=(
            "Quantizer used inside the game: a data-free backend (quanto or hqq), or gptq, "
            "played on a database of every block GPTQ-quantized once per ladder precision "
            "on the game's calibration sequences."
        ),
    )
    ladder: list[int] = Field(
        [4, 2],
        description=(
            "Precisions (bits) the game lowers each block through, strictly descending: "
            "[4, 2] is the paper's game; [4, 3, 2] or [8, 4, 3, 2] measure every step. "
            "A walk costs L*(len(ladder)-1) - 1 evaluations."
        ),
    )
    group_size: int = Field(
        64,
        gt=0,
        description="Weights per group inside the game; must equal backends.group_size "
        "(set either one: the other follows).",
    )
    calibration_bits: int = Field(
        3,
        ge=1,
        description=(
            "gptq: the precision of the blocks in front of a block while GPTQ calibrates it "
            "(EvoPress's calibration bit width); a precision gptq stores. Data-free "
            "backends ignore it."
        ),
    )
    seed: int = Field(
        0, description="Seed of the walks: permutation k derives from (seed, k) alone."
    )
    tolerance: float | None = Field(
        None, gt=0, description="Stop once every Shapley standard error is below this."
    )
    batch_size: int | None = Field(
        None, gt=0, description="Calibration sequences per forward; null = all at once."
    )
    n_samples: int | None = Field(
        None, gt=0, description="Use the first n calibration sequences; null = all."
    )
    cache_mb: float | None = Field(
        None,
        ge=0,
        description=(
            "Memory (MiB) for the game's cached hidden states; null = 256 MiB, or room for "
            "three prefix chains when that is more. Changes speed only, never a value."
        ),
    )

    @field_validator("ladder")
    @classmethod
    def _descending_ladder(cls, ladder: list[int]) -> list[int]:
        if len(ladder) < 2 or any(a <= b for a, b in itertools.pairwise(ladder)) or ladder[-1] < 1:
            raise ValueError(
                f"spqe.ladder {ladder} must list at least two precisions (bits >= 1), strictly "
                "descending from the top one, e.g. [4, 2] or [4, 3, 2]"
            )
        return ladder

    @model_validator(mode="after")
    def _sii_walks_are_two_level(self) -> SpqeConfig:
        if self.walks == "sii" and len(self.ladder) > 2:
            raise ValueError(
                f"spqe.walks 'sii' needs a two-level spqe.ladder, got {self.ladder}: the "
                "pairwise interaction index exists for two levels only; use walks: prefix"
            )
        return self

    @property
    def high_bits(self) -> int:
        """The top of the ladder: the precision every walk starts from."""
        return self.ladder[0]

    @property
    def low_bits(self) -> int:
        """The bottom of the ladder: the precision every walk ends at."""
        return self.ladder[-1]


class SolverConfig(_Section):
    """Bit assignment: the binary quadratic program and its solver."""

    name: str = Field(
        "anneal",
        description="'anneal' (simulated annealing, repair to the budget, local search), "
        "'exact' (enumeration or a MILP) or 'greedy' (Shapley values ranked alone).",
    )
    precisions: list[int] = Field([2, 4], min_length=2, description="Allowed bits per block.")
    num_reads: int = Field(32, gt=0, description="Annealing reads (independent runs).")
    num_sweeps: int = Field(500, gt=0, description="Sweeps per annealing read.")
    seed: int = Field(0, description="Seed of the annealer.")
    exact_check: bool = Field(True, description="Also solve exactly; store the gap.")
    exact_time_limit: float = Field(60.0, gt=0, description="Seconds for the exact MILP.")


class BackendsConfig(_Section):
    """Backends that store the final mixed-precision model."""

    names: list[str] = Field(
        ["quanto", "hqq"],
        description="Backends the sweep quantizes every assignment with: quanto, hqq, gptq "
        "(extra impq[gptq]) or llamacpp (GGUF files scored by llama.cpp).",
    )
    group_size: int = Field(
        64,
        gt=0,
        description="Weights per scale/zero group, for every backend and the budget; "
        "spqe.group_size follows.",
    )
    calibrated_cells: Literal["sequential", "blocks", "database"] = Field(
        "sequential",
        description=(
            "How the sweep makes a calibrated backend's model (gptq): 'sequential' runs it "
            "on each assignment (each block calibrated on the quantized blocks before it: "
            "the model that export ships); 'blocks' assembles it from blocks quantized once "
            "per precision on the float model's activations (EvoPress's layer database: "
            "minutes faster per cell, not the shipped model); 'database' assembles it from "
            "the SPQE game's per-block database (spqe.ladder, spqe.calibration_bits, the "
            "first spqe.n_samples calibration sequences; built once, kept with spqe's): the "
            "model the game scores for the assignment, its bytes those of the shipped "
            "format. Every precision an assignment uses must be on spqe.ladder."
        ),
    )


class EvalConfig(_Section):
    """WikiText-2 perplexity protocol and the methods compared in the sweep."""

    seqlen: int = Field(
        256, gt=1, description="Tokens per evaluation window (windows do not overlap)."
    )
    batch_size: int = Field(8, gt=0, description="Windows per forward.")
    max_windows: int | None = Field(
        None,
        gt=0,
        description="Windows of the test split evaluated, from its start; null: all of them.",
    )
    add_bos: bool | None = Field(
        None,
        description=(
            "Start every evaluation and calibration window with the tokenizer's BOS token "
            "(BOS + seqlen - 1 text tokens, as llama.cpp's perplexity); null = when the "
            "tokenizer adds one (add_bos_token, or a BOS first in its encoding of text)."
        ),
    )
    methods: list[str] = Field(
        [
            "impq",
            "surrogate",
            "shapley",
            "lim",
            "zd",
            "uniform",
            "random-0",
            "random-1",
            "random-2",
            "evopress",
            "verified",
        ],
        description=(
            "Objective methods (assign stage): impq, sii, surrogate; evopress, verified "
            "(their own stages); baselines: shapley, lim, zd, zd-tuned, uniform, random "
            "(random-<k>: seed eval.seed + k)."
        ),
    )
    seed: int = Field(0, description="Seed of the random baseline's block order (random-0).")


class EvoPressConfig(_Section):
    """The EvoPress baseline: evolutionary search on the model game at SPQE's evaluation count.

    Selection runs in stages of growing calibration size: stage ``k`` scores the
    survivors of stage ``k - 1`` on ``sequences[k]`` random calibration sequences (of the
    ones SPQE used) and keeps ``survivors[k]``; the last stage uses every sequence and
    keeps one, the next parent.
    """

    offspring: int = Field(16, gt=0, description="Mutants per generation (EvoPress: 128).")
    initial: int = Field(16, gt=0, description="Random feasible starting points.")
    survivors: list[int] = Field(
        [4, 1], min_length=1, description="Survivors of each selection stage; the last is 1."
    )
    sequences: list[int | None] = Field(
        [2, None],
        min_length=1,
        description="Calibration sequences per stage, growing; the last is null (all of them).",
    )
    max_evaluations: int | None = Field(
        None, gt=0, description="Cap on model evaluations; null: as many as SPQE used."
    )
    seed: int = Field(0, description="Seed of the search.")

    @model_validator(mode="after")
    def _stages_consistent(self) -> EvoPressConfig:
        s, n = self.survivors, self.sequences
        if len(s) != len(n):
            raise ValueError(f"survivors {s} and sequences {n} need one entry per stage")
        if s[-1] != 1 or n[-1] is not None:
            raise ValueError("the last stage keeps 1 survivor on every sequence (1 and null)")
        if any(x <= 0 for x in s) or any(b > a for a, b in itertools.pairwise(s)):
            raise ValueError(f"survivors must be positive and non-increasing, got {s}")
        if s[0] > self.offspring:
            raise ValueError(f"survivors[0]={s[0]} exceeds offspring={self.offspring}")
        inner = [x if x is not None else 0 for x in n[:-1]]
        if any(x <= 0 for x in inner) or any(b <= a for a, b in itertools.pairwise(inner)):
            raise ValueError(f"sequences before the last must be growing positive ints, got {n}")
        return self


class VerifyConfig(_Section):
    """The verified pick: candidates scored on calibration sequences SPQE did not use."""

    max_evaluations: int | None = Field(
        None, gt=0, description="Model evaluations per budget; null: 2L."
    )
    n_samples: int | None = Field(
        None, gt=0, description="Held-back sequences to use; null: every one SPQE left."
    )


class SeededConfig(_Section):
    """The search seeded by impq (method ``seeded``): EvoPress's level-step search started
    from impq's candidates (every objective's pick and the verified pick), with its own
    evaluation budget; the final pick on the held-back calibration sequences."""

    max_evaluations: int = Field(
        256,
        gt=0,
        description=(
            "Model evaluations of the search, its final pick included (its own budget, "
            "beside the walks')."
        ),
    )
    offspring: int = Field(16, gt=0, description="Mutants per generation.")
    survivors: list[int] = Field(
        [4, 1], min_length=1, description="Survivors of each selection stage; the last is 1."
    )
    sequences: list[int | None] = Field(
        [2, None],
        min_length=1,
        description="Calibration sequences per stage, growing; the last is null (all of them).",
    )
    final: int = Field(
        4,
        ge=0,
        description=(
            "Points of lowest calibration loss scored on the held-back sequences for the "
            "final pick; 0: the search's best on calibration loss."
        ),
    )
    seed: int = Field(0, description="Seed of the search (its mutations and selection).")

    @model_validator(mode="after")
    def _stages_consistent(self) -> SeededConfig:
        # the stage schedule follows EvoPress's rules, stated once in EvoPressConfig
        EvoPressConfig(offspring=self.offspring, survivors=self.survivors, sequences=self.sequences)
        return self


class CompareConfig(_Section):
    """How the sweep's methods are compared: intervals and the isolated baselines."""

    isolated: list[str] = Field(
        ["lim", "zd", "shapley"],
        description=(
            "Isolated-metric baselines; each method is compared with the best of those "
            "that eval.methods evaluates."
        ),
    )
    level: float = Field(0.95, gt=0.0, lt=1.0, description="Confidence level of intervals.")
    n_boot: int = Field(10_000, ge=100, description="Bootstrap resamples of the windows.")
    seed: int = Field(0, description="Seed of the bootstrap.")


class TrackingConfig(_Section):
    """Experiment tracking (MLflow) and the schedule of the served pipeline."""

    enabled: bool = Field(True, description="Log every stage run to MLflow.")
    uri: str | None = Field(
        None,
        description="MLflow store; null reads $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here.",
    )
    experiment: str = Field("impq", description="MLflow experiment the runs go to.")
    cron: str | None = Field(
        None, description="Cron schedule of `impq serve` (e.g. '0 3 * * *'); null: on demand."
    )


class ExportConfig(_Section):
    """The shipped model: which method's assignment, at which budget, in which format."""

    method: str = Field("impq", description="Whose assignment: impq or a baseline of eval.methods.")
    budget: float | None = Field(
        None, description="Average bits, one of `budgets`; null: the largest of `budgets`."
    )
    backend: str = Field(
        "hqq", description="Format: quanto, hqq, gptq or llamacpp (GGUF; impq.export)."
    )
    out: str = Field("artifacts/export", description="Folder the model is written to.")


class RunnerConfig(_Section):
    """Where the fanned-out tasks run: SPQE permutation chunks and sweep combinations.

    ``local`` runs them in the stage's own process, one after another, on one model;
    ``ray`` spreads them over ``workers`` Ray actors (one model replica each) of the Ray
    cluster at ``address``. The same seed gives bit-identical samples either way.
    """

    name: Literal["local", "ray"] = Field(
        "local",
        description="'local': in the stage's process; 'ray': on Ray workers (extra impq[ray]).",
    )
    address: str | None = Field(
        None,
        description="Ray cluster address (e.g. 'ray://head:10001' or 'auto'); null: start a "
        "local Ray instance for the stage.",
    )
    workers: int = Field(2, gt=0, description="Ray workers (model replicas); ray only.")
    gpus_per_worker: float = Field(0.0, ge=0.0, description="GPUs each Ray worker holds.")
    cpus_per_worker: float = Field(1.0, gt=0.0, description="CPUs each Ray worker holds.")
    chunk_permutations: int = Field(
        4, gt=0, description="SPQE permutations per chunk: the unit of work and checkpoint."
    )


class PathsConfig(_Section):
    """Where stages write their artifacts, metrics and plots (relative to the repo)."""

    artifacts: str = Field(
        "artifacts", description="Folder of the stages' artifacts (DVC cache and remote)."
    )
    metrics: str = Field(
        "metrics", description="Folder of the flat metrics JSON (dvc metrics, MLflow)."
    )
    plots: str = Field("plots", description="Folder of the plots (dvc plots).")
    results: str = Field(
        "results", description="Folder of the comparison's tables and plot (compare stage)."
    )


class Params(_Section):
    """The whole of ``params.yaml``."""

    model: ModelConfig
    data: DataConfig = DataConfig()
    spqe: SpqeConfig = SpqeConfig()
    solver: SolverConfig = SolverConfig()
    backends: BackendsConfig = BackendsConfig()
    budgets: list[float] = Field(
        [2.5, 3.0, 3.5],
        description="Average bits per weight to allocate, between 2 and 8; written as "
        "decimals (3.0, not 3).",
    )
    eval: EvalConfig = EvalConfig()
    compare: CompareConfig = CompareConfig()
    evopress: EvoPressConfig = EvoPressConfig()
    verify: VerifyConfig = VerifyConfig()
    seeded: SeededConfig = SeededConfig()
    tracking: TrackingConfig = TrackingConfig()
    export: ExportConfig = ExportConfig()
    runner: RunnerConfig = RunnerConfig()
    paths: PathsConfig = PathsConfig()

    @model_validator(mode="before")
    @classmethod
    def _one_group_size(cls, raw: object) -> object:
        # The game must quantize as the backends will: one group size. Either key sets it.
        if not isinstance(raw, dict):
            return raw
        spqe, backends = raw.get("spqe"), raw.get("backends")
        g_spqe = spqe.get("group_size") if isinstance(spqe, dict) else None
        g_back = backends.get("group_size") if isinstance(backends, dict) else None
        if g_spqe is not None and g_back is not None and g_spqe != g_back:
            raise ValueError(
                f"spqe.group_size {g_spqe} differs from backends.group_size {g_back}: SPQE "
                "must quantize the blocks as the backends do; give both the same value "
                "(or set only one, the other follows)"
            )
        plain = all(s is None or isinstance(s, dict) for s in (spqe, backends))
        if plain and (g_spqe is None) != (g_back is None):
            raw = dict(raw)
            g = g_spqe if g_spqe is not None else g_back
            raw["spqe"] = {**(spqe or {}), "group_size": g}
            raw["backends"] = {**(backends or {}), "group_size": g}
        return raw

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets_written_as_decimals(cls, budgets: object) -> object:
        # Artifacts are named after the float (<method>/3.0.json, quanto/impq/3.0/ppl); a
        # budget written as a decimal reads the same in params.yaml and in those names.
        if isinstance(budgets, list):
            for b in budgets:
                if isinstance(b, int) and not isinstance(b, bool):
                    raise ValueError(f"write budget {b} as {b}.0 (average bits, a decimal)")
        return budgets

    @field_validator("budgets")
    @classmethod
    def _budgets_in_range(cls, budgets: list[float]) -> list[float]:
        # the range the precisions allow is checked where params load (solver.precisions)
        for b in budgets:
            if not math.isfinite(b) or b <= 0:
                raise ValueError(f"budget {b} is not a positive number of average bits")
        return budgets

    @model_validator(mode="after")
    def _export_names_a_method_and_budget(self) -> Params:
        cfg = self.export
        if "export" in self.model_fields_set:  # the default section is checked when used
            self.check_export_method()
        if cfg.budget is not None and cfg.budget not in self.budgets:
            raise ValueError(
                f"export.budget {cfg.budget} is not in budgets {self.budgets}; add it there, "
                "or set export.budget to null (the largest budget)"
            )
        return self

    def check_export_method(self) -> None:
        """Raise ValueError when no stage writes ``export.method``'s assignment."""
        if self.export.method not in self.eval.methods:
            raise ValueError(
                f"export.method {self.export.method!r} is not in eval.methods "
                f"{self.eval.methods}, so no stage writes its assignment; add it there or "
                "export another method"
            )

    def export_budget(self) -> float:
        """The budget the export stage ships: ``export.budget``, else the largest budget."""
        return self.export.budget if self.export.budget is not None else max(self.budgets)


def _section(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The params section (model class) that holds the key at ``loc``, if any."""
    section: type[BaseModel] = Params
    for part in loc[:-1]:
        field = section.model_fields.get(str(part))
        annotation = None if field is None else field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        section = annotation
    return section


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """What to say of an unknown key: its closest spelling among the section's keys."""
    section = _section(loc)
    known = list(section.model_fields) if section is not None else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; the keys here are {known}" if known else "unknown key"


def _shown(value: object) -> str:
    """The offending value, short: a section or a long value is not repeated back."""
    if isinstance(value, dict):
        return ""
    text = repr(value)
    return f" (got {text if len(text) <= 80 else text[:77] + '...'})"


def _format_errors(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: {_unknown_key(e['loc'])}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg}{_shown(e.get('input'))}")
    return lines


def invalid(origin: str, lines: list[str]) -> ConfigError:
    """The error of a params file with these problems: one line for one problem."""
    if len(lines) == 1:
        return ConfigError(f"{origin}: {lines[0]}")
    return ConfigError(f"{origin} is invalid:\n" + "\n".join(f"  {line}" for line in lines))


def parse_params(raw: object, origin: str = "params") -> Params:
    """Validate an already-loaded mapping against the schema, raising ConfigError with key
    paths (the registries are checked by :func:`impq.pipeline.params.parse_params`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise invalid(origin, _format_errors(err)) from None
