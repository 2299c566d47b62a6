"""GPTQ export: GPTQModel's checkpoint, read back from its ``dynamic`` config and shapes.

The bits of a module are what a GPTQ runtime (GPTQModel, vLLM, SGLang) derives from the
checkpoint's ``quantization_config``: the first ``dynamic`` rule whose regex matches the
module name (``-:`` skips it, ``+:`` overrides the base ``bits``), else the base bits.
They are checked against the shapes of ``qweight`` (``ceil(in * bits / 32) x out``
int32), ``qzeros`` and ``scales`` (one row per group of inputs) and ``g_idx`` (one per
input): the layout :class:`impq.backends.gptq.GptqFootprint` counts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from impq.backends.gptq import GptqFootprint
from impq.export.backed import BackendExporter
from impq.export.base import ExportCheckError, StoredLinear
from impq.export.files import tensor_headers

__all__ = ["GptqExporter", "dynamic_override"]

_TENSORS = ("qweight", "qzeros", "scales", "g_idx")
_LAYOUT = GptqFootprint()


def dynamic_override(dynamic: dict[str, dict[str, Any]], module: str) -> dict[str, Any] | None:
    """The override the first matching ``dynamic`` rule gives ``module``.

    Returns:
        The rule's settings (``{}`` or e.g. ``{"bits": 2}``), or None when a ``-:`` rule
        skips the module. A module no rule matches gets ``{}`` (the base settings).
    """
    for pattern, settings in dynamic.items():
        if pattern.startswith("-:"):
            if re.match(pattern[2:], module):
                return None
        elif re.match(pattern.removeprefix("+:"), module):
            return dict(settings)
    return {}


class GptqExporter(BackendExporter):
    """A Hugging Face folder with GPTQModel's per-module ``dynamic`` bits."""

    name = "gptq"

    def read_stored(self, out: Path) -> dict[str, StoredLinear]:
        """Each GPTQ module's bits from the config, checked against its tensors' shapes.

        Raises:
            FileNotFoundError: ``config.json`` or the tensors are missing.
            ExportCheckError: no ``quantization_config``, a module stored although a
                ``-:`` rule skips it, or shapes that disagree with its bits and group size.
        """
        out = Path(out)
        config = json.loads((out / "config.json").read_text()).get("quantization_config")
        if not config or config.get("quant_method") != "gptq":
            raise ExportCheckError(f"{out}/config.json has no GPTQ quantization_config")
        dynamic = config.get("dynamic") or {}
        headers = tensor_headers(out)
        stored = {}
        for key in sorted(k for k in headers if k.endswith(".qweight")):
            name = key.removesuffix(".qweight")
            override = dynamic_override(dynamic, name)
            if override is None:
                raise ExportCheckError(f"{name}: stored quantized, but `dynamic` skips it")
            bits = int(override.get("bits", config["bits"]))
            group_size = int(override.get("group_size", config["group_size"]))
            missing = [k for k in _TENSORS if f"{name}.{k}" not in headers]
            if missing:
                raise ExportCheckError(f"{name}: no stored {missing}")
            t = {k: headers[f"{name}.{k}"] for k in _TENSORS}
            inputs, outputs = t["g_idx"].numel, t["scales"].shape[1]
            n_weights = inputs * outputs
            shape = (outputs, inputs, bits, group_size)
            checks = {
                "qweight bytes": (t["qweight"].nbytes, _LAYOUT.codes(*shape)),
                "qzeros bytes": (t["qzeros"].nbytes, _LAYOUT.zeros(*shape)),
                "scales rows": (t["scales"].shape[0] * group_size, inputs),
            }
            for what, (got, want) in checks.items():
                if got != want:
                    raise ExportCheckError(
                        f"{name}: {what} ({got}) disagrees with {bits} bits, group size "
                        f"{group_size} and {inputs} x {outputs} weights ({want})"
                    )
            nbytes = sum(h.nbytes for h in t.values())
            stored[name] = StoredLinear(bits, n_weights, group_size, nbytes)
        return stored
