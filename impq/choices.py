"""Checks of the params against the registries and the filesystem, when they load.

A name that selects a registry entry (a backend, a solver, a method, an exporter), a
combination that no backend or stage can run, and a path that does not exist fail when
``params.yaml`` loads, with the key and the valid choices, instead of in the stage that
uses them, possibly hours later. :func:`check_choices` runs in :class:`impq.config.Params`'
validation; :func:`check_paths` (which reads the filesystem, relative to the working
directory) in :func:`impq.config.load_params`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from impq.config import Params

__all__ = ["CALIBRATION_SOURCES", "check_choices", "check_paths", "looks_like_hub_id"]

CALIBRATION_SOURCES = ("heldout", "wikitext2-valid", "wikitext2-train", "c4")
"""Named calibration sources (:func:`impq.data.calibration_text`); anything else is a path."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _backend_class(name: str, key: str) -> Any:
    from impq.backends.base import BACKENDS
    from impq.registry import lookup

    if name not in BACKENDS:
        raise ValueError(f"{key}: unknown backend {name!r}; choose from {sorted(BACKENDS)}")
    return lookup(BACKENDS, name, "backend")


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
    if "evopress" in methods and sorted(params.solver.precisions) != [
        spqe.low_bits,
        spqe.high_bits,
    ]:
        raise ValueError(
            f"eval.methods: 'evopress' searches the SPQE game's two precisions, so "
            f"solver.precisions {params.solver.precisions} must be "
            f"[{spqe.low_bits}, {spqe.high_bits}]"
        )


def check_choices(params: Params) -> None:
    """Raise ValueError naming the key and the choices of the first name or combination
    no registry entry or stage can run."""
    from impq.solve.base import SOLVERS

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
    if not getattr(cls, "data_free", True):
        raise ValueError(
            f"spqe.backend: {spqe.backend!r} needs calibration data to quantize a weight, so "
            "it cannot run inside the SPQE game; estimate with a data-free backend "
            "(quanto, hqq) and apply the assignment with it afterwards"
        )
    _check_bits(spqe.backend, "spqe.backend", sorted(spqe.ladder), "spqe.ladder")
    _check_methods(params)
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
    params.data.resolved_root()  # ConfigError when data.root / $IMPQ_DATA_DIR is no folder
    cal = params.data.calibration.source
    if cal not in CALIBRATION_SOURCES and not Path(cal).expanduser().is_file():
        raise ValueError(
            f"data.calibration.source: {cal!r} is neither one of {list(CALIBRATION_SOURCES)} "
            "nor an existing text file"
        )
