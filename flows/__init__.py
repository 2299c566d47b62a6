"""Prefect flows that run the impq pipeline stages; the numerical work stays in ``impq``.

Task results are persisted under ``.prefect-results/`` in the working directory (the
repository root when DVC runs a stage) unless ``PREFECT_RESULTS_LOCAL_STORAGE_PATH`` is
set, so a rerun of a stage finds its finished tasks in the cache; ``impq`` log records
go to the Prefect run logs. Both settings are made here, before Prefect reads them, and
so is the team's env file of server addresses and credentials (:mod:`impq.envfile`).
"""

import os
from pathlib import Path

from flows.env import RESULTS_ENV
from impq.envfile import load_env_file

RESULTS_DIR = ".prefect-results"

os.environ.setdefault(RESULTS_ENV, str(Path.cwd() / RESULTS_DIR))
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "impq")
load_env_file()
