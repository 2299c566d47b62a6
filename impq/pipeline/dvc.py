"""``dvc.yaml`` from the stage declarations (:data:`impq.pipeline.stages.STAGES`).

``python -m flows dvc-yaml [--params P] [--out F]`` writes it; the committed ``dvc.yaml``
is this module's output for ``params.yaml``, and ``tests/unit/pipeline/test_stages.py``
fails when it disagrees with the declarations.

In that file the model is a templated dependency, ``${model.source}`` (DVC reads it from
``params.yaml``), so pointing ``model.source`` at another checkpoint, or changing a file
in it, reruns every stage that reads the model without regenerating anything. For a
GGUF the dependency is the folder that holds ``model.gguf_file`` (the file is in it; the
``model.gguf_file`` params dependency tells files of one folder apart); ``prepare``
depends on the whole folder too, for the tokenizer in it (it reruns in seconds, and every
stage that reads its outputs reads the model as well).

A hub id is not a path DVC can hash: with one, ``dvc repro`` stops at the first stage
("failed to reproduce 'prepare': [Errno 2] No such file or directory: '<org/model>'").
Download the checkpoint into a folder and point ``model.source`` at it
(DVC then tracks its files), or regenerate ``dvc.yaml`` for the hub id
(``python -m flows dvc-yaml``): it then lists no model dependency, and only the params
dependency on ``model.source`` reruns the stages when the id changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from impq.config import Params
from impq.pipeline.stages import STAGES, Out, local_model

__all__ = ["GENERATED_HEADER", "MODEL_DEP", "dvc_yaml", "render_dvc_yaml"]

MODEL_DEP = "${model.source}"
"""The model dependency of ``dvc.yaml`` when it reads ``params.yaml`` (templated)."""

GENERATED_HEADER = (
    "# Generated from the stage declarations (impq/pipeline/stages.py) by\n"
    "#   python -m flows dvc-yaml --params {params} --out {out}\n"
    "# Edit the declarations and regenerate; tests/unit/pipeline/test_stages.py fails when\n"
    "# this file disagrees with them.\n"
)


def _out_entry(out: Out, interpolate: bool) -> str | dict[str, dict[str, bool]]:
    name = f"${{{out.param}}}" if interpolate and out.param else str(out.path)
    opts: dict[str, bool] = {}
    if not out.cache:
        opts["cache"] = False
    if out.persist:
        opts["persist"] = True
    return {name: opts} if opts else name


def _templated(deps: list[str], params: Params) -> list[str]:
    """``deps`` with every path of the local model replaced by :data:`MODEL_DEP`, once."""
    if not local_model(params):
        return deps
    source = Path(params.model.source)
    out: list[str] = []
    for dep in deps:
        path = Path(dep)
        name = MODEL_DEP if path == source or source in path.parents else dep
        if name not in out:
            out.append(name)
    return out


def dvc_yaml(
    params: Params, params_path: str | Path = "params.yaml", out: str | Path = "dvc.yaml"
) -> dict[str, Any]:
    """The ``dvc.yaml`` of :data:`STAGES` under ``params`` (paths relative to the cwd).

    When ``out`` is not in the current folder, every stage gets a ``wdir`` back to it,
    so the paths stay relative to the repository root.
    """
    params_path = Path(params_path)
    out_dir = Path(os.path.relpath(Path.cwd(), Path(out).resolve().parent))
    wdir = None if out_dir == Path(".") else str(out_dir)
    stages: dict[str, Any] = {}
    for stage in STAGES.values():
        entry: dict[str, Any] = {"cmd": f"python -m flows {stage.name} --params {params_path}"}
        if wdir:
            entry["wdir"] = wdir
        default = params_path == Path("params.yaml") and not wdir
        entry["deps"] = _templated(stage.deps(params), params) if default else stage.deps(params)
        if stage.params:
            keys = stage.dvc_params()
            entry["params"] = keys if default else [{str(params_path): keys}]
        for kind in ("outs", "metrics", "plots"):
            items = [_out_entry(o, default) for o in stage.outs(params) if o.kind == kind]
            if items:
                entry[kind] = items
        stages[stage.name] = entry

    def rel(path: Path) -> str:
        return str(Path(wdir) / path) if wdir else str(path)

    all_outs = [o for s in STAGES.values() for o in s.outs(params)]
    plots: list[Any] = []
    for o in all_outs:
        if o.plot is not None:
            plots.append({rel(o.path): dict(o.plot)} if o.plot else rel(o.path))
    return {
        "stages": stages,
        "metrics": [rel(o.path) for o in all_outs if o.kind == "metrics"],
        "plots": plots,
    }


def render_dvc_yaml(
    params: Params, params_path: str | Path = "params.yaml", out: str | Path = "dvc.yaml"
) -> str:
    """:func:`dvc_yaml` as the text of the file, with its header."""
    import yaml

    body = yaml.safe_dump(dvc_yaml(params, params_path, out), sort_keys=False, width=100)
    return GENERATED_HEADER.format(params=params_path, out=out) + body
