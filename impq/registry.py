"""Lazy registries: a name maps to ``"module:Class"``, imported only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Registry"]


class Registry(Mapping[str, str]):
    """The one place where the entries of one kind (backends, solvers, ...) are registered.

    A read-only mapping of name -> ``"module:Class"``: ``name in registry`` and
    ``sorted(registry)`` give the choices; :meth:`load` imports the chosen class's module
    on first use, so looking names up stays cheap.

    Args:
        kind: what an entry is (``"backend"``), for error messages.
        entries: name -> ``"module:Class"``.
    """

    def __init__(self, kind: str, entries: Mapping[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> str:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self._entries!r})"

    def load(self, name: str) -> Any:
        """The class registered as ``name``, importing its module on first use.

        Raises:
            ValueError: ``name`` is not registered; the message lists the valid names.
        """
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {sorted(self)}")
        module, cls = self._entries[name].split(":")
        return getattr(importlib.import_module(module), cls)
