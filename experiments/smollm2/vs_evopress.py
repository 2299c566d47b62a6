"""Each impq variant against EvoPress at SPQE's evaluation count, and EvoPress against the
best isolated baseline (the lowest perplexity of ``compare.isolated``, as ``compare``
picks it): perplexity ratio per backend and budget, paired bootstrap over the same test
windows with the ``compare`` settings of this folder's ``params.yaml``. Reads the sweep
cells of every backend that has EvoPress cells (metrics/sweep/, gptq/metrics/sweep/),
writes evopress/vs_evopress.json and prints the README's table.

    python experiments/smollm2/vs_evopress.py   # from the repository root
"""

import json
from pathlib import Path

import yaml

from impq.config import CompareConfig
from impq.eval import paired_ppl_ratio

E = Path(__file__).resolve().parent
VARIANTS = ["impq", "sii", "surrogate", "verified"]
COMPARE = CompareConfig.model_validate(yaml.safe_load((E / "params.yaml").read_text())["compare"])


def cells(root: Path) -> dict[tuple[str, str, float], dict]:
    rows = (json.loads(f.read_text()) for f in root.glob("*/*.json"))
    return {(r["backend"], r["method"], r["budget"]): r for r in rows}


def ratio(ours: dict, theirs: dict) -> tuple[dict, str]:
    iv = paired_ppl_ratio(
        ours["window_nll"], theirs["window_nll"], COMPARE.level, COMPARE.n_boot, COMPARE.seed
    )
    return {"ratio": iv.estimate, "low": iv.low, "high": iv.high}, (
        f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]"
    )


found = cells(E / "metrics/sweep") | cells(E / "gptq/metrics/sweep")
out = {}
print("| backend | budget | " + " | ".join(VARIANTS) + " | EvoPress vs best isolated |")
print("| --- | ---: |" + " --- |" * (len(VARIANTS) + 1))
for backend, _, budget in sorted(k for k in found if k[1] == "evopress"):
    evo = found[(backend, "evopress", budget)]
    row = []
    for method in VARIANTS:
        cell = found.get((backend, method, budget))
        if cell is None:
            row.append("not run")
            continue
        out[f"{backend}/{method}/{budget}"], text = ratio(cell, evo)
        row.append(text)
    isolated = [
        found[backend, m, budget] for m in COMPARE.isolated if (backend, m, budget) in found
    ]
    best = min(isolated, key=lambda r: r["ppl"])
    out[f"{backend}/evopress-vs-{best['method']}/{budget}"], text = ratio(evo, best)
    row.append(f"{text} ({best['method']})")
    print(f"| {backend} | {budget:.2f} | " + " | ".join(row) + " |")
(E / "evopress/vs_evopress.json").write_text(json.dumps(out, indent=1) + "\n")
