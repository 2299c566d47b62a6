"""GGUF export for llama.cpp (``export.backend: llamacpp``): one file, ``model.gguf``.

The float model is saved as a Hugging Face folder and written by llama.cpp's own tools
(:func:`impq.llamacpp.gguf.export_gguf`: converter, importance matrix from the calibration
set, ``llama-quantize`` with one type per block). No torch quantizer stores K-quants, so
the in-process model of the stage is the written file dequantized by transformers' GGUF
loader (:meth:`GgufExporter.load`); what makes the check independent is
:meth:`GgufExporter.check_runtime`: llama.cpp itself loads the file and scores it, and its
per-window NLLs must agree with the dequantized model's under llama.cpp's statistic.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impq.eval import windows as eval_windows
from impq.export.base import ExportCheckError, StoredLinear
from impq.llamacpp.gguf import GgufFootprint, GgufSettings, export_gguf, score_windows

__all__ = ["GGUF_FILE", "GgufExporter", "half_window_nll"]

GGUF_FILE = "model.gguf"
"""The file an export folder ships (``llama-cli -m <out>/model.gguf``)."""

_HF_BLOCKS = "model.layers."
"""How the Hugging Face models llama.cpp converts name their decoder blocks."""


def half_window_nll(model: nn.Module, windows: torch.Tensor) -> list[float]:
    """Each window's mean NLL over the predictions ``llama-perplexity`` scores: the last
    ``seqlen - seqlen // 2 - 1`` of its ``seqlen`` tokens, each with half a window of context.
    """
    first = windows.shape[1] // 2
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for window in windows:
            x = window.unsqueeze(0).to(device)
            logits = model(x).logits[0, first:-1].double()
            nll = torch.nn.functional.cross_entropy(logits, x[0, first + 1 :])
            out.append(float(nll))
    return out


def _hf_names(arch: str, n_blocks: int) -> dict[str, str]:
    """GGUF tensor name (no suffix) -> the Hugging Face module name it was converted from."""
    import gguf

    try:
        model_arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    except StopIteration:
        raise ExportCheckError(
            f"the GGUF declares an architecture gguf-py does not know: {arch}"
        ) from None
    names: dict[str, str] = {}
    for hf, (_, gguf_name) in gguf.get_tensor_name_map(model_arch, n_blocks).mapping.items():
        if hf.startswith(_HF_BLOCKS):
            names.setdefault(gguf_name, hf)
    return names


class GgufExporter:
    """Writes ``model.gguf`` with llama.cpp's tools and checks it in llama.cpp.

    Attributes:
        settings: the llama.cpp types per bit width and the tools' options.
        ppl_rtol: the in-process model and the reload are the same dequantized file
            through the same loader: they agree to rounding.
        runtime_rtol: the largest relative difference between llama.cpp's perplexity of
            the file and the dequantized model's under the same statistic; llama.cpp's
            K-quant kernels quantize activations to 8 bits, which the dequantized model
            does not.
    """

    name = "llamacpp"
    ppl_rtol = 1e-6
    runtime_rtol = 2e-2

    def __init__(self, settings: GgufSettings | None = None) -> None:
        self.settings = settings or GgufSettings()

    @property
    def needs_calibration(self) -> bool:
        """True when the settings ask for an importance matrix (the default)."""
        return self.settings.imatrix

    def footprint(self, model: nn.Module) -> GgufFootprint:
        """llama.cpp's bytes per linear under ``settings.types``."""
        return GgufFootprint.of(self.settings)

    def export(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None,
        out: Path,
    ) -> nn.Module:
        """Write ``out/model.gguf``; return it dequantized into torch.

        ``out`` must already hold the model's tokenizer (the converter reads it); the
        group size plays no part (K-quants have their own 256-weight blocks).
        """
        out = Path(out)
        with tempfile.TemporaryDirectory(prefix="impq-gguf-export-") as tmp:
            folder = Path(tmp) / "hf"
            pretrained: Any = model  # a transformers model
            pretrained.save_pretrained(folder)
            for tokenizer_file in out.iterdir():
                if tokenizer_file.is_file():
                    (folder / tokenizer_file.name).write_bytes(tokenizer_file.read_bytes())
            export_gguf(folder, assignment, calibration, out / GGUF_FILE, self.settings, Path(tmp))
        return self.load(out, next(model.parameters()).device)

    def read_stored(self, out: Path) -> dict[str, StoredLinear]:
        """Bits (the type's inverse under ``settings.types``), weights and bytes of every
        quantized block weight, named as the Hugging Face module it came from.

        Raises:
            ExportCheckError: a block weight is stored in a type no bit width maps to, or
                its name has no Hugging Face counterpart.
        """
        import gguf

        reader = gguf.GGUFReader(str(Path(out) / GGUF_FILE))
        arch = str(reader.fields["general.architecture"].contents())
        n_blocks = int(reader.fields[f"{arch}.block_count"].contents())
        names = _hf_names(arch, n_blocks)
        bits_of = {name: bits for bits, name in self.settings.types.items()}
        floats = {"F32", "F16", "BF16"}
        stored = {}
        for t in reader.tensors:
            type_name = gguf.GGMLQuantizationType(t.tensor_type).name
            base = t.name.removesuffix(".weight")
            if not t.name.startswith("blk.") or len(t.shape) < 2 or type_name in floats:
                continue
            if type_name not in bits_of or base not in names:
                raise ExportCheckError(
                    f"{t.name}: stored as {type_name}, which no bit width of "
                    f"{dict(self.settings.types)} maps to, or with no Hugging Face name"
                )
            stored[names[base]] = StoredLinear(
                bits_of[type_name], int(t.n_elements), None, int(t.n_bytes)
            )
        return stored

    def load(self, out: Path, device: torch.device | str = "cpu") -> nn.Module:
        """``model.gguf`` dequantized into torch by transformers' GGUF loader."""
        from impq.config import ModelConfig
        from impq.models import load_model

        cfg = ModelConfig(source=str(out), gguf_file=GGUF_FILE, device="cpu")
        model: nn.Module = load_model(cfg)
        return model.to(device)

    def check_runtime(
        self,
        out: Path,
        ids: torch.Tensor,
        seqlen: int,
        max_windows: int | None,
        bos: int | None = None,
    ) -> dict[str, Any]:
        """llama.cpp loads ``model.gguf`` and scores the evaluation windows; its perplexity
        must match the dequantized model's under llama.cpp's statistic.

        Returns:
            ``ppl_llamacpp``, ``ppl_llamacpp_torch`` (the dequantized model, same
            statistic), their ``ppl_llamacpp_rel_diff`` and ``ppl_llamacpp_rtol``.

        Raises:
            ExportCheckError: they differ by more than ``runtime_rtol``.
        """
        from transformers import AutoTokenizer

        out = Path(out)
        tokenizer = AutoTokenizer.from_pretrained(str(out))
        runtime = score_windows(
            out / GGUF_FILE, tokenizer, ids, seqlen, max_windows, self.settings.threads, bos
        )
        windows = eval_windows(ids.reshape(-1), seqlen, runtime.n_windows, bos)
        nll = half_window_nll(self.load(out), windows)
        torch_ppl = math.exp(sum(nll) / len(nll))
        diff = abs(runtime.ppl - torch_ppl) / torch_ppl
        if not diff <= self.runtime_rtol:
            raise ExportCheckError(
                f"llama.cpp scores {out / GGUF_FILE} at perplexity {runtime.ppl}, the file "
                f"dequantized in torch at {torch_ppl} (same windows and statistic): relative "
                f"difference {diff}, tolerance {self.runtime_rtol}"
            )
        return {
            "ppl_llamacpp": runtime.ppl,
            "ppl_llamacpp_torch": torch_ppl,
            "ppl_llamacpp_rel_diff": diff,
            "ppl_llamacpp_rtol": self.runtime_rtol,
        }
