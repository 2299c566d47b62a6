"""Stage processes forked from one warm process: ``python -m flows <stage>`` without the imports.

A stage process spends about 10 s of CPU importing torch, transformers, Prefect and MLflow
and loading the method registry before its work starts; on the embedded default that is
most of a stage's wall time. A fork server imports all of it once
(``python -m flows.forkserver SOCKET MODULE``, started by :mod:`flows.server` for a whole
``dvc repro`` with MODULE :mod:`flows.cli`): it calls ``MODULE.preload()`` once, and each
child it forks runs ``MODULE.main(argv)``. ``python -m flows`` hands its arguments,
working directory, environment and standard streams to the server (``$IMPQ_FORKSERVER``
names the socket), which forks a child that runs the command exactly as the process
itself would, and answers the child's exit status.

The client stays what DVC runs and waits for: a SIGINT, SIGTERM or SIGHUP it gets is
passed on to the child, and the child is terminated when the client dies. The server
refuses (and the stage runs in its own process as before) when the client's Python, its
``impq`` or ``flows`` package or a variable that may change a stage's result
(:data:`RESULT_ENV_PREFIXES`) differ from the server's: modules read some variables once,
at import. A shell's own variables (an activated venv's ``PS1``) do not count. The server
itself starts no thread before it forks.

Linux only (Unix sockets with message boundaries and file-descriptor passing); elsewhere
:func:`run_in_server` declines and every stage runs in its own process.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from flows.env import FORKSERVER_ENV, RESULTS_ENV

__all__ = ["ENV", "Command", "run_in_server", "serve", "supported"]

log = logging.getLogger(__name__)

ENV = FORKSERVER_ENV
"""Path of the fork server's socket; unset: every stage runs in its own process."""

Command = Callable[[list[str]], int]
"""What a child runs: its client's arguments -> exit status."""

RESULT_ENV_PREFIXES = (
    "IMPQ_", "PREFECT_", "MLFLOW_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_",
    "TORCH", "PYTORCH_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "OPENBLAS_", "KMP_",
    "GPTQMODEL_", "RAY_", "PYTHON", "LD_", "XDG_", "LC_",
)  # fmt: skip
"""Prefixes of the variables a preloaded module may read once, at import, and that may so
change a stage's result: the server refuses a client whose values differ. Any other
variable (a shell's ``PS1`` or ``TERM``, ``DVC_*``) reaches the child as the client has it."""

RESULT_ENV = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "DO_NOT_TRACK"})
"""Variables outside :data:`RESULT_ENV_PREFIXES` compared all the same."""

IGNORED_ENV = frozenset({RESULTS_ENV})
"""Compared for no client: the results folder :mod:`flows` derives from the working
directory (a child takes its client's)."""


def _changes_results(name: str) -> bool:
    return name not in IGNORED_ENV and (name in RESULT_ENV or name.startswith(RESULT_ENV_PREFIXES))


_MAX_MESSAGE = 1 << 20
_POLL_S = 0.2


def supported() -> bool:
    """Whether this platform can run a fork server (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SOCK_SEQPACKET")


def _identity() -> dict[str, Any]:
    """What a client and the server must share: interpreter, package, environment."""
    import flows
    import impq

    return {
        "python": sys.executable,
        "impq": str(Path(impq.__file__).resolve()),
        "flows": str(Path(flows.__file__).resolve()),
        "env": dict(os.environ),
    }


def _refusal(request: dict[str, Any], mine: dict[str, Any]) -> str | None:
    for key in ("python", "impq", "flows"):
        if request[key] != mine[key]:
            return f"{key} differs: {request[key]} (server: {mine[key]})"
    theirs, ours = request["env"], mine["env"]
    differs = sorted(
        k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k) and _changes_results(k)
    )
    if differs:
        return f"environment differs in {', '.join(differs[:5])}"
    return None


# -- client -----------------------------------------------------------------------------


def run_in_server(argv: Sequence[str]) -> int | None:
    """Run the served command on ``argv`` in a child of the fork server named by ``$IMPQ_FORKSERVER``.

    Returns:
        The child's exit status, or None when there is no server to ask or it refused
        (the caller runs the stage itself).
    """
    path = os.environ.get(ENV)
    if not path or not supported():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    with sock:
        request = {**_identity(), "argv": list(argv), "cwd": os.getcwd()}
        socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
        reply = json.loads(sock.recv(_MAX_MESSAGE) or b'{"refused": "server closed"}')
        if "refused" in reply:
            return None
        child = int(reply["pid"])

        def forward(signum: int, frame: FrameType | None) -> None:
            _signal(child, signum)

        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, forward)
        done = sock.recv(_MAX_MESSAGE)
    if not done:
        print(f"impq: the fork server ({path}) stopped while child {child} ran", file=sys.stderr)
        return 1
    return int(json.loads(done)["exit"])


# -- server -----------------------------------------------------------------------------


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Stop(Exception):
    """The server was told to stop (SIGTERM, SIGINT)."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def serve(path: Path, preload: Callable[[], Any]) -> dict[str, Any] | None:
    """Serve requests on the socket ``path`` until SIGTERM or SIGINT, once ``preload()``
    imported what the children run.

    Returns only in a forked child, with the request it is to run and the stop signals'
    handlers the process had before (None in the server, once it stopped).

    Raises:
        RuntimeError: the preloaded modules started a thread (forking would copy its
            locks but not the thread).
    """
    mine = _identity()  # before the imports, which set some variables of their own
    preload()
    if threading.active_count() != 1:
        names = [t.name for t in threading.enumerate()]
        raise RuntimeError(f"fork server: importing the stages started threads {names}")
    imported = {k: v for k, v in os.environ.items() if mine["env"].get(k) != v}
    gc.freeze()  # children's collections skip (and so do not copy) the preloaded objects
    server = os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    listener.bind(str(tmp))
    listener.listen(16)
    os.replace(tmp, path)  # the socket appears once the server is ready
    previous = {s: signal.signal(s, _stop) for s in _STOP_SIGNALS}
    children: dict[int, socket.socket | None] = {}  # child -> its client (None: gone)
    log.info("fork server %d ready on %s", server, path)
    try:
        while True:
            clients = {c: pid for pid, c in children.items() if c is not None}
            readable, _, _ = select.select([listener, *clients], [], [], _POLL_S)
            for conn in readable:
                if conn is listener:
                    request = _accept(listener, mine, children)
                    if request is not None:  # in the child
                        request["env"].update(imported)  # what its imports would have set
                        listener.close()
                        for other in clients:
                            other.close()
                        for s, handler in previous.items():
                            signal.signal(s, handler)
                        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # see _accept
                        return request
                elif not conn.recv(1, socket.MSG_PEEK):  # a client sends nothing: gone
                    pid = clients[conn]
                    log.info("the client of child %d is gone: terminating it", pid)
                    conn.close()
                    children[pid] = None
                    _signal(pid)
            _reap(children)
    except _Stop:
        for pid in children:
            _signal(pid)
        deadline = time.monotonic() + 30
        while children and time.monotonic() < deadline:
            _reap(children)
            time.sleep(_POLL_S)
        return None
    finally:
        if os.getpid() == server:
            listener.close()
            path.unlink(missing_ok=True)


def _signal(pid: int, signum: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _accept(
    listener: socket.socket, mine: dict[str, Any], children: dict[int, socket.socket | None]
) -> dict[str, Any] | None:
    """Take one request: fork a child for it (the request is returned in the child).

    A request that cannot be read is logged and dropped; the server goes on.
    """
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        message, fds, _, _ = socket.recv_fds(conn, _MAX_MESSAGE, 3)
        request = json.loads(message)
        reason = _refusal(request, mine) or (None if len(fds) == 3 else "no streams")
        if reason is not None:
            log.info("refused impq %s: %s", " ".join(request["argv"]), reason)
            conn.send(json.dumps({"refused": reason}).encode())
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("dropped a request that could not be read: %r", err)
        reason = "unreadable"
    if reason is not None:
        conn.close()
        for fd in fds:
            os.close(fd)
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    # A stop signal waits until each side's handlers are its own: the child's until
    # serve() restored the handlers it had before serving (a SIGTERM its client passes on
    # would otherwise stop the child as the server, terminating every sibling), the
    # server's until this child is in ``children`` (else a stop would leave it running).
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    pid = os.fork()
    if pid == 0:
        try:
            conn.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
        except OSError:
            os._exit(1)  # never go back to serving from a child
        return dict(request)
    for fd in fds:
        os.close(fd)
    children[pid] = conn
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    log.info("child %d: impq %s (in %s)", pid, " ".join(request["argv"]), request["cwd"])
    with contextlib.suppress(OSError):  # a client gone already is noticed in the loop
        conn.send(json.dumps({"pid": pid}).encode())
    return None


def _reap(children: dict[int, socket.socket | None]) -> None:
    """Answer the exit status of every child that ended to its client."""
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            continue
        conn = children.pop(pid)
        code = _exit_code(status)
        log.info("child %d exited %d", pid, code)
        if conn is None:
            continue
        with contextlib.suppress(OSError):  # its client may be gone
            conn.send(json.dumps({"exit": code}).encode())
        conn.close()


def _run_request(request: dict[str, Any], command: Command) -> int:
    """In a forked child: become the client's process, run its command, return its status."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdout.reconfigure(line_buffering=sys.stdout.isatty())  # type: ignore[union-attr]
    logging.getLogger().handlers.clear()  # the server's own log; the stage sets up its own
    try:
        return command(request["argv"])
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        return 1


def _exit_child(status: int) -> None:
    """End a child as the interpreter ends a process (threads joined, ``atexit`` run,
    streams flushed), without tearing the preloaded modules down: that alone took
    seconds, most of it copying the server's pages."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flows.forkserver SOCKET MODULE``: call ``MODULE.preload()``, then serve
    ``MODULE.main(argv)`` until SIGTERM or SIGINT."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or not supported():
        print("usage (Linux): python -m flows.forkserver SOCKET MODULE", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    socket_path, module = Path(args[0]), args[1]
    request = serve(socket_path, lambda: importlib.import_module(module).preload())
    if request is not None:  # in a forked child
        _exit_child(_run_request(request, importlib.import_module(module).main))
    return 0


if __name__ == "__main__":
    sys.exit(main())
