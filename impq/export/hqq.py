"""HQQ export: HQQ's own checkpoint, read back from the per-module metadata in qmodel.pt."""

from __future__ import annotations

import math
from pathlib import Path

from impq.backends.hqq import code_bytes
from impq.export.backed import BackendExporter
from impq.export.base import ExportCheckError, StoredLinear

__all__ = ["HqqExporter"]

_TENSORS = ("W_q", "scale", "zero")


class HqqExporter(BackendExporter):
    """``config.json`` and ``qmodel.pt`` (``AutoHQQHFModel.save_quantized``)."""

    name = "hqq"

    def read_stored(self, out: Path) -> dict[str, StoredLinear]:
        """``nbits``, ``group_size`` and ``shape`` of each HQQ module, checked against its
        packed codes and scales.

        Raises:
            FileNotFoundError: ``qmodel.pt`` is missing.
            ExportCheckError: the codes or scales do not match the declared bits, shape
                and group size.
        """
        import torch

        path = Path(out) / "qmodel.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; is {out} an HQQ checkpoint?")
        weights = torch.load(path, map_location="cpu", weights_only=True)
        stored = {}
        for name, state in weights.items():
            if "W_q" not in state:
                continue
            bits, group_size = int(state["nbits"]), int(state["group_size"])
            n_weights = math.prod(int(d) for d in state["shape"])
            codes = state["W_q"].numel() * state["W_q"].element_size()
            if codes != code_bytes(n_weights, bits, group_size):
                raise ExportCheckError(
                    f"{name}: {codes} code bytes do not hold {n_weights} weights at {bits} bits "
                    f"as HQQ packs them ({code_bytes(n_weights, bits, group_size)} bytes)"
                )
            if state["scale"].numel() * group_size != n_weights:
                raise ExportCheckError(
                    f"{name}: {state['scale'].numel()} scales for {n_weights} weights in "
                    f"groups of {group_size}"
                )
            nbytes = sum(state[k].numel() * state[k].element_size() for k in _TENSORS)
            stored[name] = StoredLinear(bits, n_weights, group_size, nbytes)
        return stored
