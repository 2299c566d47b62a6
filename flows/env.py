"""Environment variables that the stage runner, the fork server and the server launcher
pass between processes (a leaf module: it imports nothing)."""

__all__ = ["EMBEDDED_ENV", "FORKSERVER_ENV", "RESULTS_ENV"]

FORKSERVER_ENV = "IMPQ_FORKSERVER"
"""Path of the fork server's socket (:mod:`flows.forkserver`); unset: every stage runs in
its own process."""

EMBEDDED_ENV = "IMPQ_EMBEDDED_PREFECT"
"""The API URL of the Prefect server :func:`flows.server.run_with_server` started for the
command (:func:`flows.stage.run_stage`: no flow-run heartbeats there)."""

RESULTS_ENV = "PREFECT_RESULTS_LOCAL_STORAGE_PATH"
"""Where Prefect persists task results; :mod:`flows` defaults it to the working directory's
``.prefect-results/``."""
