"""Each impq variant against EvoPress at SPQE's evaluation count: perplexity ratio per
backend and budget, paired bootstrap over the same test windows. Reads the sweep cells of
every backend that has EvoPress cells (metrics/sweep/, gptq/metrics/sweep/), writes
evopress/vs_evopress.json and prints the README's table.

    python experiments/smollm2/vs_evopress.py   # from the repository root
"""

import json
from pathlib import Path

from impq.eval import paired_ppl_ratio

E = Path(__file__).resolve().parent
VARIANTS = ["impq", "sii", "surrogate", "verified"]


def cells(root: Path) -> dict[tuple[str, str, float], dict]:
    rows = (json.loads(f.read_text()) for f in root.glob("*/*.json"))
    return {(r["backend"], r["method"], r["budget"]): r for r in rows}


found = cells(E / "metrics/sweep") | cells(E / "gptq/metrics/sweep")
out = {}
print("| backend | budget | " + " | ".join(VARIANTS) + " |")
print("| --- | ---: |" + " --- |" * len(VARIANTS))
for backend, _, budget in sorted(k for k in found if k[1] == "evopress"):
    evo = found[(backend, "evopress", budget)]
    row = []
    for method in VARIANTS:
        cell = found.get((backend, method, budget))
        if cell is None:
            row.append("not run")
            continue
        iv = paired_ppl_ratio(
            cell["window_nll"], evo["window_nll"], level=0.95, n_boot=10000, seed=0
        )
        out[f"{backend}/{method}/{budget}"] = {"ratio": iv.estimate, "low": iv.low, "high": iv.high}
        row.append(f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]")
    print(f"| {backend} | {budget:.2f} | " + " | ".join(row) + " |")
(E / "evopress/vs_evopress.json").write_text(json.dumps(out, indent=1) + "\n")
