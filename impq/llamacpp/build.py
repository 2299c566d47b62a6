"""Building llama.cpp: one pinned version, built once per machine into a cache.

llama.cpp is not packaged for Debian 12, but the ``llama-cpp-python`` sdist on PyPI vendors
its full source (``vendor/llama.cpp``: the tools, ``convert_hf_to_gguf.py`` and ``gguf-py``).
:func:`build_llamacpp` downloads that sdist with pip, checks its hash, and builds only the
CPU tools impq runs into ``$IMPQ_LLAMACPP_DIR`` (default
``~/.cache/impq/llama.cpp-<version>``); a second call finds the build stamp and does nothing.
:func:`find_llamacpp` locates a finished build; :func:`ensure_llamacpp` builds it on first
use (the llamacpp backend and the GGUF exporter call it). This module imports no heavy
library, so ``python -m impq.llamacpp build`` (run by ``make test``) is cheap when up to
date.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LLAMACPP_COMMIT",
    "LLAMACPP_VERSION",
    "TOOLS",
    "LlamaCpp",
    "LlamaCppNotBuiltError",
    "build_llamacpp",
    "ensure_llamacpp",
    "find_llamacpp",
    "install_dir",
]

logger = logging.getLogger(__name__)

SDIST_PACKAGE = "llama-cpp-python"
LLAMACPP_VERSION = "0.3.36"
"""Version of the ``llama-cpp-python`` sdist whose vendored llama.cpp is built."""
LLAMACPP_COMMIT = "0c1e57098"
"""The llama.cpp commit that sdist vendors (its CHANGELOG)."""
_SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
_SDIST_ROOT = f"llama_cpp_python-{LLAMACPP_VERSION}/vendor/llama.cpp/"

TOOLS = ("llama-quantize", "llama-imatrix", "llama-perplexity")
"""The CMake targets built, and the only binaries impq calls."""

ENV_DIR = "IMPQ_LLAMACPP_DIR"
ENV_SDIST = "IMPQ_LLAMACPP_SDIST"

_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"

# CPU only, static binaries, no network code (no OpenSSL, no server or its web UI), and
# the commit stated here rather than read from whatever git repository encloses the source.
_CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=ON",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_NUMBER=0",
    f"-DLLAMA_BUILD_COMMIT={LLAMACPP_COMMIT}",
    *(
        # AMX off: a VM can list amx_tile and still fault on its first tile instruction
        # (llama-perplexity died of SIGILL in ggml_backend_amx_mul_mat on such a machine)
        (f"-DCMAKE_C_FLAGS={_NO_AMX}", f"-DCMAKE_CXX_FLAGS={_NO_AMX}")
        if platform.machine().lower() in {"x86_64", "amd64"}
        else ()
    ),
)
_STAMP = "BUILD.json"
_KEEP_SOURCE = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")
"""What impq runs from the source once the tools are built (the rest is 170 MB)."""


class LlamaCppNotBuiltError(RuntimeError):
    """The pinned llama.cpp tools are not built on this machine."""


@dataclass(frozen=True)
class LlamaCpp:
    """A finished build: the vendored source (converter, gguf-py) and the tool binaries."""

    root: Path

    @property
    def source(self) -> Path:
        """The vendored llama.cpp source tree."""
        return self.root / "src"

    @property
    def converter(self) -> Path:
        """``convert_hf_to_gguf.py`` of the same version as the tools."""
        return self.source / "convert_hf_to_gguf.py"

    def tool(self, name: str) -> Path:
        """The path of tool ``name`` (one of :data:`TOOLS`)."""
        if name not in TOOLS:
            raise ValueError(f"unknown llama.cpp tool {name!r}; built tools: {', '.join(TOOLS)}")
        return self.root / "bin" / name


def install_dir() -> Path:
    """Where the pinned build lives: ``$IMPQ_LLAMACPP_DIR`` or the user cache."""
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "impq" / f"llama.cpp-{LLAMACPP_VERSION}"


def _expected_stamp() -> dict[str, object]:
    return {
        "package": SDIST_PACKAGE,
        "version": LLAMACPP_VERSION,
        "commit": LLAMACPP_COMMIT,
        "sha256": _SDIST_SHA256,
        "cmake_args": list(_CMAKE_ARGS),
        "tools": list(TOOLS),
    }


def _is_current(root: Path) -> bool:
    try:
        stamp = json.loads((root / _STAMP).read_text())
    except (OSError, ValueError):
        return False
    expected = _expected_stamp()
    if any(stamp.get(key) != value for key, value in expected.items()):
        return False
    built = LlamaCpp(root)
    return built.converter.is_file() and all(os.access(built.tool(t), os.X_OK) for t in TOOLS)


def find_llamacpp() -> LlamaCpp:
    """The pinned build on this machine.

    Raises:
        LlamaCppNotBuiltError: when it is missing or was built from other settings.
    """
    root = install_dir()
    if not _is_current(root):
        raise LlamaCppNotBuiltError(
            f"llama.cpp {LLAMACPP_VERSION} ({LLAMACPP_COMMIT}) is not built in {root}: run "
            f"`make llamacpp` or `python -m impq.llamacpp build` (set {ENV_DIR} to "
            "build elsewhere)"
        )
    return LlamaCpp(root)


BUILD_MINUTES = 7
"""About how long a build takes on 2 cores (measured: 7.1 min), for the first-use message."""


def ensure_llamacpp(jobs: int | None = None) -> LlamaCpp:
    """The pinned build, built now if this machine has none (once; later calls find it).

    Args:
        jobs: parallel compile jobs; default: every CPU.
    """
    try:
        return find_llamacpp()
    except LlamaCppNotBuiltError:
        pass
    jobs = jobs or os.cpu_count() or 2
    logger.warning(
        "building llama.cpp %s (%s) into %s for its first use: about %d minutes on 2 cores, "
        "once per machine (`make llamacpp` builds it ahead)",
        LLAMACPP_VERSION, LLAMACPP_COMMIT, install_dir(), BUILD_MINUTES,
    )  # fmt: skip
    return build_llamacpp(jobs=jobs)


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_sdist(workdir: Path) -> Path:
    given = os.environ.get(ENV_SDIST)
    if given:
        sdist = Path(given).expanduser()
    else:
        logger.info("downloading %s==%s (sdist) from PyPI", SDIST_PACKAGE, LLAMACPP_VERSION)
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", f"{SDIST_PACKAGE}=={LLAMACPP_VERSION}", "-d", workdir),
            ],
            check=True,
        )
        sdist = workdir / f"{SDIST_PACKAGE.replace('-', '_')}-{LLAMACPP_VERSION}.tar.gz"
    if not sdist.is_file():
        raise FileNotFoundError(f"llama.cpp source archive {sdist} not found")
    digest = _sha256(sdist)
    if digest != _SDIST_SHA256:
        raise ValueError(
            f"{sdist} has sha256 {digest}, not the pinned {_SDIST_SHA256} of "
            f"{SDIST_PACKAGE}=={LLAMACPP_VERSION}"
        )
    return sdist


def _extract_source(sdist: Path, dest: Path) -> None:
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(_SDIST_ROOT)]
        if not members:
            raise ValueError(f"{sdist} holds no {_SDIST_ROOT}")
        for member in members:
            member.name = member.name[len(_SDIST_ROOT) :]
        archive.extractall(dest, members=[m for m in members if m.name], filter="data")


def _trim_source(source: Path) -> None:
    for entry in source.iterdir():
        if entry.name in _KEEP_SOURCE:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def build_llamacpp(jobs: int = 2) -> LlamaCpp:
    """Build the pinned llama.cpp tools into :func:`install_dir`, unless already built.

    Args:
        jobs: parallel compile jobs.

    Returns:
        The build.
    """
    root = install_dir()
    with _lock(root):
        if _is_current(root):
            logger.info("llama.cpp %s is up to date in %s", LLAMACPP_VERSION, root)
            return LlamaCpp(root)
        for tool in ("cmake", "c++"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"building llama.cpp needs {tool!r} on PATH")
        started = time.monotonic()
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            _extract_source(_fetch_sdist(Path(tmp)), root / "src")
        build = root / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(
            ["cmake", "-S", str(root / "src"), "-B", str(build), *generator, *_CMAKE_ARGS],
            check=True,
        )
        subprocess.run(
            ["cmake", "--build", str(build), "--parallel", str(jobs), "--target", *TOOLS],
            check=True,
        )
        (root / "bin").mkdir()
        for tool in TOOLS:
            shutil.copy2(build / "bin" / tool, root / "bin" / tool)
        shutil.rmtree(build)
        _trim_source(root / "src")
        seconds = round(time.monotonic() - started, 1)
        stamp = {**_expected_stamp(), "seconds": seconds, "jobs": jobs}
        (root / _STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        logger.info("built llama.cpp %s in %s s into %s", LLAMACPP_VERSION, seconds, root)
        return LlamaCpp(root)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m impq.llamacpp build [--jobs N] | dir``."""
    parser = argparse.ArgumentParser(prog="python -m impq.llamacpp")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the pinned tools unless already built")
    build.add_argument("--jobs", type=int, default=2)
    sub.add_parser("dir", help="print the install folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "build":
        build_llamacpp(jobs=args.jobs)
    else:
        sys.stdout.write(f"{install_dir()}\n")
    return 0
