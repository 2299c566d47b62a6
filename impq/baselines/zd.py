"""ZD (Dumitru et al. 2024, "Layer-wise quantization"): the share of a block's weights far
from their mean.

For block ``i`` the weights of all its quantizable linears are pooled, standardised
(``z = (w - mean) / std``, population std) and ``ZD_i = mean(|z| > 1)``. A Gaussian gives
0.317; heavier tails give less (the mass concentrates near the mean, with a few outliers).

**zd** is the published rule. Its direction comes from the paper's abstract (arXiv
2406.17415; ACL Findings 2025, "Variable Layerwise Quantization"): the score "estimates
the importance of a layer using the number of layer weights that are much larger than
average (smaller is better)", beside LIM's "(higher is better)". So the importance is
``-ZD``: the blocks with the smallest ZD keep the most bits. The body of the paper
(Section 3.1) could not be retrieved with the project's search tools and the authors'
repository (RazvanDu/LayerwiseQuant) holds no code, so the definition's details follow
two public third-party implementations that cite the paper: both count ``|z| > 1``;
one pools a block's weights (as here), the other (the MAQ package's ``metric.py``)
averages the fraction over the block's linears.

**zd-tuned** is the opposite sign, ``+ZD``, chosen on the reference model itself with
``benchmarks/zd_direction.py``: over the 12 blocks of models/ref-llama-12l the Spearman
correlation of ZD with the calibration-NLL increase of each block alone at 2 bits
(group 64) is +0.27 with quanto and +0.31 with hqq. It is kept as a separately named
variant because its direction was picked on the model under evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from impq.baselines.base import BaselineInputs, Need, assign_by_scores
from impq.models import block_linears, decoder_blocks
from impq.solve.problem import BitProblem

__all__ = ["ZdBaseline", "ZdTunedBaseline", "zd_fraction", "zd_scores"]


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
    """(L,) ZD of each decoder block (the raw fraction, before any sign)."""
    return np.array(
        [
            zd_fraction(m.get_parameter("weight") for m in block_linears(model, i).values())
            for i in range(len(decoder_blocks(model)))
        ]
    )


class ZdBaseline:
    """ZD as published: the blocks with the smallest ZD keep the most bits."""

    name = "zd"
    seeded = False
    needs: frozenset[Need] = frozenset({"model"})
    sign = -1.0
    """Importance = ``sign * ZD`` (see the module docstring)."""

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """``sign`` times the ZD of each block."""
        inputs.require(self.name, *self.needs)
        assert inputs.model is not None
        return self.sign * zd_scores(inputs.model)

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """The level order (:func:`~impq.baselines.base.level_order`) of the ZD ranking."""
        return assign_by_scores(scores, problem)


class ZdTunedBaseline(ZdBaseline):
    """ZD with the direction measured on the reference model: high-ZD blocks keep bits."""

    name = "zd-tuned"
    sign = 1.0
