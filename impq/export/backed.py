"""Exporters whose in-process model is an impq quantization backend's.

Quantize with the backend, write with its ``save`` (the library's own format), reload
with its ``load`` (the library's own loader). A subclass adds the reader of the format.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from impq.backends import Backend, get_backend
from impq.footprint import Footprint

__all__ = ["BackendExporter"]


class BackendExporter:
    """Shared by the quanto, HQQ and GPTQ exporters (``name`` is the backend's name).

    Attributes:
        ppl_rtol: the reload goes through the same kernels as the in-process model, so
            the perplexities agree to rounding.
    """

    name: str
    ppl_rtol = 1e-6

    @property
    def backend(self) -> Backend:
        """The quantization backend of the same name."""
        return get_backend(self.name)

    @property
    def needs_calibration(self) -> bool:
        """True for a backend that is not data-free (GPTQ)."""
        return not self.backend.data_free

    def export(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None,
        out: Path,
    ) -> nn.Module:
        """Quantize with the backend and write its checkpoint to ``out``."""
        backend = self.backend
        quantized = backend.quantize(model, assignment, group_size, calibration)
        backend.save(quantized, Path(out))
        return quantized

    def footprint(self, model: nn.Module) -> Footprint:
        """The backend's footprint."""
        return self.backend.footprint(model)

    def load(self, out: Path, device: torch.device | str = "cpu") -> nn.Module:
        """The backend's loader (the library's own; see each backend's module)."""
        return self.backend.load(Path(out), device)
