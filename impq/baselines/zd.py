"""ZD (Dumitru et al. 2024): the share of a block's weights more than one std from the mean.

For block ``i`` the weights of all its quantizable linears are pooled, standardised
(``z = (w - mean) / std``, population std) and ``ZD_i = mean(|z| > 1)``. A Gaussian gives
0.317; heavier tails give less (the mass concentrates near the mean, with a few outliers).

Direction (checked on models/ref-llama-12l with ``benchmarks/zd_direction.py``): over
the 12 blocks, the Spearman correlation of ZD with the calibration-NLL increase of that
block alone at 2 bits (group 64) is +0.27 with quanto and +0.31 with hqq, so the score is
``+ZD``: a higher ZD keeps more bits. The SPQE Shapley values of
the same model agree (Spearman +0.27 with ZD, +0.36 with LIM). The signal is weak:
block 0, by far the most damaged, has one of the lowest ZDs; LIM ranks it first.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from impq.baselines.base import BaselineInputs, Need, assign_by_scores
from impq.models import block_linears, decoder_blocks
from impq.solve.problem import BitProblem

__all__ = ["ZD_SIGN", "ZdBaseline", "zd_fraction", "zd_scores"]

ZD_SIGN = 1.0
"""Score = ZD_SIGN * ZD; see the module docstring for how the sign was chosen."""


@torch.no_grad()
def zd_fraction(weights: Iterable[torch.Tensor]) -> float:
    """Share of the pooled ``weights`` whose z-score exceeds 1 in absolute value."""
    w = torch.cat([t.detach().reshape(-1).double().cpu() for t in weights])
    std = w.std(unbiased=False)
    if w.numel() == 0 or std == 0:
        raise ValueError("ZD needs non-constant weights")
    z = (w - w.mean()) / std
    return float((z.abs() > 1).double().mean())


def zd_scores(model: nn.Module) -> np.ndarray:
    """(L,) ZD of each decoder block (the raw fraction, before the sign)."""
    return np.array(
        [
            zd_fraction(m.get_parameter("weight") for m in block_linears(model, i).values())
            for i in range(len(decoder_blocks(model)))
        ]
    )


class ZdBaseline:
    """Blocks ranked by ``ZD_SIGN * ZD``: with the sign +1, high-ZD blocks keep more bits."""

    name = "zd"
    needs: frozenset[Need] = frozenset({"model"})

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """``ZD_SIGN`` times the ZD of each block."""
        inputs.require(self.name, *self.needs)
        assert inputs.model is not None
        return ZD_SIGN * zd_scores(inputs.model)

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """Greedy budget rule on the ZD ranking."""
        return assign_by_scores(scores, problem)
