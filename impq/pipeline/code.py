"""The source a stage runs: the modules its work and its flow import, read from the code.

Every ``import`` (function-level ones included) and every ``"module:Name"`` string of a
registry (:class:`impq.registry.Registry`: a backend, solver or exporter chosen by name)
is followed from a stage's work module and its flow module, within ``impq`` and
``flows``. The files found are the stage's ``dvc.yaml`` code deps and the code part of its
task cache key (:func:`impq.pipeline.stages.cache_key`), so both follow what the stage
really runs instead of a hand-kept list. :data:`BOUNDARY` (the stage declarations, which
name every stage's work) is not followed: a change there shows in ``dvc.yaml`` itself.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "BOUNDARY",
    "FILE_LEVEL",
    "PACKAGES",
    "ROOT",
    "code_deps",
    "code_fingerprint",
    "imported_modules",
]

ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the packages (the repository)."""

PACKAGES = ("impq", "flows")
"""The packages whose modules are followed and listed."""

BOUNDARY = frozenset({"impq.pipeline.stages"})
"""Modules listed and followed for no stage: the declarations of every stage."""

_REFERENCE = re.compile(rf"^((?:{'|'.join(PACKAGES)})(?:\.\w+)*):\w+$")


def _file(module: str) -> Path | None:
    base = ROOT / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _resolve(name: str) -> list[str]:
    """The modules that importing ``name`` runs: its longest prefix that is a module, and
    every package above it."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if _file(".".join(parts[:end])) is not None:
            return [".".join(parts[:i]) for i in range(1, end + 1)]
    return []


@functools.cache
def _direct(module: str) -> frozenset[str]:
    path = _file(module)
    if path is None:
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (match := _REFERENCE.match(node.value))
        ):
            names.add(match.group(1))
    return frozenset(m for n in names if _ours(n) for m in _resolve(n))


def imported_modules(roots: Iterable[str]) -> set[str]:
    """``roots`` and every module of :data:`PACKAGES` they import, directly or not."""
    seen: set[str] = set()
    todo = [m for r in roots for m in _resolve(r)]
    while todo:
        module = todo.pop()
        if module in seen or module in BOUNDARY:
            continue
        seen.add(module)
        todo += _direct(module)
    return seen


FILE_LEVEL = frozenset({"impq", "flows", "impq/pipeline"})
"""Folders whose modules are listed one by one (each stage module, each flow, each
top-level module); any other package is listed as its folder."""


def _dep(path: Path) -> str:
    """The dep that covers ``path``: its package folder below a :data:`FILE_LEVEL` folder,
    or the file itself when it sits directly in one."""
    rel = path.relative_to(ROOT)
    for depth in range(1, len(rel.parts)):
        folder = "/".join(rel.parts[:depth])
        if folder not in FILE_LEVEL:
            return folder
    return str(rel)


def code_deps(roots: Iterable[str]) -> list[str]:
    """The sources ``roots`` run, relative to :data:`ROOT`, sorted: the stage modules,
    flows and top-level modules as files, any other package as its folder."""
    modules = imported_modules(roots)
    return sorted({_dep(p) for m in modules if (p := _file(m)) is not None})


@functools.cache
def code_fingerprint(deps: tuple[str, ...]) -> str:
    """Fingerprint of the Python source under ``deps`` (files and folders of :func:`code_deps`)."""
    from impq.artifacts import fingerprint

    files: list[Path] = []
    for dep in deps:
        path = ROOT / dep
        files += sorted(p for p in path.rglob("*.py")) if path.is_dir() else [path]
    return fingerprint(*(f"{p.relative_to(ROOT)}\0{p.read_text()}" for p in files))
