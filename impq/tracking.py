"""Experiment tracking with MLflow: the only module of impq that knows MLflow.

One pipeline execution is one MLflow run; every stage is a child run of it and every
(backend, method, budget) combination a grandchild. DVC runs each stage in its own
process, so a stage finds its parent run by the tag ``impq.pipeline_key``: the
``IMPQ_RUN_GROUP`` environment variable when set (a served pipeline sets it to its flow
run id), otherwise a hash of the params file and the git commit. A tracking outage never
loses computed work: every MLflow call that fails logs a warning and turns tracking off
for the rest of the run.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from impq.config import Params, TrackingConfig
from impq.envfile import load_env_file

if TYPE_CHECKING:
    from impq.pipeline.stages import Stage

__all__ = [
    "PIPELINE_KEY_TAG",
    "RUN_GROUP_ENV",
    "Tracker",
    "TrackingAuthError",
    "flatten",
    "pipeline_key",
    "record_stage",
    "resolve_uri",
    "stage_run",
]

log = logging.getLogger(__name__)


class TrackingAuthError(ValueError):
    """The MLflow server refused the client's credentials: a setup error, not an outage."""


RUN_GROUP_ENV = "IMPQ_RUN_GROUP"
PIPELINE_KEY_TAG = "impq.pipeline_key"
STAGE_TAG = "impq.stage"
_PARENT_TAG = "mlflow.parentRunId"


def resolve_uri(cfg: TrackingConfig, root: str | Path = ".") -> str:
    """The tracking URI in force: params, then ``$MLFLOW_TRACKING_URI``, then local sqlite."""
    if cfg.uri:
        return cfg.uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(Path(root) / 'mlflow.db').resolve()}"


def pipeline_key(params_path: str | Path = "params.yaml", root: str | Path = ".") -> str:
    """The id shared by every stage of one pipeline execution (see the module docstring)."""
    group = os.environ.get(RUN_GROUP_ENV)
    if group:
        return group
    h = hashlib.sha256()
    path = Path(params_path)
    if path.is_file():
        h.update(path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        head = ""
    h.update(head.encode())
    return h.hexdigest()[:16]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class Tracker:
    """One MLflow run (or nothing, when tracking is off or has failed).

    Every method is safe to call when tracking is off; an MLflow error is logged as a
    warning and turns this tracker off.
    """

    def __init__(self, client: Any = None, run_id: str | None = None, experiment_id: str = ""):
        self._client = client
        self.run_id = run_id
        self._experiment_id = experiment_id

    @property
    def active(self) -> bool:
        """Whether calls reach a tracking store."""
        return self._client is not None and self.run_id is not None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<method>(*args, **kwargs)``, or None when off or when it fails."""
        if not self.active:
            return None
        try:
            return getattr(self._client, method)(*args, **kwargs)
        except Exception as err:  # an outage must not lose the stage's work
            log.warning("MLflow %s failed (%s); tracking is off for this run", method, err)
            self._client = None
            return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log flat params (values are stringified; nested mappings are flattened)."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self._call("log_batch", self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Log numeric metrics; non-numeric values and NaN are skipped."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in flatten(metrics).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)
        ]
        if items:
            self._call("log_batch", self.run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set string tags on the run."""
        for k, v in tags.items():
            self._call("set_tag", self.run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file (or a folder) as an artifact of the run, if it exists."""
        path = Path(path)
        if not path.exists():
            return
        if path.is_dir():
            self._call("log_artifacts", self.run_id, str(path), artifact_path)
        else:
            self._call("log_artifact", self.run_id, str(path), artifact_path)

    @contextmanager
    def child(self, name: str, tags: Mapping[str, Any] | None = None) -> Iterator[Tracker]:
        """A nested run under this one, finished (or failed) when the block exits."""
        run = self._call(
            "create_run",
            self._experiment_id,
            run_name=name,
            tags={_PARENT_TAG: self.run_id, **{k: str(v) for k, v in (tags or {}).items()}},
        )
        child = Tracker(self._client, run.info.run_id, self._experiment_id) if run else Tracker()
        status = "FAILED"
        try:
            yield child
            status = "FINISHED"
        finally:
            child._call("set_terminated", child.run_id, status)


def _parent_run(client: Any, experiment_id: str, key: str) -> str:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{key}'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    if runs:
        return str(runs[0].info.run_id)
    run = client.create_run(
        experiment_id, run_name=f"pipeline-{key[:8]}", tags={PIPELINE_KEY_TAG: key}
    )
    return str(run.info.run_id)


def _unreachable(uri: str) -> str | None:
    """Why an HTTP tracking server does not answer, or None (MLflow would retry for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
            return None
    except urllib.error.HTTPError:
        return None  # it answers; a proxy may not expose /health
    except OSError as err:
        return str(err)


def _open(params: Params, params_path: str | Path) -> Tracker:
    cfg = params.tracking
    if not cfg.enabled:
        return Tracker()
    load_env_file()  # the team's server and credentials, when no flow has read them yet
    uri = resolve_uri(cfg)
    down = _unreachable(uri)
    if down:
        log.warning("MLflow server %s unreachable (%s); continuing without tracking", uri, down)
        return Tracker()
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(cfg.experiment)
        if exp is not None:
            experiment_id = exp.experiment_id
        else:
            location = None
            if uri.startswith("sqlite:"):
                location = (Path.cwd() / "mlruns").resolve().as_uri()
            experiment_id = client.create_experiment(cfg.experiment, artifact_location=location)
        parent = _parent_run(client, experiment_id, pipeline_key(params_path))
        log.info("tracking to %s (experiment %r, pipeline run %s)", uri, cfg.experiment, parent)
        return Tracker(client, parent, experiment_id)
    except Exception as err:  # an outage must not stop the stage; refused credentials do
        if _refused(err):
            raise TrackingAuthError(
                f"the MLflow server {uri} refused this client ({err.__class__.__name__}, "
                "HTTP 401/403): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "in the team's env file (see impq.envfile)"
            ) from None
        log.warning("MLflow unavailable (%s); continuing without tracking", err)
        return Tracker()


def _refused(err: Exception) -> bool:
    """Whether MLflow failed because the server refused the credentials."""
    status = getattr(err, "get_http_status_code", None)
    return callable(status) and status() in (401, 403)


@contextmanager
def stage_run(
    params: Params, stage: str, params_path: str | Path = "params.yaml"
) -> Iterator[Tracker]:
    """The child run of ``stage`` under this pipeline execution's parent run.

    The stage's run ends FINISHED when the block exits normally and FAILED otherwise;
    the parent run is marked FINISHED after each stage, since no process sees the last.
    """
    parent = _open(params, params_path)
    with parent.child(stage, tags={STAGE_TAG: stage}) as run:
        yield run
    parent._call("set_terminated", parent.run_id, "FINISHED")


ASSIGNMENT_METRICS = ("objective", "gap_to_exact", "solve_seconds", "evaluations", "held_back_nll")
"""Figures of an assignment's ``extra`` logged on its child run, when present."""


def record_stage(run: Tracker, params: Params, stage: Stage, written: list[Path]) -> None:
    """Log what a stage's declaration says: its params, its metrics files (keys prefixed by
    the file's stem, ``float.ppl``), every file it wrote as an artifact (under the name
    of its folder) and, for a stage that writes assignments, one child run per
    assignment (``<method>/<budget>``) with its size and figures.
    """
    from impq.artifacts import read_json
    from impq.pipeline.stages import params_subset

    run.log_params(params_subset(params, *stage.params))
    for path in stage.out_paths(params, "metrics"):
        if path.is_file():
            run.log_metrics({f"{path.stem}.{k}": v for k, v in read_json(path).items()})
    metrics = set(stage.out_paths(params, "metrics"))
    for path in written:
        if stage.assignments and path not in metrics:
            _record_assignment(run, path)
        else:
            run.log_artifact(path, path.parent.name)


def _record_assignment(run: Tracker, path: Path) -> None:
    from impq.assignment import Assignment

    a = Assignment.load(path)
    name = f"{a.method}/{a.budget_bits}"
    with run.child(name, tags={"method": a.method, "budget": a.budget_bits}) as child:
        extra = {k: a.extra.get(k) for k in ASSIGNMENT_METRICS}
        child.log_metrics({"avg_bits": a.avg_bits, "stored_bytes": a.stored_bytes, **extra})
        child.log_artifact(path, a.method)
