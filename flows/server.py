"""One Prefect server and one fork server for a whole pipeline run:
``python -m flows.server -- dvc repro``.

Without ``$PREFECT_API_URL`` every stage process would start (and stop) a temporary
Prefect server of its own. This starts one ``prefect server start`` on 127.0.0.1 (state
in ``$PREFECT_HOME``, default ``.prefect/`` here, so it shares no database with other
checkouts) and points ``$PREFECT_API_URL`` of the command at it; with ``$PREFECT_API_URL``
already set it uses that server. It also starts a :mod:`flows.forkserver` (on Linux) and
names its socket in ``$IMPQ_FORKSERVER``, so that each ``python -m flows <stage>`` runs in
a child forked from one process that imported everything once. It runs the command and
stops both servers when the command ends, fails or is terminated. ``make repro`` runs
``dvc repro`` this way.

A server on a new database spends most of its start migrating it (12.6 s against 6.4 s
on a 2-core CPU). The first server of a Prefect version on a machine keeps a copy of its
database, migrated and empty of runs, in ``~/.cache/impq/``; a server whose home has no
database yet starts from that copy (Prefect migrates it further if it must).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack, closing
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

from flows import forkserver
from flows.env import EMBEDDED_ENV

__all__ = [
    "ForkServer",
    "PrefectServer",
    "copy_database",
    "database_template",
    "main",
    "run_with_server",
    "stop_process_group",
]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0
"""How long the server may take to answer its health check (a loaded 2-core CPU is slow)."""


def database_template() -> Path:
    """The migrated, empty server database this Prefect version's servers start from."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "impq" / f"prefect-{version('prefect')}.db"


def copy_database(source: Path, target: Path) -> None:
    """Copy a SQLite database consistently (even while a server writes to it), atomically.

    Not :func:`impq.artifacts.atomic_path`: that module imports torch, which this launcher
    must not wait for before it starts the servers.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(partial)) as dst:
            src.backup(dst)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process_group(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM the process group ``proc`` leads (started with ``start_new_session``), wait
    up to ``grace`` seconds for ``proc``, then SIGKILL the group."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


class PrefectServer:
    """A ``prefect server start`` process on 127.0.0.1, in its own process group."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home.resolve()
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        """The API URL clients use (``$PREFECT_API_URL``)."""
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until its health check answers.

        Raises:
            RuntimeError: the server exited or did not answer in time (its log says why).
        """
        self.home.mkdir(parents=True, exist_ok=True)
        database, template = self.home / "prefect.db", database_template()
        new = "PREFECT_API_DATABASE_CONNECTION_URL" not in os.environ and not database.exists()
        if new and template.is_file():
            try:
                copy_database(template, database)
            except sqlite3.Error as err:
                log.warning("not starting from %s (%s): migrating a new database", template, err)
        logfile = (self.home / "server.log").open("wb")
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.api_url,
        }
        env.pop("PREFECT_API_URL", None)
        prefect = Path(sys.executable).with_name("prefect")
        cmd = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited {self.proc.returncode}; see {self.home / 'server.log'}"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"prefect server did not answer in {timeout:.0f} s")
        if new and not template.is_file():
            try:
                copy_database(database, template)
            except (sqlite3.Error, OSError) as err:  # only the next start is slower
                log.warning("could not keep %s as %s: %s", database, template, err)

    def stop(self) -> None:
        """Stop the server and every process it started (its process group)."""
        if self.proc is not None:
            stop_process_group(self.proc, grace=20)


class ForkServer:
    """A ``python -m flows.forkserver`` process in its own process group (Linux only),
    serving ``command`` (a module with ``preload()`` and ``main(argv)``: :mod:`flows.cli`)."""

    def __init__(self, log: Path, command: str = "flows.cli") -> None:
        self.log = log
        self.command = command
        self._dir = Path(tempfile.mkdtemp(prefix="impq-fork-"))  # short: a socket path
        self.socket = self._dir / "socket"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str], cwd: Path | None = None) -> None:
        """Start it with ``env``, the environment of every stage it is to serve, in
        ``cwd`` (default: here), whose ``impq`` it imports."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flows.forkserver", str(self.socket), self.command],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )

    def ready(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Wait until it serves (its socket appears); False if it exited or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                return True
            if self.proc is None or self.proc.poll() is not None:
                return False
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        """Stop it (and any child it still runs) and remove its socket."""
        if self.proc is not None:
            stop_process_group(self.proc, grace=40)  # its children get 30 s to unwind
        shutil.rmtree(self._dir, ignore_errors=True)


def run_with_server(cmd: Sequence[str], home: Path) -> int:
    """Run ``cmd`` against one Prefect server and one fork server started for it; return
    its exit status.

    A SIGTERM or SIGINT to this process is passed on to the command; the servers are
    stopped in every case. A fork server that does not start is reported and skipped
    (every stage then runs in its own process).
    """
    env = dict(os.environ)
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    with ExitStack() as stack:
        server = None
        if not env.get("PREFECT_API_URL"):
            server = PrefectServer(home)
            env["PREFECT_API_URL"] = env[EMBEDDED_ENV] = server.api_url
        forks = None
        if forkserver.ENV not in env and forkserver.supported():
            forks = ForkServer(home / "forkserver.log")
            env[forkserver.ENV] = str(forks.socket)
            stack.callback(forks.stop)
            forks.start(env)  # imports while the Prefect server starts
        if server is not None:
            started = time.perf_counter()
            stack.callback(server.stop)
            server.start()
            log.info("Prefect server on %s (started in %.1f s)", server.api_url,
                     time.perf_counter() - started)  # fmt: skip
        if forks is not None and not forks.ready():
            log.warning("the fork server did not start (see %s): stages start on their own",
                        forks.log)  # fmt: skip
            env.pop(forkserver.ENV)
        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            child = subprocess.Popen(list(cmd), env=env)
            status = child.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if child is not None and child.poll() is None:
                child.terminate()
                child.wait()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flows.server [--home DIR] -- CMD...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    home = Path(os.environ.get("PREFECT_HOME") or ".prefect")
    if args[:1] == ["--home"]:
        home, args = Path(args[1]), args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m flows.server [--home DIR] -- CMD [ARGS...]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run_with_server(args, home)


if __name__ == "__main__":
    sys.exit(main())
