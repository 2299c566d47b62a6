"""Quanto export: quanto's checkpoint layout, read back from its qmap and tensor headers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from impq.backends.quanto import QMAP_FILE
from impq.export.backed import BackendExporter
from impq.export.base import ExportCheckError, StoredLinear
from impq.export.files import tensor_headers

__all__ = ["QuantoExporter"]

_QINT = re.compile(r"qint(\d+)")


class QuantoExporter(BackendExporter):
    """``config.json``, ``model.safetensors``, ``quanto_qmap.json`` (see the quanto backend)."""

    name = "quanto"

    def read_stored(self, out: Path) -> dict[str, StoredLinear]:
        """Bits and group size from the qmap, checked against the packed codes' size.

        A group size of null (quanto's qint8) means one scale per output row.

        Raises:
            FileNotFoundError: the qmap or the tensors are missing.
            ExportCheckError: a qmap entry has no group size or tensors, or its codes do
                not hold its weights (``groups x group size``, or ``rows x columns`` of
                the codes without groups) at the declared bits.
        """
        out = Path(out)
        qmap = json.loads((out / QMAP_FILE).read_text())
        headers = tensor_headers(out)
        stored = {}
        for name, entry in qmap.items():
            match = _QINT.fullmatch(str(entry.get("weights")))
            if match is None or "group_size" not in entry:
                raise ExportCheckError(f"{name}: qmap entry {entry} names no qintN and group size")
            bits, group_size = int(match.group(1)), entry["group_size"]
            mine = {k: h for k, h in headers.items() if k.startswith(f"{name}.")}
            codes = [h for k, h in mine.items() if k.startswith(f"{name}.weight._data")]
            scale = mine.get(f"{name}.weight._scale")
            if not codes or scale is None:
                raise ExportCheckError(f"{name}: in the qmap but without stored codes and scales")
            if group_size is None:  # per row: unpacked codes, one scale per row
                n_weights = sum(h.numel for h in codes)
                if scale.numel != codes[0].shape[0]:
                    raise ExportCheckError(
                        f"{name}: {scale.numel} scales for {codes[0].shape[0]} rows of codes"
                    )
            else:
                group_size = int(group_size)
                n_weights = scale.numel * group_size
            code_bytes = sum(h.nbytes for h in codes)
            if code_bytes * 8 != n_weights * bits:
                raise ExportCheckError(
                    f"{name}: {code_bytes} code bytes do not hold {n_weights} weights at {bits} bits"
                )
            nbytes = sum(h.nbytes for k, h in mine.items() if not k.endswith(".bias"))
            stored[name] = StoredLinear(bits, n_weights, group_size, nbytes)
        return stored
