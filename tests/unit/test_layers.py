"""The import direction the layers contract (``lint-imports``, pyproject.toml) holds, for
the two rules that must hold whatever modules are added: the params schema imports
nothing of impq, and impq never imports flows or Prefect (function-level imports count)."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("impq", "flows", include_external_packages=True, cache_dir=None)


def test_the_schema_imports_no_other_impq_module(graph: grimp.ImportGraph) -> None:
    imported = graph.find_modules_directly_imported_by("impq.config")
    assert not sorted(m for m in imported if m.split(".")[0] in {"impq", "flows"})


@pytest.mark.parametrize("upper", ["flows", "prefect"])
def test_impq_never_imports_flows_or_prefect(graph: grimp.ImportGraph, upper: str) -> None:
    chain = graph.find_shortest_chain(importer="impq", imported=upper, as_packages=True)
    assert chain is None, " -> ".join(chain or ())


def test_the_graph_sees_function_level_imports(graph: grimp.ImportGraph) -> None:
    # impq.pipeline.params imports the registries inside its functions only
    assert "impq.solve.base" in graph.find_modules_directly_imported_by("impq.pipeline.params")
