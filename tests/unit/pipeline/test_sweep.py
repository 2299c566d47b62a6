"""The baselines and sweep stages end to end on a tiny saved model (CPU, seconds)."""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from impq.artifacts import fingerprint, read_tensors, write_tensors
from impq.assignment import Assignment
from impq.backends import get_backend
from impq.backends.base import OverBudgetError
from impq.config import Params
from impq.models import block_linears
from impq.models.tiny import tiny_model
from impq.pipeline import assembled, baselines, paths, sweep
from impq.pipeline.assign import assignment_path
from impq.pipeline.params import parse_params
from impq.pipeline.prepare import calibration_path, eval_tokens_path
from impq.pipeline.stages import (
    CALIBRATED_CELL_PARAMS,
    CELL_PARAMS,
    DATABASE_CELL_PARAMS,
    STAGES,
)

METHODS = ["uniform", "random", "lim"]
BUDGETS = [2.5, 3.0]


def _setup(
    tmp_path: Path, *, poison: bool = False, assignments: bool = True, **eval_overrides: Any
) -> Params:
    model = tiny_model("llama", num_layers=4)
    if poison:  # a float part that overflows: every perplexity is NaN
        with torch.no_grad():
            model.lm_head.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "model")
    params = parse_params(
        {
            "model": {"source": str(tmp_path / "model"), "device": "cpu"},
            "eval": {
                "seqlen": 32,
                "batch_size": 4,
                "max_windows": 4,
                "methods": METHODS,
                **eval_overrides,
            },
            "backends": {"names": ["quanto", "hqq"], "group_size": 32},
            "budgets": BUDGETS,
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    ids = torch.randint(0, 256, (1024,), generator=torch.Generator().manual_seed(0))
    write_tensors(eval_tokens_path(params), {"input_ids": ids}, {"fingerprint": fingerprint(ids)})
    write_tensors(calibration_path(params), {"input_ids": ids[:256].view(8, 32)}, {})
    if assignments:
        baselines.run(params)
    return params


def test_baselines_stage_writes_every_method_and_budget_within_budget(tmp_path: Path) -> None:
    params = _setup(tmp_path)
    written = set(baselines.output_dir(params).rglob("*"))
    expected = {baselines.baseline_path(params, b, m) for m in METHODS for b in BUDGETS}
    assert {p for p in written if p.is_file()} == expected  # one folder, nothing else
    for method in METHODS:
        for budget in BUDGETS:
            a = Assignment.load(baselines.baseline_path(params, budget, method))
            assert a.method == method and a.budget_bits == budget
            assert a.stored_bytes <= a.extra["budget_bytes"]
            assert a.avg_bits <= budget
    with pytest.raises(ValueError, match="unknown"):
        baselines.baseline_methods(
            params.model_copy(update={"eval": params.eval.model_copy(update={"methods": ["hawq"]})})
        )


def test_sweep_table_plots_sizes_and_resume(tmp_path: Path) -> None:
    params = _setup(tmp_path)
    rows, reference, written = sweep.run(params)

    assert len(rows) == 2 * len(METHODS) * len(BUDGETS)
    assert reference["ppl_finite"]
    for row in rows:
        assert row["ppl_finite"] and row["ppl"] > 1
        assert row["stored_bytes"] == row["expected_bytes"]  # the backend's own footprint
    uniform = {r["budget"]: r for r in rows if r["backend"] == "hqq" and r["method"] == "uniform"}
    assert uniform[3.0]["reused_from"] == "uniform-2.5"
    assert uniform[3.0]["ppl"] == uniform[2.5]["ppl"]

    json_path, csv_path = sweep.table_paths(params)
    flat = json.loads(json_path.read_text())
    assert flat["combinations"] == len(rows) and flat["non_finite"] == 0
    assert flat["quanto/lim/3.0/ppl"] == next(
        r["ppl"]
        for r in rows
        if r["backend"] == "quanto" and r["method"] == "lim" and r["budget"] == 3.0
    )
    with csv_path.open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and set(table[0]) == set(sweep.CSV_COLUMNS)
    for path in sweep.plot_paths(params).values():
        assert path.parent == sweep.plot_dir(params)
        assert path in written and path.read_bytes()[:4] == b"\x89PNG"
    for backend in ("quanto", "hqq"):  # the block cache: each (block, bits) quantized once
        mine = [r for r in rows if r["backend"] == backend]
        assert sum(r["blocks_quantized"] for r in mine) == len(
            {(i, b) for r in mine for i, b in enumerate(r["bits"].split(","))}
        )

    stamps = {p: p.stat().st_mtime_ns for p in Path(params.paths.metrics, "sweep").rglob("*.json")}
    again, _, _ = sweep.run(params)
    assert again == rows
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}  # nothing recomputed
    # fewer cells, and a knob no cell depends on: the cells left are all kept
    fewer = _with(_with(params, "budgets", [2.5]), "eval.batch_size", 1)
    sweep.run(_with(fewer, "eval.methods", ["lim"]))
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}

    # a re-solve that picks the same bits (other timings in its file) keeps the cells;
    # other bits recompute that method's cells only
    source = sweep.assignment_input_path(params, "lim", 3.0)
    lim = Assignment.load(source)
    replace(lim, extra={**lim.extra, "solve_seconds": 123.0}).save(source)
    sweep.run(params)
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    lowered = min(i for i, b in lim.bits.items() if b == 4)  # 4 -> 2 bits stays in budget
    replace(lim, bits={**lim.bits, lowered: 2}).save(source)
    sweep.run(params)
    changed = {p for p in stamps if p.stat().st_mtime_ns != stamps[p]}
    assert changed == {
        sweep.metrics_path(params, sweep.Combination(b, "lim", 3.0)) for b in ("quanto", "hqq")
    }


@pytest.mark.parametrize("backend", ["quanto", "hqq"])
def test_blocks_from_the_cache_equal_direct_quantization(tmp_path: Path, backend: str) -> None:
    params = _setup(tmp_path)
    bits = {0: 2, 1: 4, 2: 4, 3: 2}
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    cache = sweep.BlockCache(params)
    sweep.quantize_one(params, backend, {0: 4, 1: 2}, cache=cache)  # fills part of the cache
    cached, facts_cached = sweep.quantize_one(params, backend, bits, cache=cache)
    direct, facts_direct = sweep.quantize_one(params, backend, bits)
    assert facts_cached["stored_bytes"] == facts_direct["stored_bytes"]
    assert torch.equal(cached(ids).logits, direct(ids).logits)


def test_block_cache_shared_between_threads_quantizes_each_block_once(tmp_path: Path) -> None:
    params = _setup(tmp_path)
    assignments = [{0: 2, 1: 4, 2: 4, 3: 2}, {0: 4, 1: 2, 2: 4, 3: 2}, {0: 2, 1: 2, 2: 2, 3: 4}]
    cache = sweep.BlockCache(params)
    with ThreadPoolExecutor(max_workers=3) as pool:
        models = list(
            pool.map(
                lambda bits: sweep.quantize_one(params, "quanto", bits, cache=cache), assignments
            )
        )
    assert cache.quantized == len({(i, b) for bits in assignments for i, b in bits.items()})
    assert sum(facts["blocks_quantized"] for _, facts in models) == cache.quantized
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    for bits, (model, _) in zip(assignments, models, strict=True):
        direct, _ = sweep.quantize_one(params, "quanto", bits)
        assert torch.equal(model(ids).logits, direct(ids).logits)


def test_non_finite_perplexity_is_recorded_not_dropped(tmp_path: Path) -> None:
    params = _setup(tmp_path, poison=True, methods=["uniform"])
    rows, reference, written = sweep.run(params)
    assert len(rows) == 2 * len(BUDGETS)
    assert all(r["ppl"] is None and r["ppl_status"] == "nan" and not r["ppl_finite"] for r in rows)
    assert reference["ppl"] is None
    flat = json.loads(sweep.table_paths(params)[0].read_text())
    assert flat["non_finite"] == len(rows) and flat["quanto/uniform/2.5/ppl_status"] == "nan"
    assert "NAN" in sweep.format_table(rows, reference)
    assert all(p.is_file() for p in written)


def test_sweep_reads_objective_methods_from_the_assign_stage(tmp_path: Path) -> None:
    params = _setup(tmp_path, methods=["impq", "surrogate", "uniform"])
    for method in ("impq", "surrogate"):
        for budget in BUDGETS:
            a = Assignment.load(baselines.baseline_path(params, 2.5, "uniform"))
            path = assignment_path(params, budget, method)
            replace(a, method=method, budget_bits=budget).save(path)
            assert sweep.assignment_input_path(params, method, budget) == path
    assert sweep.assignment_input_path(params, "uniform", 3.0) == baselines.baseline_path(
        params, 3.0, "uniform"
    )
    rows, _, _ = sweep.run(params)
    assert {(r["method"], r["budget"]) for r in rows} == {
        (m, b) for m in ("impq", "surrogate", "uniform") for b in BUDGETS
    }


def test_uniform_rows_at_fixed_bits_and_the_best_that_fits(tmp_path: Path) -> None:
    params = _setup(tmp_path, methods=["uniform-4", "uniform-2", "uniform-fit"])
    over = Assignment.load(baselines.baseline_path(params, 2.5, "uniform-4"))
    assert set(over.bits.values()) == {4} and over.extra["over_budget"]
    assert over.stored_bytes > over.extra["budget_bytes"]
    fit = Assignment.load(baselines.baseline_path(params, 2.5, "uniform-fit"))
    assert set(fit.bits.values()) == {2} and "over_budget" not in fit.extra
    rows, _, _ = sweep.run(
        params.model_copy(
            update={"backends": params.backends.model_copy(update={"names": ["quanto"]})}
        )
    )
    by = {(r["method"], r["budget"]): r for r in rows}
    assert len(rows) == 3 * len(BUDGETS)  # every uniform row at every budget
    assert by["uniform-4", 2.5]["stored_bytes"] == by["uniform-4", 3.0]["stored_bytes"]
    assert by["uniform-4", 2.5]["stored_bytes"] > by["uniform-fit", 2.5]["stored_bytes"]
    assert by["uniform-fit", 3.0]["bits"] == by["uniform-2", 3.0]["bits"]


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every float-model load of the sweep module."""
    loads: list[str] = []
    real = sweep.cells.load_model

    def counted(cfg: Any) -> torch.nn.Module:
        loads.append(cfg.source)
        return real(cfg)

    for module in (sweep.cache, sweep.cells):
        monkeypatch.setattr(module, "load_model", counted)
    return loads


def test_a_sweep_loads_the_float_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _setup(tmp_path)
    loads = _count_loads(monkeypatch)
    rows, reference, _ = sweep.run(params)
    assert len(rows) == 2 * len(METHODS) * len(BUDGETS) and reference["ppl_finite"]
    assert len(loads) == 1


def test_cells_leave_the_float_model_unchanged(tmp_path: Path) -> None:
    params = _setup(tmp_path)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    float_model = sweep.FloatModel(params.model)
    before = float_model.model(ids).logits
    cache = sweep.BlockCache(params, float_model)
    models = [
        sweep.quantize_one(params, backend, {0: 2, 1: 4, 2: 2, 3: 4}, cache=cache)[0]
        for backend in ("quanto", "hqq")
    ]
    assert all(type(m) is torch.nn.Linear for m in block_linears(float_model.model, 0).values())
    assert torch.equal(float_model.model(ids).logits, before)
    assert not torch.equal(models[0](ids).logits, before)
    assert float_model.loads == 1


def test_a_backend_that_needs_calibration_quantizes_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stand-in for gptq (not data-free: no shared blocks): quanto that changes the model
    it is given in place and claims to need calibration."""
    params = _setup(tmp_path)
    quanto = sweep.cells.get_backend("quanto")
    seen: list[torch.Tensor | None] = []

    class Calibrated:
        name, data_free = "calibrated", False

        def quantize(self, model: Any, bits: Any, group: int, calibration: Any) -> Any:
            seen.append(calibration)
            return quanto.quantize(model, bits, group)

        def stored_bytes(self, model: Any) -> int:
            return quanto.stored_bytes(model)

        def footprint(self, model: Any) -> Any:
            return quanto.footprint(model)

    monkeypatch.setattr(sweep.cells, "get_backend", lambda name: Calibrated())
    loads = _count_loads(monkeypatch)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    cache = sweep.BlockCache(params)
    bits = {0: 2, 1: 4, 2: 2, 3: 4}
    before = cache.float_model.model(ids).logits
    first, facts = sweep.quantize_one(params, "calibrated", bits, cache=cache)
    second, _ = sweep.quantize_one(params, "calibrated", bits, cache=cache)
    assert len(loads) == 1 and facts["blocks_quantized"] == 4
    assert all(c is not None and c.shape == (8, 32) for c in seen)
    assert torch.equal(cache.float_model.model(ids).logits, before)
    assert torch.equal(first(ids).logits, second(ids).logits)
    assert not torch.equal(first(ids).logits, before)


@pytest.mark.slow
@pytest.mark.gptq
def test_gptq_cells_share_one_float_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = _setup(tmp_path)
    loads = _count_loads(monkeypatch)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    cache = sweep.BlockCache(params)
    before = cache.float_model.model(ids).logits
    models = [
        sweep.quantize_one(params, "gptq", bits, cache=cache)[0]
        for bits in ({0: 2, 1: 4, 2: 4, 3: 4}, {0: 4, 1: 4, 2: 4, 3: 2})
    ]
    assert len(loads) == 1
    assert torch.equal(cache.float_model.model(ids).logits, before)
    assert all(torch.isfinite(m(ids).logits).all() for m in models)


@pytest.mark.slow
@pytest.mark.gptq
def test_gptq_cells_from_blocks_quantize_each_block_once_per_precision(tmp_path: Path) -> None:
    sequential = _setup(tmp_path)
    params = sequential.model_copy(
        update={"backends": sequential.backends.model_copy(update={"calibrated_cells": "blocks"})}
    )
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    cache = sweep.BlockCache(params)
    before = cache.float_model.model(ids).logits
    cells = [
        sweep.quantize_one(params, "gptq", bits, cache=cache)
        for bits in ({0: 2, 1: 4, 2: 4, 3: 4}, {0: 4, 1: 2, 2: 2, 3: 2}, {0: 2, 1: 2, 2: 4, 3: 4})
    ]
    assert [facts["blocks_quantized"] for _, facts in cells] == [8, 0, 0]  # 4 blocks x 2 bits
    assert torch.equal(cache.float_model.model(ids).logits, before)
    shipped, facts = sweep.quantize_one(sequential, "gptq", {0: 2, 1: 4, 2: 4, 3: 4})
    assert cells[0][1]["stored_bytes"] == facts["stored_bytes"]
    assert all(torch.isfinite(m(ids).logits).all() for m, _ in cells)
    assert not torch.equal(cells[0][0](ids).logits, shipped(ids).logits)  # other inputs

    keys = {sweep.input_fingerprint(p, "tokens", ("gptq", {0: 2})) for p in (params, sequential)}
    assert len(keys) == 2  # a cell measured one way is not reused for the other


def test_a_calibrated_cell_is_keyed_on_the_calibration_ids_not_the_file(tmp_path: Path) -> None:
    params = _setup(tmp_path, assignments=False)

    def key() -> str:
        return sweep.input_fingerprint(params, "tokens", ("gptq", {0: 2}))

    ids = read_tensors(calibration_path(params))[0]["input_ids"]
    first = key()
    write_tensors(calibration_path(params), {"input_ids": ids}, {"model": "elsewhere"})
    assert key() == first  # the same ids with other metadata: cells are reused
    write_tensors(calibration_path(params), {"input_ids": ids.flip(0)}, {})
    assert key() != first


def _with(params: Params, key: str, value: Any) -> Params:
    """``params`` with the dotted ``key`` set to ``value`` (a section: updated by a dict)."""
    section, _, name = key.partition(".")
    if name:
        value = getattr(params, section).model_copy(update={name: value})
    elif isinstance(value, dict):
        value = getattr(params, section).model_copy(update=value)
    return params.model_copy(update={section: value})


CELL_CHANGES: dict[str, Any] = {
    "model": {"dtype": "bfloat16"},
    "backends.group_size": 16,
    "eval.seqlen": 16,
    "eval.max_windows": 2,
}
"""A change of each of ``CELL_PARAMS``: every measurement depends on it."""

CALIBRATED_CHANGES: dict[str, Any] = {"backends.calibrated_cells": "blocks"}
"""A change of each of ``CALIBRATED_CELL_PARAMS``: a calibrated backend's cells depend on it."""

DATABASE_CHANGES: dict[str, Any] = {
    "spqe.ladder": [4, 3, 2],
    "spqe.calibration_bits": 4,
    "spqe.n_samples": 4,
}
"""A change of each of ``DATABASE_CELL_PARAMS``: only cells assembled from the game's
database (``backends.calibrated_cells: database``) depend on it."""

OTHER_CHANGES: dict[str, Any] = {
    "budgets": [2.5],
    "backends.names": ["gptq"],
    "eval.methods": ["lim"],
    "solver.precisions": [2, 3, 4],
    "eval.batch_size": 1,  # how many windows run at once, not which
    "eval.add_bos": True,  # reaches a cell through the tokens' fingerprint
    "paths.plots": "elsewhere",
}
"""Changes no measurement depends on."""


def test_a_measurement_is_stale_exactly_when_what_it_depends_on_changes(tmp_path: Path) -> None:
    params = _setup(tmp_path, assignments=False)
    assert set(CELL_CHANGES) == set(CELL_PARAMS)
    assert set(CALIBRATED_CHANGES) == set(CALIBRATED_CELL_PARAMS)
    assert set(DATABASE_CHANGES) == set(DATABASE_CELL_PARAMS)
    # the sweep stage declares the cells' params; what else it declares changes no cell
    cell_params = {*CELL_PARAMS, *CALIBRATED_CELL_PARAMS, *DATABASE_CELL_PARAMS}
    declared = set(STAGES["sweep"].params)
    assert declared >= cell_params
    assert declared - cell_params <= set(OTHER_CHANGES)
    bits = {0: 2, 1: 4}
    cells = (None, ("quanto", bits), ("gptq", bits))  # float, data-free, calibrated

    def keys(p: Params, tokens: str = "tokens") -> list[str]:
        return [sweep.input_fingerprint(p, tokens, cell) for cell in cells]

    base = keys(params)
    assert len(set(base)) == 3
    for key, value in CELL_CHANGES.items():
        changed = keys(_with(params, key, value))
        assert all(a != b for a, b in zip(base, changed, strict=True)), key
    for key, value in CALIBRATED_CHANGES.items():
        changed = keys(_with(params, key, value))
        assert changed[:2] == base[:2] and changed[2] != base[2], key
    for key, value in {**OTHER_CHANGES, **DATABASE_CHANGES}.items():  # no database cell
        assert keys(_with(params, key, value)) == base, key
    assert all(a != b for a, b in zip(base, keys(params, "other tokens"), strict=True))
    other_bits = [
        sweep.input_fingerprint(params, "tokens", (b, {0: 4, 1: 4})) for b in ("quanto", "gptq")
    ]
    assert set(other_bits).isdisjoint(base)
    write_tensors(calibration_path(params), {"input_ids": torch.zeros(8, 32, dtype=torch.long)}, {})
    changed = keys(params)
    assert changed[:2] == base[:2] and changed[2] != base[2]


def test_a_database_cell_is_stale_when_the_database_would_change(tmp_path: Path) -> None:
    """``backends.calibrated_cells: database``: a gptq cell also depends on what the game's
    database is built with; a data-free cell and the float reference do not."""
    params = _setup(tmp_path, assignments=False)
    database = _with(params, "backends.calibrated_cells", "database")
    cells = (None, ("quanto", {0: 2, 1: 4}), ("gptq", {0: 2, 1: 4}))

    def keys(p: Params) -> list[str]:
        return [sweep.input_fingerprint(p, "tokens", cell) for cell in cells]

    base, sequential = keys(database), keys(params)
    assert base[:2] == sequential[:2] and base[2] != sequential[2]
    for key, value in DATABASE_CHANGES.items():
        changed = keys(_with(database, key, value))
        assert changed[:2] == base[:2] and changed[2] != base[2], key
    for key, value in {**CELL_CHANGES, **CALIBRATED_CHANGES}.items():
        assert keys(_with(database, key, value))[2] != base[2], key
    for key, value in OTHER_CHANGES.items():
        assert keys(_with(database, key, value)) == base, key
    write_tensors(calibration_path(params), {"input_ids": torch.zeros(8, 32, dtype=torch.long)}, {})
    assert keys(database)[2] != base[2]


def test_sweep_fails_loudly_when_a_model_exceeds_its_budget() -> None:
    params = parse_params({"model": {"source": "x"}, "backends": {"group_size": 32}})
    bits = dict.fromkeys(range(4), 4)
    model = get_backend("hqq").quantize(tiny_model("llama", num_layers=4), bits, 32)
    stored = get_backend("hqq").stored_bytes(model)
    a = Assignment(bits, "lim", 3.0, stored_bytes=0, avg_bits=4.0, extra={"precisions": [2, 4]})
    with pytest.raises(OverBudgetError, match="'hqq' stores"):
        sweep.check_budget(params, "hqq", a, model, stored)
    sweep.check_budget(params, "hqq", replace(a, budget_bits=4.0), model, stored)  # fits


def test_the_assembled_stage_measures_nothing_on_a_data_free_game(tmp_path: Path) -> None:
    """HQQ's and Quanto's game blocks are the blocks that ship: no cell to pair, and a
    table that says so."""
    params = _setup(tmp_path, assignments=False)
    results = params.paths.model_copy(update={"results": str(tmp_path / "results")})
    params = params.model_copy(update={"paths": results})
    assert params.spqe.backend in params.backends.names
    table, metrics = assembled.run(params)
    assert json.loads(metrics.read_text()) == {"cells": 0}
    game = params.spqe.backend
    assert table.read_text() == f"No cell: the game plays on {game} blocks, the ones that ship.\n"
    assert list(paths.assembled_cells_dir(params).iterdir()) == []  # DVC's output, empty
