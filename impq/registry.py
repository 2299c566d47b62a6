"""Lazy registries: a name maps to ``"module:Class"``, imported only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["lookup"]


def lookup(table: Mapping[str, str], name: str, kind: str) -> Any:
    """The class registered as ``name`` in ``table``, importing its module on first use.

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; choose from {sorted(table)}")
    module, cls = table[name].split(":")
    return getattr(importlib.import_module(module), cls)
