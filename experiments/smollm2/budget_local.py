"""A budget-local semivalue against EvoPress, on held-back calibration (not the test split).

The hypothesis the README's "EvoPress" section left open: Shapley values average a
block's marginal over coalitions of every size, but a budget allows one size (k blocks at
2 bits), so a semivalue that averages only the walks' marginals against coalitions of
about k blocks should pick better, at no new evaluation. Each prefix walk holds one
marginal per block; an SII walk also holds ``v(S ∪ {b}) - v(S)`` for the next block ``b``.

For each budget where EvoPress wins, the k blocks with the lowest local mean marginal
(coalition sizes k ± w; k is the count at 2 bits in the objective's pick, as SmolLM2's
blocks are all of one size) go to 2 bits; those picks, the objective's (impq), the verified
pick and EvoPress's are scored with the Quanto game on the held-back calibration
sequences the verified pick uses. Writes evopress/budget_local.json, prints a table.

    python experiments/smollm2/budget_local.py   # from the repository root, ~4 min
"""

import json
from pathlib import Path

import numpy as np

from impq.assignment import Assignment
from impq.estimate.permutation import walks_from_samples
from impq.models import load_model
from impq.pipeline.params import load_params
from impq.pipeline.verify import held_back_game, held_back_sequences

E = Path(__file__).resolve().parent
BUDGETS = [3.0, 3.5]
WIDTHS = [2, 4, 7]
PICKS = {
    "impq": "artifacts/assign/impq",
    "verified": "artifacts/verify",
    "evopress": "artifacts/evopress",
}


def marginals_by_size(samples: dict) -> list[list[list[float]]]:
    """``out[b][s]``: every marginal of block ``b`` against a coalition of ``s`` blocks."""
    walks = walks_from_samples(samples)
    n = walks.n_players
    out: list[list[list[float]]] = [[[] for _ in range(n)] for _ in range(n)]
    for perm, prefix, values in zip(walks.permutations, walks.prefix, walks.values, strict=True):
        for s, block in enumerate(perm):
            out[block][s].append(prefix[s + 1] - prefix[s])
        if walks.kind == "sii":  # values alternate S ∪ {perm[s+1]}, S ∪ {perm[s]}
            for s in range(n - 1):
                out[perm[s + 1]][s].append(values[2 * s] - prefix[s])
    return out


def local_pick(by_size: list, k: int, width: int) -> list[int]:
    """The k blocks with the lowest mean marginal against coalitions of k ± width blocks."""
    sizes = range(max(0, k - width), min(len(by_size), k + width + 1))
    local = [np.mean([x for s in sizes for x in by_size[b][s]]) for b in range(len(by_size))]
    return sorted(np.argsort(local)[:k].tolist())


def low_blocks(path: Path) -> list[int]:
    bits = Assignment.load(path).bits
    return sorted(int(b) for b, v in bits.items() if v == 2)


params = load_params(E / "params.yaml")
by_size = marginals_by_size(dict(np.load(E / "artifacts/spqe/samples.npz")))
picks: dict[str, list[int]] = {}
for budget in BUDGETS:
    found = {m: low_blocks(E / d / f"{budget}.json") for m, d in PICKS.items()}
    k = len(found["impq"])
    picks |= {f"{budget}/{m}": p for m, p in found.items()}
    picks |= {f"{budget}/local-w{w}": local_pick(by_size, k, w) for w in WIDTHS}

held_back = held_back_sequences(params)
coalitions = np.zeros((len(picks), len(by_size)), dtype=bool)
for row, blocks in zip(coalitions, picks.values(), strict=True):
    row[blocks] = True
with held_back_game(params, load_model(params.model), held_back) as game:
    nll = game.value_function(coalitions)

out = {
    name: {"held_back_nll": float(v), "low_blocks": p}
    for (name, p), v in zip(picks.items(), nll, strict=True)
}
(E / "evopress/budget_local.json").write_text(json.dumps(out, indent=1) + "\n")
print(f"held-back NLL ({len(held_back)} calibration sequences, Quanto game)")
print("| budget | " + " | ".join([*PICKS, *(f"local ±{w}" for w in WIDTHS)]) + " |")
print("| ---: |" + " ---: |" * (len(PICKS) + len(WIDTHS)))
for budget in BUDGETS:
    names = [*PICKS, *(f"local-w{w}" for w in WIDTHS)]
    print(
        f"| {budget} | "
        + " | ".join(f"{out[f'{budget}/{m}']['held_back_nll']:.3f}" for m in names)
        + " |"
    )
