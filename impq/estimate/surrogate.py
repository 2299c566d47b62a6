"""A second-order surrogate of a game fitted to configurations already evaluated.

Over level vectors ``x`` (``x_i`` in ``0..S``; a boolean coalition is ``S = 1``), with
one-hot indicators ``e_{i,k} = [x_i = k]`` for ``k >= 1``,

    v(x) ≈ c + Σ_{i,k} β_{i,k} e_{i,k} + Σ_{i<j} Σ_{k,l} Γ_{i,k,j,l} e_{i,k} e_{j,l},

(for ``S = 1``: ``c + Σ_i β_i x_i + Σ_{i<j} Γ_ij x_i x_j``) by ridge regression that
penalises only ``Γ``: the intercept and the per-(block, level) terms are left free, so a
large penalty gives back the additive least-squares fit and the penalty moves the model
between additive and fully pairwise. The fit is a level objective
(:mod:`impq.estimate.forms`): ``cost[i, k] = β_{i,k}``, ``pair[i, k, j, l] = Γ_{i,k,j,l}``. The penalty is chosen by leaving whole
groups (the walks of :class:`~impq.estimate.permutation.Walks`) out, computed exactly
and without refitting from the hat matrix: the residuals of group ``g`` left out are
``(I - S_gg)^{-1} e_g`` for any penalised least-squares fit with hat matrix ``S``.

With the intercept and the one-hot terms profiled out, ``P' = (I - H_A) P`` (``P`` the
pair products, ``H_A`` the projection onto the intercept and one-hot columns) and its
thin SVD ``P' = U diag(σ) Vᵀ``, the hat matrix of penalty ``λ`` is
``S = H_A + U diag(σ²/(σ²+λ)) Uᵀ``: one SVD serves every penalty of the grid, and
``λ = ∞`` is the additive model. The cost is that of the SVD, ``O(N p min(N, p))`` for
``N`` configurations and ``p = S²·L(L-1)/2`` pair products (a second for L = 30, one step
and 60 walks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from impq.estimate.forms import level_values

__all__ = ["RELATIVE_RIDGES", "QuadraticFit", "fit_quadratic", "level_features", "pair_products"]

log = logging.getLogger(__name__)

RELATIVE_RIDGES: tuple[float, ...] = (0.0, *(float(10.0**e) for e in np.arange(-8.0, 4.01, 0.5)))
"""The penalty grid, in units of the mean squared singular value of ``P'`` (0: least squares)."""

_SINGULAR = 1e-9
"""A held-out group whose ``I - S_gg`` has an eigenvalue below this is not predictable
at that penalty (the rest of the data does not determine it); the penalty is skipped."""


def level_features(levels: np.ndarray, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """One-hot indicators (N, L·S) ``[x_i = k]`` (column ``i·S + k - 1``, ``k >= 1``) and
    their products between blocks (N, S²·L(L-1)/2), pairs ``i < j`` in
    ``numpy.triu_indices`` order, each with its ``(k, l)`` in row-major order."""
    x = np.asarray(levels, dtype=np.int64)
    onehot = (x[:, :, None] == np.arange(1, n_steps + 1)).reshape(len(x), -1)
    onehot = onehot.astype(np.float64)
    s = n_steps
    iu, ju = np.triu_indices(x.shape[1], 1)
    a = onehot.reshape(len(x), -1, s)[:, iu, :, None]
    b = onehot.reshape(len(x), -1, s)[:, ju, None, :]
    return onehot, (a * b).reshape(len(x), -1)


def pair_products(coalitions: np.ndarray) -> np.ndarray:
    """(N, L(L-1)/2) products ``x_i x_j`` for ``i < j`` in ``numpy.triu_indices`` order."""
    return level_features(coalitions, 1)[1]


@dataclass(frozen=True)
class QuadraticFit:
    """A fitted pairwise model of a game and how well it predicts held-out groups.

    Attributes:
        constant: ``c``.
        cost: (L, S+1) ``β_{i,k}`` (column 0 is zero).
        pair: (L, S+1, L, S+1) ``Γ``, symmetric, zero where ``i == j`` or a level is 0.
        ridge: the chosen penalty (absolute units; 0 is least squares).
        cv_r2: cross-validated R² at ``ridge``: ``1 - SSE / SST`` over the held-out rows,
            each predicted by the fit without its group (NaN when they are all equal).
        additive_cv_r2: the same for the additive model (``Γ = 0``, least squares).
        n_coalitions: rows fitted.
    """

    constant: float
    cost: np.ndarray
    pair: np.ndarray
    ridge: float
    cv_r2: float
    additive_cv_r2: float
    n_coalitions: int

    @property
    def n_steps(self) -> int:
        """Number of levels below the top, S."""
        return int(self.cost.shape[1]) - 1

    def predict(self, levels: np.ndarray) -> np.ndarray:
        """The model's value of each row of a level (or boolean coalition) matrix."""
        return self.constant + level_values(self.cost, self.pair, np.asarray(levels))


def _r2(sse: float, sst: float) -> float:
    return 1.0 - sse / sst if sst > 0 else float("nan")


def _held_out_residuals(
    residuals: np.ndarray, hat_blocks: list[np.ndarray], rows: list[np.ndarray]
) -> np.ndarray | None:
    """Leave-group-out residuals ``(I - S_gg)^{-1} e_g`` of every group; None if singular."""
    out = np.empty(sum(len(r) for r in rows))
    at = 0
    for s_gg, r in zip(hat_blocks, rows, strict=True):
        m = np.eye(len(r)) - s_gg
        if np.linalg.eigvalsh((m + m.T) / 2).min() < _SINGULAR:
            return None
        out[at : at + len(r)] = np.linalg.solve(m, residuals[r])
        at += len(r)
    return out


def fit_quadratic(
    coalitions: np.ndarray,
    values: np.ndarray,
    groups: np.ndarray,
    relative_ridges: tuple[float, ...] = RELATIVE_RIDGES,
    n_steps: int | None = None,
) -> QuadraticFit:
    """Fit the pairwise model of the module docstring with the penalty on ``Γ`` chosen by
    leaving each group out in turn.

    Args:
        coalitions: (N, L) level matrix (integers in ``0..S``) or boolean coalitions.
        values: (N,) finite values.
        groups: (N,) group of each row; rows with a negative group are never held out
            (the empty and full coalitions every walk shares).
        relative_ridges: penalties to try, relative to the mean squared singular value
            of the profiled pair products.
        n_steps: S (default: 1 for booleans, else the highest level in ``coalitions``).

    Raises:
        ValueError: shapes disagree, values are not finite, levels outside ``0..S``,
            fewer than two groups, or the intercept and one-hot terms are not determined
            by the rows.
    """
    x = np.asarray(coalitions)
    y = np.asarray(values, dtype=np.float64)
    g = np.asarray(groups)
    if x.ndim != 2:
        raise ValueError(f"coalitions must be an (N, L) matrix, got shape {x.shape}")
    n_rows, n = x.shape
    x = x.astype(np.int64)
    s = n_steps if n_steps is not None else max(int(x.max(initial=1)), 1)
    if x.min(initial=0) < 0 or x.max(initial=0) > s:
        raise ValueError(f"levels must lie in 0..{s}, got {x.min()}..{x.max()}")
    if y.shape != (n_rows,) or g.shape != (n_rows,):
        raise ValueError(f"coalitions {x.shape}, values {y.shape} and groups {g.shape} disagree")
    if not np.isfinite(y).all():
        raise ValueError("the surrogate needs finite values; cap NaN/inf first")
    ids = np.unique(g[g >= 0])
    if len(ids) < 2:
        raise ValueError(f"leaving groups out needs at least two groups, got {len(ids)}")
    onehot, p = level_features(x, s)
    a = np.column_stack([np.ones(n_rows), onehot])
    q_a, r_a = np.linalg.qr(a)
    if np.abs(np.diag(r_a)).min() <= 1e-10 * np.abs(np.diag(r_a)).max():
        raise ValueError(
            "the configurations do not determine an intercept and one term per (block, level)"
        )
    p_res = p - q_a @ (q_a.T @ p)
    u, sigma, vt = np.linalg.svd(p_res, full_matrices=False)
    keep = sigma > 1e-10 * max(float(sigma.max(initial=0.0)), 1e-300)
    u, sigma, vt = u[:, keep], sigma[keep], vt[keep]
    scale = float(np.mean(sigma**2)) if sigma.size else 1.0

    rows = [np.flatnonzero(g == k) for k in ids]
    held = np.concatenate(rows)
    y_held = y[held]
    sst = float(np.sum((y_held - y_held.mean()) ** 2))
    h_a_blocks = [q_a[r] @ q_a[r].T for r in rows]
    u_rows = [u[r] for r in rows]
    fit_a = q_a @ (q_a.T @ y)
    uty = u.T @ y

    cv_additive = _held_out_residuals(y - fit_a, h_a_blocks, rows)
    if cv_additive is None:
        raise ValueError("a group cannot be predicted by the others even additively")
    additive_r2 = _r2(float(cv_additive @ cv_additive), sst)

    best: tuple[float, float] | None = None  # (sse, ridge)
    for rel in relative_ridges:
        lam = rel * scale
        w = sigma**2 / (sigma**2 + lam) if lam > 0 else np.ones_like(sigma)
        fitted = fit_a + u @ (w * uty)
        blocks = [h + (ug * w) @ ug.T for h, ug in zip(h_a_blocks, u_rows, strict=True)]
        resid = _held_out_residuals(y - fitted, blocks, rows)
        if resid is None:
            continue
        sse = float(resid @ resid)
        if best is None or sse < best[0]:
            best = (sse, lam)
    if best is None:
        log.warning("no penalty of the grid predicts every held-out walk; using the additive fit")
        sse_best, lam = float(cv_additive @ cv_additive), np.inf
    else:
        sse_best, lam = best

    if np.isfinite(lam):
        coef = sigma / (sigma**2 + lam) if lam > 0 else 1.0 / sigma
        gamma = vt.T @ (coef * uty)
    else:
        gamma = np.zeros(p.shape[1])
    theta = np.linalg.solve(r_a, q_a.T @ (y - p @ gamma))
    cost = np.zeros((n, s + 1))
    cost[:, 1:] = theta[1:].reshape(n, s)
    pair = np.zeros((n, s + 1, n, s + 1))
    iu, ju = np.triu_indices(n, 1)
    block = gamma.reshape(len(iu), s, s)
    pair[iu, 1:, ju, 1:] = block
    pair[ju, 1:, iu, 1:] = block.transpose(0, 2, 1)
    return QuadraticFit(
        constant=float(theta[0]),
        cost=cost,
        pair=pair,
        ridge=float(lam),
        cv_r2=_r2(sse_best, sst),
        additive_cv_r2=additive_r2,
        n_coalitions=n_rows,
    )
