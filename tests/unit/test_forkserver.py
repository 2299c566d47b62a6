"""``python -m flows`` served by a real fork server (:mod:`flows.forkserver`): the same
output and exit status as a process of its own, refusal of another environment, signals
passed on, and a child ended when its client dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows import forkserver
from flows.server import ForkServer

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not forkserver.supported(), reason="a fork server needs Linux")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ForkServer, dict[str, str]]]:
    """A fork server, and the environment of the clients it serves."""
    home = tmp_path_factory.mktemp("forkserver")
    server = ForkServer(home / "forkserver.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    env[forkserver.ENV] = str(server.socket)
    server.start(env)
    try:
        assert server.ready(timeout=300), server.log.read_text()
        yield server, env
    finally:
        server.stop()


def _impq(args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def _log_lines(server: ForkServer, start: int) -> list[str]:
    return server.log.read_text().splitlines()[start:]


def _served_child(server: ForkServer, start: int, timeout: float = 60) -> int:
    """The pid of the child the server forked after log line ``start``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in _log_lines(server, start):
            if " INFO child " in line and ": impq " in line:
                return int(line.split(" INFO child ")[1].split(":")[0])
        time.sleep(0.1)
    raise AssertionError(f"no child was forked: {_log_lines(server, start)}")


def _gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_served_command_prints_and_exits_as_its_own_process_would(
    served: tuple[ForkServer, dict[str, str]],
) -> None:
    server, env = served
    alone = {k: v for k, v in env.items() if k != forkserver.ENV}
    start = len(_log_lines(server, 0))
    for args in (["dvc-yaml", "--params", "params.yaml"], ["assign", "--params", "nope.yaml"]):
        mine, theirs = _impq(args, alone), _impq(args, env)
        assert (theirs.returncode, theirs.stdout) == (mine.returncode, mine.stdout)
    assert mine.returncode == 2  # a missing params file, said on stderr
    error = "impq assign: error: nope.yaml: no such params file"
    assert error in mine.stderr and error in theirs.stderr
    log = _log_lines(server, start)
    assert len([line for line in log if " INFO child " in line and ": impq " in line]) == 2
    assert not [line for line in log if "refused" in line]


def test_a_client_in_another_environment_runs_on_its_own(
    served: tuple[ForkServer, dict[str, str]],
) -> None:
    server, env = served
    start = len(_log_lines(server, 0))
    out = _impq(["dvc-yaml", "--params", "params.yaml"], {**env, "IMPQ_SOMETHING": "1"})
    assert out.returncode == 0 and out.stdout.startswith("# ")
    (refusal,) = [line for line in _log_lines(server, start) if "refused" in line]
    assert "environment differs in IMPQ_SOMETHING" in refusal


def test_a_client_in_an_activated_venv_is_served(
    served: tuple[ForkServer, dict[str, str]],
) -> None:
    # `source .venv/bin/activate` exports PS1 and VIRTUAL_ENV; DVC's shell drops PS1
    server, env = served
    start = len(_log_lines(server, 0))
    activated = {**env, "PS1": "(.venv) $ ", "VIRTUAL_ENV": str(REPO / ".venv")}
    out = _impq(["assign", "--params", "nope.yaml"], activated)
    assert out.returncode == 2 and "nope.yaml: no such params file" in out.stderr
    log = _log_lines(server, start)
    assert not [line for line in log if "refused" in line]
    assert [line for line in log if " INFO child " in line and ": impq assign " in line]


def _served_slow_stage(
    server: ForkServer, env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.Popen, int, int]:
    """A stage that runs for seconds (it starts a temporary Prefect server first), once the
    server forked its child: the client, the child's pid and the log line it started at."""
    params = (REPO / "params.yaml").read_text()
    local = "source: models/ref-llama-12l"
    assert local in params  # the model by its absolute path: params load, the stage starts
    (tmp_path / "params.yaml").write_text(
        params.replace(local, f"source: {REPO / 'models' / 'ref-llama-12l'}")
    )
    start = len(_log_lines(server, 0))
    client = subprocess.Popen(
        [sys.executable, "-m", "flows", "assign", "--params", "params.yaml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return client, _served_child(server, start), start


def test_a_sigterm_to_the_client_stops_its_child(
    served: tuple[ForkServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = served
    client, child, start = _served_slow_stage(server, env, tmp_path)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=60) == 128 + signal.SIGTERM
    assert _gone(child)
    assert any(
        f"child {child} exited {128 + signal.SIGTERM}" in line for line in _log_lines(server, start)
    )


@pytest.mark.slow  # a stage that starts a temporary Prefect server, twice
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stop_signal_stops_a_served_stage_within_10_s(
    served: tuple[ForkServer, dict[str, str]], tmp_path: Path, stop: signal.Signals
) -> None:
    server, env = served
    client, child, _ = _served_slow_stage(server, env, tmp_path)
    time.sleep(2)  # into the stage's own start (its Prefect server, its flow run)
    stopped = time.monotonic()
    client.send_signal(stop)
    client.wait(timeout=60)
    assert time.monotonic() - stopped < 10
    assert _gone(child, timeout=1)


def test_a_child_whose_client_dies_is_terminated(
    served: tuple[ForkServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = served
    client, child, start = _served_slow_stage(server, env, tmp_path)
    client.kill()
    client.wait()
    assert _gone(child)
    assert any(f"client of child {child} is gone" in line for line in _log_lines(server, start))


def test_an_unreadable_request_is_dropped_and_the_server_goes_on(
    served: tuple[ForkServer, dict[str, str]],
) -> None:
    server, env = served
    start = len(_log_lines(server, 0))
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.connect(str(server.socket))
        sock.send(b"not a request")
        assert sock.recv(1024) == b""  # closed without an answer
    out = _impq(["dvc-yaml", "--params", "params.yaml"], env)
    assert out.returncode == 0
    log = _log_lines(server, start)
    assert any("dropped a request that could not be read" in line for line in log)
    assert any(" INFO child " in line and ": impq dvc-yaml" in line for line in log)


WINDOW_COMMAND = '''
"""A fork server's command whose second child gets a SIGTERM the moment it is forked,
while it still has the server's signal handlers: what a client may pass on then."""
import os, signal, time

_fork = os.fork
forks = 0


def _fork_then_sigterm_the_second_child():
    global forks
    forks += 1
    pid = _fork()
    if pid == 0 and forks == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return pid


def preload():
    os.fork = _fork_then_sigterm_the_second_child


def main(argv):
    time.sleep(120 if argv == ["sleep"] else 0)
    return 0
'''

CLIENT = (
    "import sys; from flows import forkserver; "
    "code = forkserver.run_in_server(sys.argv[1:]); sys.exit(99 if code is None else code)"
)


def test_a_sigterm_as_a_child_is_forked_stops_that_child_alone(tmp_path: Path) -> None:
    (tmp_path / "window_command.py").write_text(WINDOW_COMMAND)
    server = ForkServer(tmp_path / "forkserver.log", command="window_command")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    env[forkserver.ENV] = str(server.socket)
    server.start(env, cwd=REPO)
    try:
        assert server.ready(timeout=60), server.log.read_text()
        sleeper = subprocess.Popen([sys.executable, "-c", CLIENT, "sleep"], env=env)
        sibling = _served_child(server, 0)
        signalled = subprocess.run([sys.executable, "-c", CLIENT, "run"], env=env, timeout=60)
        # the child dies of the signal, as a process of its own would, and leaves its
        # sibling running (as the server it would have terminated every sibling)
        assert signalled.returncode == 128 + signal.SIGTERM
        assert sleeper.poll() is None and not _gone(sibling, timeout=1)
        sleeper.terminate()
        assert sleeper.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        server.stop()
