"""Resumable estimation: per-permutation results kept on disk, keyed by what produced them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from impq.artifacts import atomic_path
from impq.estimate.result import write_npz

__all__ = ["Checkpoint"]

log = logging.getLogger(__name__)


class Checkpoint:
    """A set of arrays saved atomically to one ``.npz`` file under a key.

    The key is a fingerprint of everything the saved numbers depend on (model,
    calibration, estimator settings). A file written under another key is ignored (and
    the log says so), so a change of params never resumes stale work.
    """

    def __init__(self, path: str | Path, key: str) -> None:
        self.path = Path(path)
        self.key = key

    def load(self) -> dict[str, np.ndarray] | None:
        """The saved arrays, or None when there is no usable checkpoint."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable checkpoint %s: %s", self.path, err)
            return None
        if str(arrays.pop("key", "")) != self.key:
            log.warning(
                "checkpoint %s was written for other params, model or calibration; starting over",
                self.path,
            )
            return None
        return arrays

    def save(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace the checkpoint with ``arrays``, atomically."""
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            write_npz(f, {"key": np.array(self.key), **arrays})

    def clear(self) -> None:
        """Delete the checkpoint file, if any."""
        self.path.unlink(missing_ok=True)
