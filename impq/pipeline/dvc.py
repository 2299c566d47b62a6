"""``dvc.yaml`` from the stage declarations (:data:`impq.pipeline.stages.STAGES`).

``python -m flows dvc-yaml [--params P] [--out F]`` writes it; the committed ``dvc.yaml``
is this module's output for ``params.yaml``, and ``tests/unit/pipeline/test_stages.py``
fails when it disagrees with the declarations.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from impq.config import Params
from impq.pipeline.stages import STAGES, Out

__all__ = ["GENERATED_HEADER", "dvc_yaml", "render_dvc_yaml"]

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
        entry["deps"] = stage.deps(params)
        default = params_path == Path("params.yaml") and not wdir
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
