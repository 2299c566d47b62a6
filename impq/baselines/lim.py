"""LIM (Dumitru et al. 2024, "Layer-wise quantization"): how much a block turns its input.

Importance of block ``i`` = ``-mean_t cos(x_t, y_t)`` over every calibration token ``t``,
with ``x`` the hidden state entering the block and ``y`` the one leaving it. A block that
barely changes the residual stream (cosine near 1) matters least.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from impq.baselines.base import BaselineInputs, Need, assign_by_scores
from impq.models import decoder_blocks
from impq.solve.problem import BitProblem

__all__ = ["LimBaseline", "lim_scores"]


def _hidden(value: Any) -> torch.Tensor:
    hidden: torch.Tensor = value[0] if isinstance(value, tuple) else value
    return hidden


@torch.inference_mode()
def lim_scores(model: nn.Module, calibration: torch.Tensor, batch_size: int = 8) -> np.ndarray:
    """(L,) LIM importance ``-mean cos(block input, block output)`` over calibration tokens."""
    blocks = decoder_blocks(model)
    n = len(blocks)
    sums = torch.zeros(n, dtype=torch.float64)
    count = 0
    inputs: dict[int, torch.Tensor] = {}

    def pre_hook(i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            inputs[i] = args[0] if args else kwargs["hidden_states"]

        return hook

    def post_hook(i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
            x, y = inputs.pop(i).float(), _hidden(output).float()
            sums[i] += F.cosine_similarity(x, y, dim=-1).double().sum().cpu()

        return hook

    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
        handles.append(block.register_forward_hook(post_hook(i)))
    device = next(model.parameters()).device
    try:
        for start in range(0, len(calibration), batch_size):
            batch = calibration[start : start + batch_size].to(device)
            model(batch)
            count += batch.numel()
    finally:
        for h in handles:
            h.remove()
    return -(sums / count).numpy()


class LimBaseline:
    """Blocks that change their hidden state most keep the most bits."""

    name = "lim"
    seeded = False
    needs: frozenset[Need] = frozenset({"model", "calibration"})

    def scores(self, inputs: BaselineInputs, n_blocks: int) -> np.ndarray:
        """LIM importance of each block on the calibration set."""
        inputs.require(self.name, *self.needs)
        assert inputs.model is not None and inputs.calibration is not None
        return lim_scores(inputs.model, inputs.calibration, inputs.batch_size)

    def assign(self, scores: np.ndarray, problem: BitProblem) -> dict[int, int]:
        """The level order (:func:`~impq.baselines.base.level_order`) of the LIM ranking."""
        return assign_by_scores(scores, problem)
