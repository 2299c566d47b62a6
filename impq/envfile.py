"""The team's env file: server addresses and credentials, read into the environment.

A team that shares a Prefect server and an MLflow tracking server with authentication
keeps their addresses and credentials in one file outside git (``.env`` in the project
root, or the file ``$IMPQ_ENV_FILE`` names), readable by its owner only::

    PREFECT_API_URL=http://10.0.0.5:4200/api
    PREFECT_API_AUTH_STRING=alice:secret
    MLFLOW_TRACKING_URI=http://10.0.0.5:5000
    MLFLOW_TRACKING_USERNAME=alice
    MLFLOW_TRACKING_PASSWORD=secret

:func:`load_env_file` puts each ``KEY=VALUE`` line into the environment (a variable
already set wins), so Prefect, MLflow and every stage DVC starts read them. Only the
names of the variables are ever logged, never a value.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["ENV_FILE_VAR", "env_file", "load_env_file", "read_env_file"]

log = logging.getLogger(__name__)

ENV_FILE_VAR = "IMPQ_ENV_FILE"
"""Names the env file; unset, ``.env`` in the current folder is read when it exists."""


def env_file() -> Path | None:
    """The env file in force: ``$IMPQ_ENV_FILE``, else ``./.env`` when it exists.

    Raises:
        FileNotFoundError: ``$IMPQ_ENV_FILE`` names a file that does not exist.
    """
    named = os.environ.get(ENV_FILE_VAR)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"${ENV_FILE_VAR}: {path} is not a file; fix or unset it")
        return path
    default = Path(".env")
    return default if default.is_file() else None


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of ``path`` (``#`` comments, ``export`` and quotes allowed).

    Raises:
        ValueError: a line is not ``KEY=VALUE`` (its number is named, not its text).
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load_env_file(path: Path | None = None) -> list[str]:
    """Put the env file's variables into ``os.environ`` (set ones are kept); return the
    names it set. Warns when others than the owner may read the file."""
    path = path or env_file()
    if path is None:
        return []
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s holds credentials and others may read it: chmod 600 %s", path, path)
    values = read_env_file(path)
    names = [key for key in values if key not in os.environ]
    os.environ.update({key: values[key] for key in names})
    if names:
        log.info("read %s from %s", ", ".join(sorted(names)), path)
    return names
