"""Simulated annealing (dwave-samplers) on the program as a penalised BQM, then repair."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import dimod
import numpy as np

from impq.config import SolverConfig
from impq.solve.base import Solution, make_solution
from impq.solve.local import polish, repair
from impq.solve.problem import BitProblem

__all__ = ["AnnealSolver", "Encoding", "problem_bqm"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoding:
    """How BQM variables map to blocks' precisions: a unary (thermometer) code.

    Block ``i`` has ``P - 1`` variables ``t_{i,k}`` at index ``i * (P - 1) + k - 1``;
    it sits at ``precisions[m]`` when its first ``m`` variables are 1 and the rest 0, so
    one flip moves a block one precision up or down. With two precisions this is one
    binary per block, ``t_i = 1 - q_i`` (1 = the higher precision). A code that is not
    of that form is read as its leading ones (and penalised in the BQM). The one-hot
    indicator of block ``i`` at ``precisions[m]`` is ``t_{i,m} - t_{i,m+1}`` (``t_{i,0} =
    1``, ``t_{i,P} = 0``), so ``t_{i,k}`` carries the first differences of ``cost`` along
    the precisions and ``t_{i,k} t_{j,l}`` the mixed second differences of ``pair``: the
    encoding is exact.

    Attributes:
        n_steps: P - 1 variables per block.
        onehot_map: (L·P, V) one-hot indicators added by each variable.
        onehot_base: (L·P,) one-hot indicators when all variables are 0 (every block at
            the lowest precision).
        byte_map: (V,) bytes added by each variable.
        base_bytes: bytes when all variables are 0.
    """

    n_steps: int
    onehot_map: np.ndarray
    onehot_base: np.ndarray
    byte_map: np.ndarray
    base_bytes: int

    @classmethod
    def of(cls, problem: BitProblem) -> Encoding:
        """The encoding used for ``problem``."""
        n, p = problem.sizes.shape
        steps = p - 1
        # within a block: column k (variable t_k) adds 1 at precision k and takes 1 away
        # from precision k - 1
        block = np.zeros((p, steps))
        block[np.arange(1, p), np.arange(steps)] = 1.0
        block[np.arange(steps), np.arange(steps)] -= 1.0
        base = np.zeros((n, p))
        base[:, 0] = 1.0
        return cls(
            n_steps=steps,
            onehot_map=np.kron(np.eye(n), block),
            onehot_base=base.ravel(),
            byte_map=np.diff(problem.sizes, axis=1).ravel().astype(np.int64),
            base_bytes=problem.min_bytes,
        )

    def decode(self, samples: np.ndarray) -> np.ndarray:
        """Choice vectors (n, L) of samples (n, V): each block's count of leading ones."""
        t = np.asarray(samples).reshape(len(samples), -1, self.n_steps).astype(np.int64)
        return np.cumprod(t, axis=2).sum(axis=2)


def problem_bqm(
    problem: BitProblem, penalty: float | None = None
) -> tuple[dimod.BinaryQuadraticModel, Encoding, float]:
    """The program as a BQM: objective + penalty * (budget slack)^2 (+ code-order penalties).

    The budget enters as ``penalty * ((bytes - B) / u)^2`` with ``u`` the mean byte cost
    of a block's smallest precision step; samples that end over the budget are repaired
    afterwards. When ``penalty`` is None it is a fifth of the median change of the
    objective from setting one variable alone: a weak pull, so the annealer crosses the
    budget freely and repair restores feasibility. On synthetic SPQE programs (L = 64,
    128) weights of 1x the median or more left samples feasible but worse (up to +160%
    before polish with precisions {2, 3, 4, 8}); 0.1x to 0.25x reached the optimum.
    Out-of-order unary codes (more than two precisions) are penalised by twice the
    largest change one variable can cause, so breaking the code never pays.

    Returns:
        The BQM, the variable encoding and the penalty weight used.
    """
    enc = Encoding.of(problem)
    m, x0 = enc.onehot_map, enc.onehot_base
    n, p = problem.sizes.shape
    c = problem.cost.ravel()
    pm = problem.pair.reshape(n * p, n * p)
    quad = 0.5 * m.T @ pm @ m
    lin = m.T @ (c + pm @ x0)
    offset = float(c @ x0 + 0.5 * x0 @ pm @ x0)
    single = np.abs(lin + np.diag(quad))
    if penalty is None:
        penalty = 0.2 * float(np.median(single)) or 1.0
    pairs = np.abs(quad + quad.T - 2 * np.diag(np.diag(quad))).sum(axis=1)
    order = 2 * float(np.max(single + pairs)) or 1.0
    w = enc.byte_map.astype(np.float64)
    unit = float(np.mean(np.diff(problem.sizes, axis=1).min(axis=1))) or 1.0
    w /= unit
    r = (problem.budget_bytes - enc.base_bytes) / unit
    quad = quad + penalty * np.outer(w, w)
    lin = lin - 2 * penalty * r * w
    offset += penalty * r * r
    steps = enc.n_steps
    for i in range(problem.n_blocks):
        for v in range(i * steps, (i + 1) * steps - 1):
            # order * t_{v+1} (1 - t_v): a step may only be on when the one below it is
            lin[v + 1] += order
            quad[v, v + 1] -= order
    lin = lin + np.diag(quad)
    upper = np.triu(quad + quad.T, 1)
    return dimod.BinaryQuadraticModel(lin, upper, offset, "BINARY"), enc, penalty


@dataclass(frozen=True)
class AnnealSolver:
    """Simulated annealing with repair to the budget and a local-search polish.

    Every sample is decoded, repaired to the budget (precisions lowered where it costs
    least per byte), and the best few distinct ones are polished by single and pair moves;
    the best feasible result is returned.
    """

    num_reads: int = 32
    num_sweeps: int = 500
    seed: int = 0
    polish_top: int = 4
    name: str = "anneal"

    @classmethod
    def from_config(cls, config: SolverConfig) -> AnnealSolver:
        """The solver with reads, sweeps and seed from ``config``."""
        return cls(num_reads=config.num_reads, num_sweeps=config.num_sweeps, seed=config.seed)

    def solve(self, problem: BitProblem) -> Solution:
        """Anneal, repair, polish; the best feasible assignment found."""
        from dwave.samplers import SimulatedAnnealingSampler

        start = time.perf_counter()
        bqm, enc, penalty = problem_bqm(problem)
        sampleset = SimulatedAnnealingSampler().sample(
            bqm, num_reads=self.num_reads, num_sweeps=self.num_sweeps, seed=self.seed
        )
        samples = sampleset.record.sample[:, np.argsort(np.asarray(sampleset.variables))]
        choices = np.unique(enc.decode(samples), axis=0)
        n_feasible = int(np.sum(problem.stored_bytes(choices) <= problem.budget_bytes))
        repaired = np.unique(np.array([repair(problem, c) for c in choices]), axis=0)
        order = np.argsort(problem.objective(repaired), kind="stable")
        polished = [polish(problem, repaired[i]) for i in order[: self.polish_top]]
        values = [float(problem.objective(c)) for c in polished]
        best = polished[int(np.argmin(values))]
        info = {
            "num_reads": self.num_reads,
            "num_sweeps": self.num_sweeps,
            "seed": self.seed,
            "penalty": penalty,
            "distinct_samples": len(choices),
            "feasible_samples": n_feasible,
            "best_before_polish": float(problem.objective(repaired[order[0]])),
        }
        log.debug("anneal: %s", info)
        return make_solution(problem, best, self.name, time.perf_counter() - start, info=info)
