"""The stage declarations: dvc.yaml, the CLI and the cache keys all follow them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.cli import _parser
from impq.config import Params
from impq.pipeline import paths
from impq.pipeline.dvc import GENERATED_HEADER, dvc_yaml
from impq.pipeline.params import load_params, parse_params
from impq.pipeline.spqe import SAMPLING_EXCLUDES
from impq.pipeline.stages import SAMPLING_KEYS, STAGES, cache_key, params_subset

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def repo_params(monkeypatch: pytest.MonkeyPatch) -> Params:
    monkeypatch.chdir(REPO)
    return load_params("params.yaml")


def test_dvc_yaml_matches_the_declarations(repo_params: Params) -> None:
    committed = yaml.safe_load((REPO / "dvc.yaml").read_text())
    generated = dvc_yaml(repo_params)
    for name in generated["stages"]:
        assert committed["stages"].get(name) == generated["stages"][name], (
            f"dvc.yaml's stage {name!r} disagrees with impq/pipeline/stages.py: "
            "run `python -m flows dvc-yaml --out dvc.yaml`"
        )
    assert committed == generated


def test_a_declaration_change_shows_as_a_disagreement(repo_params: Params) -> None:
    committed = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stage = committed["stages"]["assign"]
    stage["deps"].remove("impq/footprint.py")
    assert committed != dvc_yaml(repo_params)


def test_the_deps_the_issue_found_missing_are_declared(repo_params: Params) -> None:
    stages = dvc_yaml(repo_params)["stages"]
    assert "model.gguf_file" in stages["prepare"]["params"]
    assert "impq/models" in stages["spqe"]["deps"]
    assert "impq/models" in stages["sweep"]["deps"]
    assert "impq/footprint.py" in stages["assign"]["deps"]
    # verify reads the impq objective, not only the Shapley values
    assert str(paths.objectives_dir(repo_params)) in stages["verify"]["deps"]


def test_declared_code_keys_and_inputs_exist(repo_params: Params) -> None:
    written: set[Path] = set()
    for stage in STAGES.values():
        for code in (*stage.code, stage.flow_file):
            assert (REPO / code).exists(), f"{stage.name}: {code} does not exist"
        params_subset(repo_params, *stage.params)  # KeyError on an unknown key
        for path in stage.inputs(repo_params):
            produced = any(path == w or w in path.parents for w in written)
            local = path.is_relative_to(repo_params.model.source)
            assert produced or local, f"{stage.name} reads {path}, which no earlier stage writes"
        written |= set(stage.out_paths(repo_params))


def test_sampling_keys_are_spqe_without_its_excludes() -> None:
    fields = {f"spqe.{k}" for k in Params.model_fields["spqe"].annotation.model_fields}  # type: ignore[union-attr]
    assert set(SAMPLING_KEYS) == fields - {f"spqe.{k}" for k in SAMPLING_EXCLUDES}


def test_cache_key_follows_the_declared_params_and_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = {"model": {"source": "org/model"}}
    params = parse_params(base)
    alpha = parse_params({**base, "spqe": {"alpha": 0.25}})
    seed = parse_params({**base, "spqe": {"seed": 1}})
    spqe, interactions = STAGES["spqe"], STAGES["interactions"]
    assert cache_key(spqe, params) == cache_key(spqe, alpha)  # an assembly option
    assert cache_key(spqe, params) != cache_key(spqe, seed)
    assert cache_key(interactions, params) != cache_key(interactions, alpha)

    before = cache_key(interactions, params)
    paths.samples_path(params).parent.mkdir(parents=True)
    paths.samples_path(params).write_bytes(b"walks")
    assert cache_key(interactions, params) != before


def test_cli_has_one_subcommand_per_stage() -> None:
    parser = _parser()
    for name in STAGES:
        assert parser.parse_args([name]).stage == name
    assert parser.parse_args(["assign", "--budget", "3.0"]).budget == 3.0
    assert parser.parse_args(["dvc-yaml", "--out", "x.yaml"]).out == "x.yaml"


def test_assign_units_cover_methods_and_budgets() -> None:
    params = parse_params({"model": {"source": "org/model"}, "budgets": [2.5, 3.0]})
    units = STAGES["assign"].units(params, {})
    assert {(u["method"], u["budget"]) for u in units} == {
        (m, b) for m in ("impq", "surrogate") for b in (2.5, 3.0)
    }
    assert STAGES["assign"].units(params, {"budget": 3.0}) == [
        {"method": "impq", "budget": 3.0},
        {"method": "surrogate", "budget": 3.0},
    ]


def test_an_experiment_folder_gets_its_own_dvc_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    params_path = "experiments/smollm2/params.yaml"
    raw = yaml.safe_load((REPO / params_path).read_text())
    params = parse_params(raw)
    doc = dvc_yaml(params, params_path, "experiments/smollm2/dvc.yaml")
    prepare = doc["stages"]["prepare"]
    assert prepare["wdir"] == "../.."
    assert prepare["cmd"] == f"python -m flows prepare --params {params_path}"
    assert prepare["params"] == [{params_path: list(STAGES["prepare"].params)}]
    assert "experiments/smollm2/artifacts/data/calibration.safetensors" in prepare["outs"]
    assert "../../experiments/smollm2/metrics/float.json" in doc["metrics"]


GENERATED_EXPERIMENTS = sorted(
    str(p.parent.relative_to(REPO / "experiments"))
    for p in [*REPO.glob("experiments/*/dvc.yaml"), *REPO.glob("experiments/*/*/dvc.yaml")]
    if p.read_text().startswith(GENERATED_HEADER.splitlines()[0])
)


@pytest.mark.parametrize("folder", GENERATED_EXPERIMENTS)
def test_committed_experiment_pipelines_match_the_declarations(
    folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An experiment's dvc.yaml is generated too; its model's files (fetched, not committed,
    so absent on a fresh clone) are the one difference allowed."""
    monkeypatch.chdir(REPO)
    params_path = f"experiments/{folder}/params.yaml"
    params = parse_params(yaml.safe_load((REPO / params_path).read_text()))  # model not fetched
    out = f"experiments/{folder}/dvc.yaml"
    model = Path(params.model.source)

    def without_model(doc: dict) -> dict:
        for stage in doc["stages"].values():
            stage["deps"] = [d for d in stage["deps"] if model not in (Path(d), *Path(d).parents)]
        return doc

    committed = without_model(yaml.safe_load((REPO / out).read_text()))
    assert committed == without_model(dvc_yaml(params, params_path, out)), (
        f"{out} disagrees with impq/pipeline/stages.py: run "
        f"`python -m flows dvc-yaml --params {params_path} --out {out}`"
    )
