"""Which direction of ZD (and LIM) ranks the blocks that 2-bit quantization hurts most?

For every block of the reference model alone at 2 bits (the others in float), measure the
calibration NLL increase; print it beside each block's ZD and LIM and the Spearman rank
correlations. A positive correlation of a score with the damage means "higher score =
more important". With an SPQE result at hand, the scores are also ranked against the
Shapley values. Run: ``python benchmarks/zd_direction.py [--params params.yaml]``.

This measurement picks a direction on the model under evaluation, so it is not how the
baseline ``zd`` is defined (the published rule, ``-ZD``: see :mod:`impq.baselines.zd`);
it is how ``zd-tuned`` got its sign (``+ZD`` on models/ref-llama-12l).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from impq.artifacts import read_tensors
from impq.backends import get_backend
from impq.baselines.lim import lim_scores
from impq.baselines.zd import zd_scores
from impq.estimate.result import ShapleyResult
from impq.eval import batch_nll
from impq.models import block_linears, decoder_blocks, load_model
from impq.pipeline.assign import shapley_input_path
from impq.pipeline.params import load_params
from impq.pipeline.prepare import calibration_path


def mean_nll(model: torch.nn.Module, ids: torch.Tensor, batch_size: int) -> float:
    total = sum(
        batch_nll(model, ids[i : i + batch_size]).sum().item()
        for i in range(0, len(ids), batch_size)
    )
    return total / (ids.shape[0] * (ids.shape[1] - 1))


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--backend", default="quanto")
    args = parser.parse_args()
    params = load_params(args.params)
    ids = read_tensors(calibration_path(params))[0]["input_ids"]
    model = load_model(params.model)
    backend = get_backend(args.backend)
    group = params.backends.group_size
    base = mean_nll(model, ids, 8)
    damage = []
    for i in range(len(decoder_blocks(model))):
        linears = block_linears(model, i)
        saved = {n: m.weight.detach().clone() for n, m in linears.items()}
        for m in linears.values():
            m.weight.copy_(backend.dequantize_weight(m.weight, 2, group))
        damage.append(mean_nll(model, ids, 8) - base)
        for n, m in linears.items():
            m.weight.copy_(saved[n])
    damage_arr = np.array(damage)
    zd = zd_scores(model)
    lim = lim_scores(model, ids)
    print(
        f"float calibration NLL {base:.4f} ({ids.shape[0]}x{ids.shape[1]} tokens, {args.backend}, group {group})"
    )
    print("block  2-bit dNLL      ZD      LIM")
    for i, (d, z, li) in enumerate(zip(damage_arr, zd, lim, strict=True)):
        print(f"{i:5d}  {d:10.4f}  {z:.4f}  {li:+.4f}")
    for name, s in (("zd-tuned = +ZD", zd), ("zd (published) = -ZD", -zd), ("LIM", lim)):
        rho = spearmanr(s, damage_arr).statistic
        print(f"spearman({name}, 2-bit damage) = {rho:+.3f}")
    shapley = shapley_input_path(params)
    if shapley.is_file():
        phi = ShapleyResult.load(shapley).values
        for name, s in (("ZD", zd), ("LIM", lim), ("2-bit damage", damage_arr)):
            print(f"spearman({name}, SPQE Shapley value) = {spearmanr(s, phi).statistic:+.3f}")


if __name__ == "__main__":
    main()
