"""Serve the whole pipeline as a Prefect deployment, on a cron schedule or on demand.

``impq serve [--cron "0 3 * * *"]`` (or ``python -m flows.deploy``) registers the
deployment ``impq-pipeline/<name>`` with the Prefect server in ``$PREFECT_API_URL`` and
runs its flow runs until stopped; start one from the UI or with
``prefect deployment run impq-pipeline/<name>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flows.pipeline import pipeline_flow
from impq.config import Params
from impq.pipeline.params import load_params

__all__ = ["DEFAULT_NAME", "deployment", "serve"]

DEFAULT_NAME = "impq"


def deployment(params: Params, cron: str | None = None, name: str = DEFAULT_NAME) -> Any:
    """The deployment of :func:`pipeline_flow` for this repository (not yet applied)."""
    schedule = cron or params.tracking.cron
    return pipeline_flow.to_deployment(
        name=name,
        cron=schedule,
        parameters={"repo": str(Path.cwd().resolve())},
        description="dvc repro of the impq pipeline",
        tags=["impq"],
    )


def serve(params: Params, cron: str | None = None, name: str = DEFAULT_NAME) -> None:
    """Register the deployment and run its flow runs until interrupted."""
    from prefect import serve as prefect_serve

    prefect_serve(deployment(params, cron, name))


def main() -> None:
    """``python -m flows.deploy [--params P] [--cron C] [--name N]``."""
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--cron", default=None)
    parser.add_argument("--name", default=DEFAULT_NAME)
    args = parser.parse_args()
    serve(load_params(args.params), args.cron, args.name)


if __name__ == "__main__":
    main()
