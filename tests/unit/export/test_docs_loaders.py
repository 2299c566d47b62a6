"""The docs' loaders for HQQ and quanto exports run as written and give the same model, at
every precision each backend stores."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from impq.export import get_exporter
from impq.models.tiny import tiny_model

PAGE = Path(__file__).resolve().parents[3] / "docs" / "how-to" / "ship.md"
BITS = {"hqq": {0: 2, 1: 3, 2: 8}, "quanto": {0: 2, 1: 4, 2: 8}}
OUT_LINE = 'out = "artifacts/export"'


def _snippet(first_line: str) -> str:
    """The page's python block that starts with ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, f"{PAGE.name} has {len(found)} blocks starting {first_line!r}"
    assert OUT_LINE in found[0]
    return found[0]


@pytest.mark.parametrize(
    ("name", "first_line"),
    [("hqq", "# load an hqq export"), ("quanto", "# load a quanto export")],
)
def test_docs_loader_gives_the_exported_model(name: str, first_line: str, tmp_path: Path) -> None:
    out = tmp_path / "export"
    quantized = get_exporter(name).export(tiny_model("qwen3", 3), BITS[name], 32, None, out)
    namespace: dict[str, object] = {}
    exec(_snippet(first_line).replace(OUT_LINE, f"out = {str(out)!r}"), namespace)
    model = namespace["model"]
    assert isinstance(model, torch.nn.Module)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, quantized(ids).logits)
