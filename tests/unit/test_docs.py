"""The documentation: the generated params reference, the site's config and the README."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "docs" / "hooks" / "params_reference.py"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("params_reference", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leaf_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for name, value in tree.items():
        if isinstance(value, dict):
            keys += _leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _sections(page: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", page, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


@pytest.mark.parametrize("params_file", ["params.yaml", "experiments/smollm2/params.yaml"])
def test_params_reference_lists_every_key_with_its_description(params_file: str) -> None:
    from impq.config import Params

    hook = _hook()
    sections = _sections(hook.render())
    descriptions = {key: info.description for key, info, _ in hook.schema_keys(Params)}
    raw = yaml.safe_load((ROOT / params_file).read_text(encoding="utf-8"))
    keys = _leaf_keys(raw)
    assert len(keys) > 40  # the whole file was read, not one section
    for key in keys:
        parent, _, name = key.rpartition(".")
        body = sections[parent or "Top level"]
        rows = [line for line in body.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, f"{key}: {len(rows)} rows in section {parent or 'Top level'}"
        words = " ".join(descriptions[key].split()).replace("|", "\\|").replace("``", "`")
        assert words in rows[0], f"{key}: description missing from {rows[0]!r}"


def test_params_reference_shows_types_defaults_and_bounds() -> None:
    page = _hook().render()
    spqe = _sections(page)["spqe"]
    assert "| `permutations` | int (> 1) | `48` |" in spqe
    assert "| `alpha` | float (≥ 0.0, ≤ 1.0) | `0.5` |" in spqe
    assert "| `walks` | 'prefix' \\| 'sii' | `prefix` |" in spqe
    assert "| `source` | str | required |" in _sections(page)["model"]


class _Inner(BaseModel):
    """A nested section."""

    model_config = ConfigDict(extra="forbid")
    described: int = Field(1, description="Has one.")
    bare: int = 2


class _Undocumented(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Root(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: _Inner = _Inner()
    quiet: _Undocumented = _Undocumented()
    top: float = Field(0.5, description="Described.")


def test_a_key_without_description_fails_the_reference() -> None:
    hook = _hook()
    with pytest.raises(hook.MissingDescriptionError, match=r"inner\.bare, quiet\."):
        hook.render(_Root)


def test_the_site_generates_the_reference_from_the_hook() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert [ROOT / h for h in config["hooks"]] == [HOOK]
    assert config["strict"] is True

    def pages(nav: Any) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        items = nav.values() if isinstance(nav, dict) else nav
        return [p for item in items for p in pages(item)]

    listed = pages(config["nav"])
    assert _hook().PAGE in listed
    generated = {_hook().PAGE}
    assert [p for p in listed if p not in generated and not (ROOT / "docs" / p).is_file()] == []


def test_readme_is_a_front_door_whose_links_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200, "README.md is a front door: move detail to docs/"
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local, "the README links into the docs"
    assert [link for link in local if not (ROOT / link).exists()] == []


COPIED_TABLE = re.compile(r"^<!-- copied from (\S+) by the compare stage's output; checked -->$")


@pytest.mark.parametrize(
    "readme",
    ["README.md", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("experiments/**/README.md"))],
)
def test_tables_a_readme_copies_are_the_generated_ones(readme: str) -> None:
    """A results table in a README is a verbatim copy of a generated file (an experiment's
    ``results.md``), never typed: every copied block must appear there line for line."""
    lines = (ROOT / readme).read_text().splitlines()
    for i, line in enumerate(lines):
        if not (match := COPIED_TABLE.match(line)):
            continue
        block = []
        for row in lines[i + 1 :]:
            if not row.strip():
                break
            block.append(row)
        source = (ROOT / readme).parent / match.group(1)
        generated = source.read_text().splitlines()
        assert block, f"{readme}: an empty copy of {match.group(1)}"
        starts = [j for j, row in enumerate(generated) if row == block[0]]
        assert any(generated[j : j + len(block)] == block for j in starts), (
            f"{readme}: the table after line {i + 1} is not a copy of {source}: copy it again"
        )
