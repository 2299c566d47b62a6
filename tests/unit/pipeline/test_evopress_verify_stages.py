"""The evopress and verify stages in-process on a tiny saved model, after spqe, assign and
baselines (CPU, seconds)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from impq.artifacts import read_json, write_tensors
from impq.assignment import Assignment
from impq.config import Params
from impq.game import ModelGame, weight_quantizer
from impq.models import load_model
from impq.models.tiny import tiny_model
from impq.pipeline import assign, baselines, evopress, interactions, methods, seeded, spqe, verify
from impq.pipeline.params import parse_params
from impq.pipeline.prepare import calibration_path
from impq.search import SearchState

METHODS = ["impq", "lim", "random-0", "random-1", "evopress", "verified"]
BUDGETS = [2.5, 3.0]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(root: Path, **over: object) -> Params:
    doc: dict = {
        "model": {"source": str(root / "model"), "device": "cpu"},
        "data": {"calibration": {"n_samples": 6, "seqlen": 24}},
        "spqe": {"permutations": 4, "group_size": 16, "n_samples": 3},
        "solver": {"num_reads": 4, "num_sweeps": 100},
        "backends": {"group_size": 16},
        "budgets": BUDGETS,
        "eval": {"methods": METHODS},
        "evopress": {"offspring": 4, "initial": 4, "survivors": [2, 1], "sequences": [1, None]},
        "paths": {k: str(root / k) for k in ("artifacts", "metrics", "plots")},
    }
    for key, value in over.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_params(doc)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """spqe, interactions, assign and baselines done; evopress and verify run once."""
    root = tmp_path_factory.mktemp("project")
    tiny_model("llama", num_layers=6, seed=4).save_pretrained(root / "model")
    params = _params(root)
    ids = torch.randint(0, 256, (6, 24), generator=torch.Generator().manual_seed(1))
    write_tensors(calibration_path(params), {"input_ids": ids}, {})
    spqe.run(params, progress=False)
    interactions.run(params)
    assign.run(params)
    baselines.run(params)
    evopress.run(params)
    verify.run(params)
    return params


def test_evopress_spends_spqes_evaluation_count_within_the_byte_budget(project: Params) -> None:
    spent = evopress.spqe_evaluations(project)
    assert spent == 2 + 4 * 5  # 2 + M (L - 1)
    metrics = read_json(evopress.metrics_path(project))
    assert metrics["spqe_evaluations"] == spent and metrics["budgets_searched"] == 2
    assert metrics["tokens_per_full_evaluation"] == 3 * 23
    for budget in BUDGETS:
        a = Assignment.load(evopress.assignment_path(project, budget))
        assert a.method == "evopress" and a.budget_bits == budget
        assert a.stored_bytes <= a.extra["budget_bytes"] and set(a.bits.values()) <= {2, 4}
        # at most SPQE's count (fewer when six blocks run out of new neighbours)
        assert 0 < a.extra["evaluations"] <= a.extra["max_evaluations"] == spent
        assert sum(a.extra["evaluations_per_stage"]) == a.extra["evaluations"]
        first, last = a.extra["evaluations_per_stage"]
        assert a.extra["tokens"] == 23 * first + 69 * last
        assert metrics[f"{budget}/evaluations"] == a.extra["evaluations"]


def test_evopress_cap_and_a_method_left_out(project: Params, tmp_path: Path) -> None:
    capped = project.model_copy(
        update={
            "evopress": project.evopress.model_copy(update={"max_evaluations": 9}),
            "paths": project.paths.model_copy(
                update={"metrics": str(tmp_path / "m"), "artifacts": project.paths.artifacts}
            ),
        }
    )
    assert evopress.search_budget(capped) == 9
    off = project.model_copy(
        update={
            "eval": project.eval.model_copy(update={"methods": ["impq"]}),
            "paths": project.paths.model_copy(
                update={"artifacts": str(tmp_path / "a"), "metrics": str(tmp_path / "m")}
            ),
        }
    )
    assert evopress.run(off) == [evopress.metrics_path(off)]
    assert list(evopress.output_dir(off).iterdir()) == []
    assert read_json(evopress.metrics_path(off)) == {"budgets_searched": 0}
    assert verify.run(off) == [verify.metrics_path(off)]
    assert read_json(verify.metrics_path(off)) == {"budgets_verified": 0}


def test_evopress_keeps_searched_budgets_and_resumes_an_interrupted_search(
    project: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(project.paths.artifacts, artifacts)
    params = project.model_copy(
        update={
            "paths": project.paths.model_copy(
                update={"artifacts": str(artifacts), "metrics": str(tmp_path / "metrics")}
            )
        }
    )
    kept, redo = (evopress.assignment_path(params, b) for b in BUDGETS)
    first = Assignment.load(redo)
    assert first.extra["generations"] >= 2 and not first.extra["resumed"]
    kept_text = kept.read_text()
    redo.unlink()
    search = evopress.evopress
    resumed_from: list[int] = []

    def interrupted(*args: object, on_generation: Callable, **kw: Any) -> Any:
        def save_then_stop(state: SearchState) -> None:
            on_generation(state)
            if state.generations == 1:
                raise KeyboardInterrupt

        return search(*args, on_generation=save_then_stop, **kw)

    monkeypatch.setattr(evopress, "evopress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evopress.run(params)
    assert kept.read_text() == kept_text and not redo.exists()
    checkpoint = evopress.checkpoint_path(params, BUDGETS[1])
    assert checkpoint.is_file()

    def watched(*args: object, resume: SearchState | None, **kw: Any) -> Any:
        resumed_from.append(-1 if resume is None else resume.generations)
        return search(*args, resume=resume, **kw)

    monkeypatch.setattr(evopress, "evopress", watched)
    evopress.run(params)
    assert resumed_from == [1]  # only the interrupted budget, from its checkpoint
    again = Assignment.load(redo)
    assert again.extra["resumed"] and not checkpoint.exists()
    assert again.bits == first.bits and again.extra["history"] == first.extra["history"]
    for key in ("calibration_nll", "evaluations_per_stage", "generations", "search_key"):
        assert again.extra[key] == first.extra[key], key
    metrics = read_json(evopress.metrics_path(params))
    assert metrics[f"{BUDGETS[0]}/evaluations"] == Assignment.load(kept).extra["evaluations"]

    evopress.run(params)  # everything searched before: no search at all
    assert resumed_from == [1]


def test_verified_pick_is_never_worse_than_impq_on_the_held_back_sequences(
    project: Params,
) -> None:
    held_back = verify.held_back_sequences(project)
    calibration = torch.randint(0, 256, (6, 24), generator=torch.Generator().manual_seed(1))
    assert torch.equal(held_back, calibration[3:])  # what SPQE (the first 3) did not use
    metrics = read_json(verify.metrics_path(project))
    model = load_model(project.model)
    quantize = weight_quantizer("quanto", 16)
    with ModelGame(model, held_back, quantize, progress=False) as game:
        for budget in BUDGETS:
            a = Assignment.load(verify.assignment_path(project, budget))
            impq = Assignment.load(assign.assignment_path(project, budget, "impq"))
            low = np.array(
                [[impq.bits[i] == 2 for i in range(6)], [a.bits[i] == 2 for i in range(6)]]
            )
            measured_impq, measured_pick = game(low)
            assert a.extra["reference_held_back_nll"] == pytest.approx(measured_impq, rel=1e-9)
            assert a.extra["held_back_nll"] == pytest.approx(measured_pick, rel=1e-9)
            assert measured_pick <= measured_impq
            assert a.extra["differs"] == (a.bits != impq.bits)
            assert a.extra["evaluations"] <= 2 * 6 and a.stored_bytes <= a.extra["budget_bytes"]
            names = [name for name, _ in a.extra["held_back_values"]]
            assert names[0] == "impq" and a.extra["picked"] in names
            assert not any(n.startswith(methods.SEARCHES) for n in names + a.extra["skipped"])
            assert metrics[f"{budget}/differs"] == int(a.extra["differs"])
    assert metrics["differs"] == sum(metrics[f"{b}/differs"] for b in BUDGETS)
    assert metrics["held_back_sequences"] == 3


def test_verify_keeps_budgets_whose_candidates_are_unchanged(
    project: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(project.paths.artifacts, artifacts)
    paths = project.paths.model_copy(
        update={"artifacts": str(artifacts), "metrics": str(tmp_path / "metrics")}
    )

    def with_methods(names: list[str]) -> Params:
        return project.model_copy(
            update={"paths": paths, "eval": project.eval.model_copy(update={"methods": names})}
        )

    before = {b: verify.assignment_path(project, b).read_text() for b in BUDGETS}
    calls: list[int] = []
    pick = verify.verified_pick

    def counted(game: Any, cands: Any, limit: int) -> Any:
        calls.append(len(cands))
        return pick(game, cands, limit)

    monkeypatch.setattr(verify, "verified_pick", counted)
    searches_added = with_methods([*METHODS, "seeded"])  # a search is no candidate
    verify.run(searches_added)
    assert calls == []
    assert {b: verify.assignment_path(searches_added, b).read_text() for b in BUDGETS} == before
    kept, first = (read_json(verify.metrics_path(p)) for p in (searches_added, project))
    assert "setup_seconds" not in kept  # no game was set up
    assert kept == {k: v for k, v in first.items() if k != "setup_seconds"}

    def named(budget: float, extra: dict[str, Any]) -> list[str]:
        return [n for n, _ in extra["held_back_values"]] + extra["skipped"]

    # random-1 dropped: a budget where it was a candidate of its own is verified again
    firsts = {b: Assignment.load(verify.assignment_path(project, b)).extra for b in BUDGETS}
    had = [b for b in BUDGETS if any(n.startswith("random-1") for n in named(b, firsts[b]))]
    assert had  # else this test checks nothing
    one_less = with_methods([m for m in METHODS if m != "random-1"])
    verify.run(one_less)
    assert len(calls) == len(had)
    for budget in BUDGETS:
        again = Assignment.load(verify.assignment_path(one_less, budget)).extra
        assert not any(n.startswith("random-1") for n in named(budget, again))
        if budget not in had:
            assert verify.assignment_path(one_less, budget).read_text() == before[budget]

    fewer = one_less.model_copy(update={"verify": one_less.verify.model_copy(
        update={"max_evaluations": 1}
    )})  # fmt: skip
    verify.run(fewer)  # a setting of the pick changed: every budget verified anew
    assert len(calls) == len(had) + len(BUDGETS)
    for budget in BUDGETS:
        assert Assignment.load(verify.assignment_path(fewer, budget)).extra["evaluations"] == 1


def test_verify_needs_held_back_sequences_and_impq(project: Params) -> None:
    every = project.model_copy(update={"spqe": project.spqe.model_copy(update={"n_samples": None})})
    with pytest.raises(ValueError, match="SPQE did not use"):
        verify.held_back_sequences(every)
    no_impq = project.model_copy(
        update={"eval": project.eval.model_copy(update={"methods": ["lim", "verified"]})}
    )
    with pytest.raises(ValueError, match="add 'impq'"):
        verify.run(no_impq)


def test_every_method_resolves_to_its_stages_file(project: Params) -> None:
    for budget in BUDGETS:
        paths = {m: methods.assignment_input_path(project, m, budget) for m in METHODS}
        assert paths["impq"] == assign.assignment_path(project, budget, "impq")
        assert paths["evopress"] == evopress.assignment_path(project, budget)
        assert paths["verified"] == verify.assignment_path(project, budget)
        assert paths["random-1"] == baselines.baseline_path(project, budget, "random-1")
        assert all(p.is_file() for p in paths.values())
    seeds = {
        Assignment.load(baselines.baseline_path(project, 3.0, m)).extra["seed"]
        for m in ("random-0", "random-1")
    }
    assert seeds == {0, 1}
    with pytest.raises(ValueError, match="unknown"):
        methods.assignment_input_path(project, "hawq", 3.0)
    with pytest.raises(ValueError, match=r"unknown \['lim-2'\]"):
        baselines.baseline_methods(
            project.model_copy(
                update={"eval": project.eval.model_copy(update={"methods": ["lim-2"]})}
            )
        )


def test_evopress_refuses_precisions_off_the_games_ladder(tmp_path: Path) -> None:
    params = _params(tmp_path)  # no backend here stores 3 bits yet: past the params check
    params = params.model_copy(
        update={"solver": params.solver.model_copy(update={"precisions": [2, 3, 4]})}
    )
    with pytest.raises(ValueError, match=r"spqe\.ladder \[4, 2\].*\[3\] off it"):
        evopress.run(params)


def test_seeded_starts_from_impqs_candidates_within_its_budget(
    project: Params, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(project.paths.artifacts, artifacts)
    section = {
        "max_evaluations": 14, "offspring": 4, "survivors": [2, 1], "sequences": [1, None],
        "final": 2,
    }  # fmt: skip
    params = project.model_copy(
        update={
            "eval": project.eval.model_copy(update={"methods": [*METHODS, "seeded"]}),
            "seeded": type(project.seeded)(**section),
            "paths": project.paths.model_copy(
                update={"artifacts": str(artifacts), "metrics": str(tmp_path / "metrics")}
            ),
        }
    )
    assert seeded.start_methods(params) == ["impq", "verified"]
    verify.run(params)  # the verified pick does not read the seeded search, which runs after
    seeded.run(params)
    metrics = read_json(seeded.metrics_path(params))
    for budget in BUDGETS:
        path = seeded.assignment_path(params, budget)
        assert methods.assignment_input_path(params, "seeded", budget) == path
        a = Assignment.load(path)
        assert a.method == "seeded" and a.stored_bytes <= a.extra["budget_bytes"]
        assert 0 < a.extra["evaluations"] <= 14 and a.extra["started_from"] in ("impq", "verified")
        assert a.extra["picked"] in ("seeded", "seeded#2")
        assert metrics[f"{budget}/evaluations"] == a.extra["evaluations"]
        # elitist from its best start: never worse on calibration than where it began
        assert a.extra["history"] == sorted(a.extra["history"], reverse=True)
    stamps = {p: p.stat().st_mtime_ns for p in seeded.output_dir(params).iterdir()}
    seeded.run(params)  # searched before with the same inputs: kept
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    with pytest.raises(ValueError, match="starts from impq's candidates"):
        seeded.start_methods(
            params.model_copy(update={"eval": params.eval.model_copy(update={"methods": ["lim"]})})
        )
