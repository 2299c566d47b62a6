"""Versioned artifacts written atomically: JSON documents and safetensors files.

Every writer goes through a temporary file in the target folder and an ``os.replace``,
so a crash leaves either the old artifact or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

__all__ = [
    "SCHEMA_VERSION",
    "atomic_path",
    "fingerprint",
    "fingerprint_path",
    "read_json",
    "read_tensors",
    "write_json",
    "write_tensors",
]

SCHEMA_VERSION = 1


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, document: dict[str, Any], *, versioned: bool = True) -> Path:
    """Write ``document`` as JSON (with ``schema_version`` unless ``versioned`` is False)."""
    body = {"schema_version": SCHEMA_VERSION, **document} if versioned else document
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(body, indent=2, sort_keys=True, allow_nan=True) + "\n")
    return Path(path)


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON artifact, failing clearly when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: artifact missing; run the stage that writes it first")
    return json.loads(path.read_text())


def write_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> Path:
    """Write tensors as safetensors with string metadata (schema version included).

    The same tensors and metadata give the same bytes in every process: safetensors writes
    its JSON header in hash-map order, which varies between processes, so the header is
    written again with sorted keys (the tensors' offsets do not depend on that order).
    """
    meta = {"schema_version": str(SCHEMA_VERSION), **metadata}
    raw = save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)
    size = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + size]), sort_keys=True, separators=(",", ":"))
    header += " " * (-len(header) % 8)  # safetensors pads its header to 8 bytes with spaces
    with atomic_path(path) as tmp:
        tmp.write_bytes(len(header).to_bytes(8, "little") + header.encode() + raw[8 + size :])
    return Path(path)


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors artifact and its metadata."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: artifact missing; run the stage that writes it first")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    return load_file(str(path)), metadata


def fingerprint(*parts: bytes | str | torch.Tensor) -> str:
    """A short stable hash of strings, bytes and tensors (by their raw contents, so a
    bfloat16 tensor, which numpy has no type for, hashes as well as a float32 one)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            raw = part.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
            part = raw.numpy().tobytes()
        elif isinstance(part, str):
            part = part.encode()
        h.update(part)
    return h.hexdigest()[:16]


def fingerprint_path(path: str | Path) -> str:
    """Fingerprint of a file's contents, or of every file under a folder; '' if absent."""
    path = Path(path)
    if path.is_file():
        return fingerprint(path.read_bytes())
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return fingerprint(
            *(f"{p.relative_to(path)}\0{fingerprint(p.read_bytes())}" for p in files)
        )
    return ""
