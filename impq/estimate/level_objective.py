"""A method's objective over a ladder of precisions: the artifact the solver reads.

``f(x) = Σ_i cost[i, x_i] + Σ_{i<j} pair[i, x_i, j, x_j]`` over level vectors ``x``
(:mod:`impq.estimate.forms`), with the ladder it is measured on, the blocks' sizes, the
per-(block, step) Shapley values and the standard errors the method has.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from impq.artifacts import SCHEMA_VERSION, atomic_path
from impq.estimate.forms import level_values, quadratic_form, thermometer
from impq.estimate.result import ShapleyResult, write_npz

__all__ = ["LevelObjective"]

_KIND = "level-objective"
_ARRAYS = ("ladder", "cost", "pair", "values", "values_se", "pair_se", "block_params")


def _bad_blocks(arr: np.ndarray) -> list[int]:
    """Blocks (the first axis, and the third of a pair array) with a NaN or infinite entry."""
    bad = ~np.isfinite(arr)
    rows = bad.reshape(arr.shape[0], -1).any(axis=1)
    if arr.ndim == 4:
        rows |= bad.any(axis=(0, 1, 3))
    return [int(i) for i in np.flatnonzero(rows)]


@dataclass
class LevelObjective:
    """Predicted loss increase of every level vector, over the ladder it was measured on.

    Attributes:
        ladder: precisions, strictly descending; level ``k`` is ``ladder[k]`` (a game
            without precisions has the nominal ladder ``(S, ..., 1, 0)``).
        cost: (L, S+1) loss increase of block ``i`` alone at level ``k``; ``cost[:, 0] = 0``.
        pair: (L, S+1, L, S+1) symmetric pairwise terms; zero where ``i == j`` or either
            level is 0.
        values: (L, S) Shapley value of every (block, step) (step ``k`` lowers
            ``ladder[k-1]`` to ``ladder[k]``).
        values_se: (L, S) their standard errors (NaN when unknown).
        pair_se: (L, S+1, L, S+1) standard errors of ``pair`` (NaN when unknown).
        block_params: (L,) quantizable parameters per block, for the budget.
        self_interaction: (L,) for a two-level ladder, the part ``K_ii`` of ``cost[:, 1]``
            that is quadratic in the degradation level (the rest, ``a_i``, is linear);
            only extrapolating to precisions off the ladder needs the split. None for
            ladders of three or more levels.
        meta: JSON-safe provenance (objective, walks, options, metrics).
    """

    ladder: tuple[int, ...]
    cost: np.ndarray
    pair: np.ndarray
    values: np.ndarray
    values_se: np.ndarray
    pair_se: np.ndarray
    block_params: np.ndarray
    self_interaction: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ladder = tuple(int(b) for b in np.asarray(self.ladder).ravel())
        if len(ladder) < 2 or any(a <= b for a, b in itertools.pairwise(ladder)):
            raise ValueError(f"ladder must hold >= 2 strictly descending precisions, got {ladder}")
        if ladder[-1] < 0:
            raise ValueError(f"ladder precisions must be non-negative, got {ladder}")
        self.ladder = ladder
        cost = np.asarray(self.cost, dtype=np.float64)
        n, width = cost.shape[0], len(ladder)
        s = width - 1
        shapes = {
            "cost": (n, width),
            "pair": (n, width, n, width),
            "values": (n, s),
            "values_se": (n, s),
            "pair_se": (n, width, n, width),
            "block_params": (n,),
        }
        for name, want in shapes.items():
            arr = np.asarray(getattr(self, name))
            if arr.shape != want:
                raise ValueError(
                    f"LevelObjective.{name} has shape {arr.shape}, expected {want} for {n} "
                    f"blocks and the ladder {list(ladder)}"
                )
            setattr(self, name, arr.astype(np.int64 if name == "block_params" else np.float64))
        if n == 0:
            raise ValueError("a LevelObjective needs at least one block")
        for name in ("cost", "pair"):
            if bad := _bad_blocks(getattr(self, name)):
                raise ValueError(f"LevelObjective.{name} is NaN or infinite for blocks {bad}")
        if np.any(self.cost[:, 0] != 0):
            raise ValueError("LevelObjective.cost[:, 0] must be 0 (the top level costs nothing)")
        blocks = np.arange(n)
        zero = np.zeros(self.pair.shape, dtype=bool)
        zero[:, 0] = zero[:, :, :, 0] = True
        zero[blocks, :, blocks, :] = True
        if np.any(self.pair[zero] != 0):
            raise ValueError("LevelObjective.pair must be zero where i == j or a level is 0")
        self.pair = (self.pair + self.pair.transpose(2, 3, 0, 1)) / 2
        if self.block_params.min() <= 0:
            raise ValueError(f"block_params must be positive, got {self.block_params.tolist()}")
        if self.self_interaction is not None:
            diag = np.asarray(self.self_interaction, dtype=np.float64)
            if s != 1 or diag.shape != (n,) or not np.isfinite(diag).all():
                raise ValueError(
                    "self_interaction must be a finite (L,) vector, and only a two-level "
                    f"ladder has one (ladder {list(ladder)}, shape {diag.shape})"
                )
            self.self_interaction = diag

    @property
    def n_blocks(self) -> int:
        """Number of blocks L."""
        return int(self.cost.shape[0])

    @property
    def n_steps(self) -> int:
        """Number of steps S = len(ladder) - 1."""
        return len(self.ladder) - 1

    def predict(self, levels: np.ndarray) -> np.ndarray:
        """``f(x)`` of a level vector (L,) or of every row of a level matrix (n, L)."""
        x = np.asarray(levels)
        if x.shape[-1] != self.n_blocks or x.min(initial=0) < 0 or x.max(initial=0) > self.n_steps:
            raise ValueError(
                f"levels must have {self.n_blocks} columns with values in 0..{self.n_steps}"
            )
        return level_values(self.cost, self.pair, x)

    @classmethod
    def from_two_level(
        cls,
        phi: np.ndarray,
        interactions: np.ndarray,
        block_params: np.ndarray,
        ladder: tuple[int, ...] = (4, 2),
        *,
        phi_se: np.ndarray | None = None,
        interactions_se: np.ndarray | None = None,
        meta: dict[str, Any] | None = None,
    ) -> LevelObjective:
        """The two-level form ``(φ, K)``: ``f(q) = aᵀq + qᵀKq``, ``a_i = φ_i - Σ_{j≠i} K_ij``.

        Exactly ``cost[i, 1] = a_i + K_ii`` and ``pair[i, 1, j, 1] = 2 K_ij`` (``K``
        symmetrised), ``self_interaction = diag K``.

        Raises:
            ValueError: shapes disagree, ``φ`` or ``K`` is NaN or infinite (naming the
                blocks), or the ladder does not have two levels.
        """
        phi = np.asarray(phi, dtype=np.float64)
        k = np.asarray(interactions, dtype=np.float64)
        if phi.ndim != 1 or phi.shape[0] == 0:
            raise ValueError(f"phi must be a non-empty vector, got shape {phi.shape}")
        n = phi.shape[0]
        if k.shape != (n, n):
            raise ValueError(
                f"interactions K has shape {k.shape}, expected ({n}, {n}) for {n} blocks"
            )
        if bad := _bad_blocks(phi):
            raise ValueError(f"phi (Shapley values) is NaN or infinite for blocks {bad}")
        if bad := sorted(set(_bad_blocks(k)) | set(_bad_blocks(k.T))):
            raise ValueError(f"interactions K hold NaN or infinite entries for blocks {bad}")
        if len(ladder) != 2:
            raise ValueError(f"a (phi, K) objective has two levels, got the ladder {ladder}")
        k = (k + k.T) / 2
        a = phi - (k.sum(axis=1) - np.diag(k))
        cost, pair = quadratic_form(a[:, None], k[:, None, :, None], thermometer(1))
        pair_se = np.full(pair.shape, np.nan)
        if interactions_se is not None:
            pair_se = np.zeros(pair.shape)
            pair_se[:, 1, :, 1] = 2 * np.asarray(interactions_se, dtype=np.float64)
            pair_se[np.arange(n), :, np.arange(n), :] = 0.0
        params = np.asarray(block_params)
        if params.shape != (n,):
            raise ValueError(
                f"block_params has shape {params.shape}, expected ({n},) for {n} blocks"
            )
        return cls(
            ladder=tuple(ladder),
            cost=cost,
            pair=pair,
            values=phi[:, None],
            values_se=np.full((n, 1), np.nan) if phi_se is None else np.asarray(phi_se)[:, None],
            pair_se=pair_se,
            block_params=params,
            self_interaction=np.diag(k).copy(),
            meta=dict(meta or {}),
        )

    @classmethod
    def from_shapley(
        cls, result: ShapleyResult, ladder: tuple[int, ...] = (4, 2)
    ) -> LevelObjective:
        """The two-level objective of a method's ``(φ, K)`` as a ShapleyResult holds it."""
        return cls.from_two_level(
            result.values,
            result.interactions,
            result.block_params,
            ladder,
            phi_se=result.values_se,
            interactions_se=result.interactions_se,
            meta=result.meta,
        )

    def save(self, path: str | Path) -> Path:
        """Write arrays and metadata to one ``.npz`` file, atomically (same contents,
        same bytes)."""
        meta = json.dumps(
            {"schema_version": SCHEMA_VERSION, "kind": _KIND, **self.meta}, sort_keys=True
        )
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        if self.self_interaction is not None:
            arrays["self_interaction"] = self.self_interaction
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            write_npz(f, {"meta": np.array(meta), **arrays})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> LevelObjective:
        """Read an objective written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a LevelObjective.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no objective; run `impq interactions` first")
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if meta.pop("kind", None) != _KIND:
                raise ValueError(
                    f"{path} is not a LevelObjective (written by another version of impq); "
                    "run `impq interactions` again"
                )
            meta.pop("schema_version", None)
            arrays = {name: data[name] for name in _ARRAYS[1:]}
            ladder = tuple(int(b) for b in data["ladder"])
            diag = data["self_interaction"] if "self_interaction" in data.files else None
        return cls(ladder, **arrays, self_interaction=diag, meta=meta)
