"""The Shapley result shared by estimators, the solver and the reports."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from impq.artifacts import SCHEMA_VERSION, atomic_path

__all__ = ["ShapleyResult", "write_npz"]

_ARRAYS = ("values", "values_se", "interactions", "interactions_se", "block_params")


def write_npz(f: io.BufferedWriter, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` without its wall-clock timestamps: same arrays, same bytes."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            zf.writestr(
                zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue()
            )


@dataclass
class ShapleyResult:
    """Per-block Shapley values and pairwise interactions, with standard errors.

    Attributes:
        values: (L,) Shapley value of each block (NLL increase when it goes low).
        values_se: (L,) standard error of each value.
        interactions: (L, L) symmetric interaction matrix K.
        interactions_se: (L, L) standard error of each entry of K (NaN when unknown).
        block_params: (L,) quantizable parameters of each block, for the budget.
        meta: JSON-safe provenance: estimator, budget used, evaluations, fingerprints.
    """

    values: np.ndarray
    values_se: np.ndarray
    interactions: np.ndarray
    interactions_se: np.ndarray
    block_params: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.values)
        for name in _ARRAYS:
            arr = np.asarray(getattr(self, name))
            want = (n, n) if name.startswith("interactions") else (n,)
            if arr.shape != want:
                raise ValueError(f"ShapleyResult.{name} has shape {arr.shape}, expected {want}")
            setattr(self, name, arr)

    @property
    def n_players(self) -> int:
        """Number of blocks (players)."""
        return len(self.values)

    def save(self, path: str | Path) -> Path:
        """Write arrays and metadata to one ``.npz`` file, atomically.

        The bytes depend only on the contents (no timestamps), so the same result
        always gives the same file.
        """
        meta = json.dumps({"schema_version": SCHEMA_VERSION, **self.meta}, sort_keys=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            write_npz(f, {"meta": np.array(meta), **{k: getattr(self, k) for k in _ARRAYS}})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ShapleyResult:
        """Read a result written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no Shapley result; run `impq spqe` first")
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            meta.pop("schema_version", None)
            return cls(**{k: data[k] for k in _ARRAYS}, meta=meta)
