"""Params as a stage loads them: the schema, then the registries, then the filesystem.

:mod:`impq.config` checks each section on its own and imports nothing of impq. Here a
name that selects a registry entry (a backend, a solver, a method, an exporter, a
baseline), a combination that no backend or stage can run, and a path that does not
exist fail when ``params.yaml`` loads, with the key and the valid choices, instead of in
the stage that uses them, possibly hours later. Every caller that runs stages (the CLI,
the flows, the experiments and benchmarks) loads params through :func:`load_params`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from impq.config import ConfigError, Params, invalid
from impq.config import parse_params as parse_schema

__all__ = [
    "CALIBRATION_SOURCES",
    "check_choices",
    "check_paths",
    "load_params",
    "looks_like_hub_id",
    "parse_params",
]

CALIBRATION_SOURCES = ("heldout", "wikitext2-valid", "wikitext2-train", "c4")
"""Named calibration sources (:func:`impq.data.calibration_text`); anything else is a path."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _backend_class(name: str, key: str) -> Any:
    from impq.backends.base import BACKENDS

    if name not in BACKENDS:
        raise ValueError(f"{key}: unknown backend {name!r}; choose from {sorted(BACKENDS)}")
    return BACKENDS.load(name)


def _check_bits(name: str, key: str, bits: list[int], why: str) -> None:
    supported = getattr(_backend_class(name, key), "supported_bits", None)
    if supported is None:
        return
    if missing := sorted(set(bits) - set(supported)):
        raise ValueError(
            f"{key}: backend {name!r} stores {sorted(supported)} bits, not {missing} ({why})"
        )


def _check_methods(params: Params) -> None:
    from impq.estimate.objectives import objective_methods
    from impq.pipeline.methods import check_methods

    check_methods(params)  # names every method no stage writes, and the choices
    try:
        objective_methods(params.eval.methods, params.spqe.walks)
    except ValueError as err:
        raise ValueError(f"eval.methods: {err}") from None
    methods, spqe = params.eval.methods, params.spqe
    if "verified" in methods and "eval" in params.model_fields_set:  # defaults: when used
        if "impq" not in methods:
            raise ValueError("eval.methods: 'verified' starts from the impq pick; add 'impq'")
        n_cal = params.data.calibration.n_samples
        if spqe.n_samples is None or spqe.n_samples >= n_cal:
            raise ValueError(
                f"eval.methods: 'verified' needs calibration sequences SPQE does not use, but "
                f"spqe.n_samples is {spqe.n_samples} of data.calibration.n_samples {n_cal}: "
                "set spqe.n_samples below it, or drop 'verified'"
            )
    off_ladder = sorted(set(params.solver.precisions) - set(spqe.ladder))
    if off_ladder and len(spqe.ladder) > 2:
        raise ValueError(
            f"solver.precisions: {off_ladder} are not on spqe.ladder {spqe.ladder}: with three "
            "or more rungs every precision is measured, none is extrapolated; add them to "
            "the ladder or drop them from solver.precisions"
        )
    if off_ladder and (searched := [m for m in ("evopress", "verified", "seeded") if m in methods]):
        raise ValueError(
            f"eval.methods: {searched} evaluate assignments on the SPQE game, which plays "
            f"spqe.ladder {spqe.ladder}: solver.precisions {params.solver.precisions} must be "
            "on it"
        )


def _check_database_cells(params: Params) -> None:
    """``backends.calibrated_cells: database``: every calibrated backend the sweep
    measures in process builds a per-block database, and every precision an assignment
    can use is on ``spqe.ladder`` (the precisions the database holds)."""
    from impq.backends.base import ScoredBackend, database_backends
    from impq.baselines.base import fixed_bits

    if params.backends.calibrated_cells != "database":
        return
    assembled = [
        name
        for name in params.backends.names
        if not (cls := _backend_class(name, "backends.names")).data_free
        and not issubclass(cls, ScoredBackend)  # measured by its own runtime
    ]
    if not assembled:
        return
    if cannot := [n for n in assembled if n not in database_backends()]:
        raise ValueError(
            f"backends.calibrated_cells: 'database' assembles each calibrated backend's "
            f"cells from the SPQE game's per-block database, which {cannot} do not build "
            f"(only {database_backends()} do); set calibrated_cells to sequential or blocks, "
            "or drop them from backends.names"
        )
    spqe = params.spqe
    for name in assembled:
        _check_bits(name, "spqe.ladder", spqe.ladder, "its cells come from the game's database")
        _check_bits(
            name, "spqe.calibration_bits", [spqe.calibration_bits],
            "its cells come from the game's database",
        )  # fmt: skip
    uniform = {f[1] for m in params.eval.methods if (f := fixed_bits(m)) is not None}
    if off := sorted((set(params.solver.precisions) | uniform) - set(spqe.ladder)):
        raise ValueError(
            f"backends.calibrated_cells: 'database' assembles {assembled} cells from the SPQE "
            f"game's database, which holds the spqe.ladder precisions {spqe.ladder}, but "
            f"assignments can put blocks at {off} bits (solver.precisions "
            f"{params.solver.precisions}, uniform-<bits> methods): add them to spqe.ladder, "
            "or set calibrated_cells to sequential or blocks"
        )


def _check_registered(params: Params) -> None:
    from impq.baselines import BASELINES
    from impq.export.base import EXPORTERS

    isolated = params.compare.isolated
    if unknown := [m for m in isolated if m not in BASELINES]:
        raise ValueError(
            f"compare.isolated: unknown baselines {unknown}; choose from {sorted(BASELINES)}"
        )
    if params.export.backend not in EXPORTERS:
        raise ValueError(
            f"export.backend: unknown export backend {params.export.backend!r}; "
            f"choose from {sorted(EXPORTERS)}"
        )


def check_choices(params: Params) -> None:
    """Raise ValueError naming the key and the choices of the first name or combination
    no registry entry or stage can run."""
    from impq.game import check_game_backend
    from impq.solve.base import SOLVERS

    _check_registered(params)

    if params.solver.name not in SOLVERS:
        raise ValueError(
            f"solver.name: unknown solver {params.solver.name!r}; choose from {sorted(SOLVERS)}"
        )
    precisions = params.solver.precisions
    if len(set(precisions)) != len(precisions):
        raise ValueError(f"solver.precisions: {precisions} repeats a precision")
    for b in params.budgets:
        if not min(precisions) <= b <= max(precisions):
            raise ValueError(
                f"budgets: {b} average bits is outside solver.precisions "
                f"[{min(precisions)}, {max(precisions)}]: no assignment can meet it"
            )
    names = params.backends.names
    if not names or len(set(names)) != len(names):
        raise ValueError(f"backends.names: {names} must be distinct backends, at least one")
    for name in names:
        _check_bits(name, "backends.names", precisions, "solver.precisions asks for them")

    spqe = params.spqe
    cls = _backend_class(spqe.backend, "spqe.backend")
    check_game_backend(spqe.backend)
    _check_bits(spqe.backend, "spqe.backend", sorted(spqe.ladder), "spqe.ladder")
    if not cls.data_free:  # a per-block database, calibrated behind blocks at these bits
        _check_bits(
            spqe.backend, "spqe.calibration_bits", [spqe.calibration_bits],
            "the blocks in front of a block while it is calibrated",
        )  # fmt: skip
    _check_methods(params)
    _check_database_cells(params)
    from impq.backends.base import BACKENDS

    if "export" in params.model_fields_set and params.export.backend in BACKENDS:
        _check_bits(params.export.backend, "export.backend", precisions, "solver.precisions")


def looks_like_hub_id(source: str) -> bool:
    """Whether ``source`` reads as a Hugging Face hub id (``name`` or ``org/name``) rather
    than a local path: no leading ``/``, ``.`` or ``~``, at most one ``/``, and a first
    part that is not a folder here."""
    if not _HUB_ID.match(source):
        return False
    return not ("/" in source and Path(source.split("/")[0]).is_dir())


def check_paths(params: Params) -> None:
    """Raise ValueError naming the key of the first input path that does not exist.

    A ``model.source`` that reads as a hub id is left to the hub.
    """
    cfg = params.model
    source = Path(cfg.source).expanduser()
    if source.exists():
        if cfg.gguf_file and not (source / cfg.gguf_file).is_file():
            raise ValueError(
                f"model.gguf_file: {source / cfg.gguf_file} does not exist; the GGUF files "
                f"in {source}: {sorted(p.name for p in source.glob('*.gguf'))}"
            )
    elif not looks_like_hub_id(cfg.source):
        raise ValueError(
            f"model.source: {cfg.source} does not exist (relative to {Path.cwd()}); give a "
            "local checkpoint folder or a hub id such as meta-llama/Llama-3.2-1B"
        )
    elif _hub_offline() and not _in_hub_cache(cfg.source, cfg.gguf_file or "config.json"):
        raise ValueError(
            f"model.source: {cfg.source!r} is no folder here (relative to {Path.cwd()}) and "
            "reads as a hub id, but the hub is offline (HF_HUB_OFFLINE) and it is not in the "
            "local hub cache: give the path of a local checkpoint folder, or unset "
            "HF_HUB_OFFLINE to download it"
        )
    params.data.resolved_root()  # ConfigError when data.root / $IMPQ_DATA_DIR is no folder
    cal = params.data.calibration.source
    if cal in CALIBRATION_SOURCES:
        return
    text = Path(cal).expanduser()
    if not text.is_file():
        raise ValueError(
            f"data.calibration.source: {cal!r} is neither one of {list(CALIBRATION_SOURCES)} "
            "nor an existing text file"
        )
    if not text.read_text(encoding="utf-8", errors="replace").strip():
        raise ValueError(
            f"data.calibration.source: {text} holds no text; give a text file with at least "
            "data.calibration.n_samples x data.calibration.seqlen tokens of it"
        )


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    """Whether the local Hugging Face cache holds ``filename`` of the model ``repo_id``."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def _hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag.strip().lower() in {"1", "true", "yes", "on"} for flag in flags)


def parse_params(raw: object, origin: str = "params") -> Params:
    """Validate an already-loaded mapping against the schema and the registries.

    Raises:
        ConfigError: the schema refuses it (:func:`impq.config.parse_params`), or a name
            no registry holds or a combination no stage can run; the message names the key.
    """
    params = parse_schema(raw, origin)
    try:
        check_choices(params)
    except ValueError as err:
        raise invalid(origin, [str(err)]) from None
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml``, validate it and check that its input paths exist.

    Raises:
        ConfigError: the file is missing, is not YAML, fails validation (an unknown key,
            a name no registry holds, a combination no backend can run) or names an
            input path that does not exist; the message names each offending key and
            what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file; pass --params PATH to an existing one")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    params = parse_params(raw, origin=str(path))
    try:
        check_paths(params)
    except ValueError as err:  # ConfigError included
        raise ConfigError(f"{path}: {err}") from None
    return params
