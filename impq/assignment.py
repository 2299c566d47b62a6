"""A per-block bit assignment under a budget, as a versioned JSON artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from impq.artifacts import read_json, write_json

__all__ = ["Assignment"]


@dataclass
class Assignment:
    """Bits per decoder block chosen by one method under one budget.

    Attributes:
        bits: block index -> bits.
        method: what chose it ('impq', 'shapley', 'lim', 'zd', 'uniform', 'random', ...).
        budget_bits: target average bits the budget was derived from.
        stored_bytes: bytes of the blocks' quantized weights under the footprint model.
        avg_bits: parameter-weighted average bits of the assignment.
        extra: method-specific facts (objective, solver, gap to exact, seed, ...).
    """

    bits: dict[int, int]
    method: str
    budget_bits: float
    stored_bytes: int
    avg_bits: float
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the assignment as JSON, atomically."""
        doc = asdict(self)
        doc["bits"] = {str(k): v for k, v in sorted(self.bits.items())}
        return write_json(path, doc)

    @classmethod
    def load(cls, path: str | Path) -> Assignment:
        """Read an assignment written by :meth:`save`."""
        doc = read_json(path)
        doc.pop("schema_version", None)
        doc["bits"] = {int(k): int(v) for k, v in doc["bits"].items()}
        return cls(**doc)
