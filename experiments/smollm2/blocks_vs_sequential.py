"""GPTQ cells assembled from blocks (gptq-blocks/) against GPTQModel run sequentially on
the same assignments (gptq/): perplexity ratio per cell, paired bootstrap over the same
test windows. Writes gptq-blocks/blocks_vs_sequential.json and prints the README's table.

    python experiments/smollm2/blocks_vs_sequential.py   # from the repository root
"""

import json
from pathlib import Path

from impq.eval import paired_ppl_ratio

E = Path(__file__).resolve().parent


def load(run: str) -> dict[tuple[str, float], dict]:
    rows = (json.loads(f.read_text()) for f in (E / run / "metrics/sweep/gptq").glob("*.json"))
    return {(r["method"], r["budget"]): r for r in rows}


seq, blk = load("gptq"), load("gptq-blocks")
methods = ["impq", "sii", "surrogate", "verified", "shapley", "lim", "zd", "uniform"]
out = {}
print("| budget | " + " | ".join(methods) + " |")
print("| ---: |" + " --- |" * len(methods))
for bud in sorted({k[1] for k in seq}):
    cells = []
    for m in methods:
        iv = paired_ppl_ratio(
            blk[(m, bud)]["window_nll"],
            seq[(m, bud)]["window_nll"],
            level=0.95,
            n_boot=10000,
            seed=0,
        )
        out[f"{m}-{bud}"] = {"ratio": iv.estimate, "low": iv.low, "high": iv.high}
        cells.append(f"{iv.estimate:.1f} [{iv.low:.1f}, {iv.high:.1f}]")
    print(f"| {bud:.2f} | " + " | ".join(cells) + " |")
(E / "gptq-blocks/blocks_vs_sequential.json").write_text(json.dumps(out, indent=1) + "\n")
