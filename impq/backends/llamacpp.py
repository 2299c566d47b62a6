"""llama.cpp as a sweep backend: each assignment written as a GGUF file, scored by llama.cpp.

llama.cpp runs GGUF files in its own process, so this backend has no in-process model to
hand back: the in-process methods of :class:`~impq.backends.base.Backend` raise
:class:`~impq.backends.base.UnsupportedError`, and the sweep measures an assignment
through :meth:`LlamaCppBackend.scorer` instead. A :class:`GgufScorer` converts the float
model and computes the importance matrix once, then for each assignment runs
``llama-quantize`` (:func:`impq.llamacpp.gguf.quantize_gguf`, read back and checked),
measures the stored bytes of the blocks' weights and scores the file with
``llama-perplexity`` on the sweep's windows (:func:`impq.llamacpp.gguf.score_windows`).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impq.backends.base import UnsupportedError, expected_bytes
from impq.config import EvalConfig, ModelConfig
from impq.eval import PerplexityResult
from impq.llamacpp.build import LLAMACPP_COMMIT, LLAMACPP_VERSION, ensure_llamacpp
from impq.llamacpp.gguf import (
    GGUF_TYPES,
    GgufFootprint,
    GgufSettings,
    block_tensor_bytes,
    check_shapes,
    compute_imatrix,
    convert_to_gguf,
    quantize_gguf,
    score_windows,
    window_text,
)

__all__ = ["PPL_PROTOCOL", "GgufScorer", "LlamaCppBackend", "hf_folder"]

log = logging.getLogger(__name__)

PPL_PROTOCOL = "llama-perplexity: mean NLL of the second half of each window"
"""How this backend's perplexities differ from the in-process protocol (see
:func:`impq.llamacpp.gguf.llama_perplexity`)."""


def hf_folder(model: ModelConfig, workdir: Path) -> Path:
    """A Hugging Face folder of the float model: ``model.source`` when it is one, else a
    copy saved into ``workdir`` (a hub id, or a GGUF source dequantized on load)."""
    from impq.models import load_model, load_tokenizer

    source = Path(model.source).expanduser()
    if model.gguf_file is None and (source / "config.json").is_file():
        return source
    out = workdir / "hf"
    if not (out / "config.json").is_file():
        load_model(model).save_pretrained(out)
        load_tokenizer(model).save_pretrained(out)
    return out


class LlamaCppBackend:
    """Assignments as GGUF files for llama.cpp, measured by :class:`GgufScorer`."""

    name = "llamacpp"
    supported_bits = frozenset(GGUF_TYPES)
    data_free = False  # the importance matrix comes from the calibration set

    def _refuse(self, what: str) -> UnsupportedError:
        return UnsupportedError(
            f"backend {self.name!r} {what}: llama.cpp runs GGUF files out of process. The "
            "sweep scores it through LlamaCppBackend.scorer; export writes the file with "
            "impq.llamacpp.gguf.export_gguf; SPQE needs 'quanto' or 'hqq'."
        )

    def dequantize_weight(self, weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
        """Not offered (llama.cpp quantizes files, not tensors in this process)."""
        raise self._refuse("cannot dequantize a weight in process")

    def quantize(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None = None,
    ) -> nn.Module:
        """Not offered (no in-process model)."""
        raise self._refuse("returns no in-process model")

    def footprint(self, model: nn.Module) -> GgufFootprint:
        """llama.cpp's bytes for the default types (:class:`GgufSettings`); they price the
        budget the sweep checks a GGUF's stored bytes against."""
        return GgufFootprint.of(GgufSettings())

    def stored_bytes(self, model: nn.Module) -> int:
        """Not offered; :meth:`GgufScorer.measure` reports the GGUF's stored bytes."""
        raise self._refuse("measures stored bytes on the GGUF file")

    def save(self, model: nn.Module, path: Path) -> None:
        """Not offered; see :func:`impq.llamacpp.gguf.export_gguf`."""
        raise self._refuse("writes GGUF files with export_gguf")

    def load(self, path: Path, device: torch.device | str = "cpu") -> nn.Module:
        """Not offered; run the GGUF with llama.cpp."""
        raise self._refuse("cannot load a GGUF into torch")

    def scorer(
        self,
        model: ModelConfig,
        protocol: EvalConfig,
        workdir: Path,
        *,
        group_size: int,
        calibration: torch.Tensor | None,
        bos: int | None = None,
        settings: GgufSettings | None = None,
    ) -> GgufScorer:
        """A scorer of ``model`` whose intermediate files live in ``workdir``."""
        return GgufScorer(
            model, protocol, workdir, group_size=group_size, calibration=calibration,
            bos=bos, settings=settings,
        )  # fmt: skip


class GgufScorer:
    """Measures assignments of one model as GGUF files, sharing the float GGUF and the
    importance matrix between them.

    Implements :class:`impq.backends.base.Scorer`; each :meth:`measure` writes its own
    file, so threads may share a scorer once it is prepared.

    Args:
        model: the float checkpoint.
        protocol: the evaluation protocol (``seqlen``, ``max_windows``).
        workdir: where the intermediate files live.
        group_size: weights per group, pricing the budget in llama.cpp's bytes.
        calibration: calibration token ids, ``(n, seqlen)``, for the importance matrix
            (None: the settings must not ask for one); text only, no BOS column
            (llama.cpp's ``imatrix`` puts its own BOS first).
        bos: the BOS id every evaluation window starts with (None: no BOS).
        settings: the GGUF types and options.

    Attributes:
        fingerprint_parts: what its results depend on beyond the sweep's own inputs
            (llama.cpp version and commit, GGUF settings), for the sweep's cache key.
    """

    def __init__(
        self,
        model: ModelConfig,
        protocol: EvalConfig,
        workdir: Path,
        *,
        group_size: int,
        calibration: torch.Tensor | None,
        bos: int | None = None,
        settings: GgufSettings | None = None,
    ):
        self.model_config = model
        self.protocol = protocol
        self.group_size = group_size
        self.calibration = calibration
        self.bos = bos
        self.settings = settings or GgufSettings()
        self.workdir = Path(workdir)
        self.fingerprint_parts: tuple[str, ...] = (
            f"llama.cpp {LLAMACPP_VERSION} {LLAMACPP_COMMIT}",
            self.settings.model_dump_json(),
        )
        self.footprint = GgufFootprint.of(self.settings)
        self._tools = ensure_llamacpp()
        self._float: Path | None = None
        self._reference: PerplexityResult | None = None
        self._model: nn.Module | None = None
        self._tokenizer: Any = None

    def _prepare(self) -> Path:
        """The float GGUF, converted once."""
        if self._float is not None:
            return self._float
        from transformers import AutoTokenizer

        from impq.models import load_model

        self.workdir.mkdir(parents=True, exist_ok=True)
        folder = hf_folder(self.model_config, self.workdir)
        self._model = load_model(self.model_config)
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
        float_gguf = self.workdir / f"model-{self.settings.float_type}.gguf"
        if not float_gguf.is_file():
            convert_to_gguf(folder, float_gguf, self.settings.float_type, self._tools)
        self._float = float_gguf
        return float_gguf

    @property
    def model(self) -> nn.Module:
        """The float model (loaded once; its linear shapes price the budget)."""
        self._prepare()
        assert self._model is not None
        return self._model

    def _importance(self) -> Path | None:
        """The importance matrix of the calibration set (computed once), if asked for."""
        if not self.settings.imatrix:
            return None
        calibration = self.calibration
        if calibration is None:
            raise ValueError(
                "the GGUF settings ask for an importance matrix: give the scorer calibration ids"
            )
        imatrix = self.workdir / "imatrix.gguf"
        if not imatrix.is_file():
            seqlen = calibration.shape[1]
            text, n = window_text(self._tokenizer, calibration, seqlen, check=False)
            compute_imatrix(
                self._prepare(), text, seqlen, n, imatrix, self.settings.threads, self._tools
            )
        return imatrix

    def _score(self, gguf_path: Path, ids: torch.Tensor) -> PerplexityResult:
        ev = self.protocol
        return score_windows(
            gguf_path, self._tokenizer, ids, ev.seqlen, ev.max_windows, self.settings.threads,
            self.bos,
        )  # fmt: skip

    def reference(self, ids: torch.Tensor) -> PerplexityResult:
        """``llama-perplexity`` of the float GGUF on the same windows (computed once)."""
        float_gguf = self._prepare()
        if self._reference is None:
            self._reference = self._score(float_gguf, ids)
        return self._reference

    def measure(
        self, bits: dict[int, int], ids: torch.Tensor
    ) -> tuple[dict[str, Any], PerplexityResult]:
        """Write ``bits`` as a GGUF, check it, measure it and score it on ``ids``.

        Returns:
            Facts shaped like the sweep's (``stored_bytes``, ``expected_bytes``,
            ``bits_per_weight``, ``quantize_seconds``, ``blocks_quantized``) plus
            ``file_bytes`` (the whole GGUF on disk), ``gguf_types``, ``eval_seconds``,
            ``float_gguf_ppl`` and ``ppl_protocol``; and the perplexity.

        Raises:
            impq.llamacpp.gguf.GgufExportError: a block cannot be stored in its type.
        """
        float_gguf = self._prepare()
        check_shapes(float_gguf, bits, self.settings, self._tools)
        imatrix = self._importance()
        reference = self.reference(ids)
        handle, name = tempfile.mkstemp(prefix="assignment-", suffix=".gguf", dir=self.workdir)
        os.close(handle)
        out = Path(name)
        try:
            start = time.perf_counter()
            quantize_gguf(float_gguf, out, bits, self.settings, imatrix, self._tools)
            quantize_seconds = time.perf_counter() - start
            stored, n_weights = block_tensor_bytes(out, sorted(bits))
            file_bytes = out.stat().st_size
            start = time.perf_counter()
            result = self._score(out, ids)
        finally:
            out.unlink(missing_ok=True)
        group = self.group_size
        facts = {
            "stored_bytes": stored,
            "expected_bytes": expected_bytes(self.model, bits, group, self.footprint),
            "bits_per_weight": 8 * stored / n_weights if n_weights else math.nan,
            "quantize_seconds": quantize_seconds,
            "blocks_quantized": len(bits),
            "file_bytes": file_bytes,
            "gguf_types": ",".join(self.settings.block_type(bits[b]) for b in sorted(bits)),
            "eval_seconds": time.perf_counter() - start,
            "float_gguf_ppl": reference.ppl,
            "ppl_protocol": PPL_PROTOCOL,
        }
        return facts, result
