"""The exporter protocol, its registry, and the checks every exported model must pass.

An exporter writes the model an assignment describes in the format its runtime loads,
reads back from the written files alone what each quantized module stores, and reloads
the files through that runtime's library. The export stage compares the three: the
stored bits against the assignment (:func:`check_stored`), the stored bytes against the
budget, the reloaded perplexity against the in-process one.

Importing this module is cheap (no torch, no quantization library), so the params
validation can look names up in :data:`EXPORTERS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from impq.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from impq.footprint import Footprint

__all__ = [
    "EXPORTERS",
    "ExportCheckError",
    "Exporter",
    "RuntimeChecked",
    "StoredLinear",
    "check_stored",
    "get_exporter",
]


class ExportCheckError(ValueError):
    """An exported model does not hold what its assignment describes."""


@dataclass(frozen=True)
class StoredLinear:
    """What the files of an export say about one quantized linear.

    Attributes:
        bits: bits per weight the format declares for the module.
        n_weights: weights the stored codes cover (from the stored tensors' shapes).
        group_size: weights per scale/zero group (None: the format has no such groups).
        nbytes: bytes of the module's stored tensors (codes, scales, zeros, ...).
    """

    bits: int
    n_weights: int
    group_size: int | None
    nbytes: int


@runtime_checkable
class Exporter(Protocol):
    """Writes, reads back and reloads one runtime's format.

    Attributes:
        name: the registry name (``export.backend``).
        needs_calibration: ``export`` needs calibration token ids.
        ppl_rtol: the largest relative difference between the reloaded and the in-process
            perplexity that passes the check.
    """

    name: str
    needs_calibration: bool
    ppl_rtol: float

    def export(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None,
        out: Path,
    ) -> nn.Module:
        """Quantize the float ``model`` under ``assignment``, write it to the folder
        ``out`` and return the in-process quantized model (``model`` may be changed)."""
        ...

    def footprint(self, model: nn.Module) -> Footprint:
        """How the format stores one quantized linear of ``model`` (prices the budget)."""
        ...

    def read_stored(self, out: Path) -> dict[str, StoredLinear]:
        """Full module name -> what the files in ``out`` store for each quantized linear.

        Reads the files only (no model is built), and checks that the format's own
        metadata agrees with the stored tensors' shapes.

        Raises:
            ExportCheckError: the metadata and the tensors disagree.
        """
        ...

    def load(self, out: Path, device: torch.device | str = "cpu") -> nn.Module:
        """The exported model, loaded through the runtime's own library."""
        ...


@runtime_checkable
class RuntimeChecked(Protocol):
    """An exporter whose runtime is not a torch library (llama.cpp): the export stage
    also runs the files in that runtime and compares."""

    def check_runtime(
        self,
        out: Path,
        ids: torch.Tensor,
        seqlen: int,
        max_windows: int | None,
        bos: int | None = None,
    ) -> dict[str, Any]:
        """Score the files in ``out`` in the runtime on the evaluation windows (each
        starting with ``bos`` when given), compare
        with the reloaded model under the runtime's statistic; return the figures.

        Raises:
            ExportCheckError: the runtime and the reloaded model disagree.
        """
        ...


EXPORTERS = Registry(
    "export backend",
    {
        "quanto": "impq.export.quanto:QuantoExporter",
        "hqq": "impq.export.hqq:HqqExporter",
        "gptq": "impq.export.gptq:GptqExporter",
        "llamacpp": "impq.export.gguf_exporter:GgufExporter",
    },
)
"""``export.backend`` name -> ``module:class``; the one place where exporters are registered."""


def get_exporter(name: str) -> Exporter:
    """The exporter registered as ``name``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    exporter: Exporter = EXPORTERS.load(name)()
    return exporter


def check_stored(
    stored: Mapping[str, StoredLinear],
    expected: Mapping[str, tuple[int, int]],
    group_size: int,
) -> None:
    """Fail unless the export stores exactly the expected linears at their bits.

    Args:
        stored: what the files hold (:meth:`Exporter.read_stored`).
        expected: full module name -> (bits, weights) of every linear the assignment
            quantizes.
        group_size: the group size the model was quantized with.

    Raises:
        ExportCheckError: a linear is missing, extra, or stored at other bits, another
            size or another group size; the message lists every difference.
    """
    problems = [f"{name}: not stored quantized" for name in sorted(set(expected) - set(stored))]
    problems += [
        f"{name}: quantized, but the assignment leaves it in float"
        for name in sorted(set(stored) - set(expected))
    ]
    for name in sorted(set(stored) & set(expected)):
        bits, n_weights = expected[name]
        got = stored[name]
        if got.bits != bits:
            problems.append(f"{name}: stored at {got.bits} bits, assigned {bits}")
        if got.n_weights != n_weights:
            problems.append(f"{name}: stores {got.n_weights} weights, the model has {n_weights}")
        if got.group_size is not None and got.group_size != group_size:
            problems.append(f"{name}: group size {got.group_size}, expected {group_size}")
    if problems:
        raise ExportCheckError(
            f"the export does not match its assignment ({len(problems)} problems):\n  "
            + "\n  ".join(problems[:20])
        )
