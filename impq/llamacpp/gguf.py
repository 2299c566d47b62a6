"""GGUF for llama.cpp, written by llama.cpp's own tools and checked after writing.

Lifecycle of :func:`export_gguf`: the Hugging Face folder goes through the converter
(``convert_hf_to_gguf.py``, float weights) → ``llama-quantize --dry-run`` with one type
per block, which fails the export when llama.cpp would store a block in a wider type than
asked (K-quant rows must be a multiple of 256 weights) → ``llama-imatrix`` on the
pipeline's calibration set → ``llama-quantize`` with per-block ``--tensor-type`` overrides
→ a read-back of every tensor type with the ``gguf`` reader (:func:`check_gguf`).

Types per bit width (:data:`GGUF_TYPES`) are llama.cpp's K-quants: 256-weight super-blocks
with 16-bit super-block scales and small per-sub-block scales, which every llama.cpp CPU
and GPU backend runs and which use an importance matrix when one is given. Their true
storage (:func:`type_bits_per_weight`) is above the nominal bits: Q2_K 2.625, Q3_K 3.4375,
Q4_K 4.5, Q5_K 5.5, Q6_K 6.5625, Q8_0 8.5 bits per weight. The IQ2 types (2.06-2.5 bpw)
are closer to 2 bits but need an importance matrix for every tensor and run slower on
CPUs; they can be chosen through :class:`GgufSettings`. Token embeddings, the output head
and blocks the assignment leaves out stay in ``float_type``, as in the other backends.

:func:`llama_perplexity` scores a GGUF with ``llama-perplexity`` on the sweep's windows.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from impq.eval import PerplexityResult
from impq.footprint import Footprint
from impq.llamacpp.build import LlamaCpp, ensure_llamacpp

__all__ = [
    "GGUF_TYPES",
    "GgufExportError",
    "GgufFootprint",
    "GgufSettings",
    "LlamaCppToolError",
    "block_tensor_bytes",
    "check_gguf",
    "check_shapes",
    "compute_imatrix",
    "convert_to_gguf",
    "export_gguf",
    "gguf_block_types",
    "gguf_tensor_types",
    "llama_perplexity",
    "quantize_gguf",
    "score_windows",
    "type_bits_per_weight",
    "window_text",
]

log = logging.getLogger(__name__)

GGUF_TYPES: dict[int, str] = {2: "Q2_K", 3: "Q3_K", 4: "Q4_K", 5: "Q5_K", 6: "Q6_K", 8: "Q8_0"}
"""Bits of a block -> the llama.cpp type of its linear weights (the default mapping)."""

_CONVERTER_SHIM = Path(__file__).with_name("_convert_hf.py")
_BLOCK_TENSOR = re.compile(r"^blk\.(\d+)\.")
_FALLBACK = re.compile(
    r"warning: (?P<tensor>\S+)\s+- ncols\s+(?P<ncols>\d+) not divisible by\s+(?P<block>\d+) "
    r"\(required for type\s+(?P<wanted>\S+)\).*?-> falling back to\s+(?P<used>\S+)"
)
_RUNNING_NLL = re.compile(r"^\s*\d+\s+\S+\s+(\S+)\s+\S+\s*$", re.MULTILINE)
_N_CHUNKS = re.compile(r"calculating perplexity over (\d+) chunks")
_PERPLEXITY_RERUNS = 3
"""Runs of ``llama-perplexity`` beyond the first when its log lost per-window lines."""


class GgufExportError(ValueError):
    """A GGUF cannot hold the assignment as asked, or a written one does not hold it."""


class LlamaCppToolError(RuntimeError):
    """A llama.cpp tool exited with an error."""


def _type_name(name: str) -> str:
    import gguf

    try:
        return gguf.GGMLQuantizationType[name.upper()].name
    except KeyError:
        known = ", ".join(t.name for t in gguf.GGMLQuantizationType)
        raise ValueError(f"unknown llama.cpp tensor type {name!r}; choose from {known}") from None


class GgufSettings(BaseModel):
    """How an assignment becomes a GGUF file.

    Attributes:
        types: bits of a block -> llama.cpp type of every linear weight in it.
        float_type: the converter's output type, kept by token embeddings, output head
            and unassigned blocks unless set below.
        token_embedding_type: type of ``token_embd.weight``; None keeps ``float_type``.
        output_type: type of ``output.weight``; None keeps ``float_type``.
        imatrix: compute an importance matrix from the calibration set and quantize with it.
        threads: CPU threads of every llama.cpp tool.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    types: dict[int, str] = Field(default_factory=lambda: dict(GGUF_TYPES))
    float_type: Literal["f16", "bf16", "f32"] = "f16"
    token_embedding_type: str | None = None
    output_type: str | None = None
    imatrix: bool = True
    threads: int = Field(2, gt=0)

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: dict[int, str]) -> dict[int, str]:
        return {bits: _type_name(name) for bits, name in types.items()}

    @field_validator("token_embedding_type", "output_type")
    @classmethod
    def _known_type(cls, name: str | None) -> str | None:
        return None if name is None else _type_name(name)

    def block_type(self, bits: int) -> str:
        """The llama.cpp type of a block at ``bits``.

        Raises:
            GgufExportError: no type is mapped to ``bits``.
        """
        if bits not in self.types:
            raise GgufExportError(
                f"no llama.cpp type for {bits}-bit blocks; GGUF types are mapped for bits "
                f"{sorted(self.types)}"
            )
        return self.types[bits]

    @property
    def float_type_name(self) -> str:
        """``float_type`` as a tensor type name (``F16``, ``BF16``, ``F32``)."""
        return self.float_type.upper()


def type_bits_per_weight(type_name: str) -> float:
    """Stored bits per weight of a llama.cpp type, its block scales included."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[_type_name(type_name)]]
    return 8 * size / block


@dataclass(frozen=True)
class GgufFootprint(Footprint):
    """Bytes llama.cpp stores for one linear: each row cut into its type's blocks, each
    block a fixed number of bytes with its scales inside (the group size plays no part).

    Attributes:
        blocks: ``(bits, weights per block, bytes per block)`` of each mapped bit width.
    """

    blocks: tuple[tuple[int, int, int], ...] = ()

    @classmethod
    def of(cls, settings: GgufSettings) -> GgufFootprint:
        """The footprint of ``settings.types``."""
        import gguf

        sizes = gguf.GGML_QUANT_SIZES
        return cls(
            blocks=tuple(
                (bits, *sizes[gguf.GGMLQuantizationType[name]])
                for bits, name in sorted(settings.types.items())
            )
        )

    def linear(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """Stored bytes of one ``out_features x in_features`` weight at ``bits``' type.

        Raises:
            ValueError: no type is mapped to ``bits``.
        """
        for mapped, block, size in self.blocks:
            if mapped == bits:
                return out_features * -(-in_features // block) * size
        raise ValueError(
            f"no llama.cpp type for {bits} bits; mapped: {[b[0] for b in self.blocks]}"
        )


def _run(cmd: Sequence[str | int | Path], what: str) -> str:
    args = [str(c) for c in cmd]
    log.debug("running %s", " ".join(args))
    done = subprocess.run(args, capture_output=True, text=True, errors="replace")
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        raise LlamaCppToolError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return output


def _batch(seqlen: int) -> int:
    """A batch size of whole windows (the tools require ``n_batch % seqlen == 0``)."""
    return seqlen * max(1, 2048 // seqlen)


def convert_to_gguf(
    model_dir: Path, out_path: Path, float_type: str = "f16", tools: LlamaCpp | None = None
) -> Path:
    """Convert a Hugging Face folder (config, weights, tokenizer) to a float GGUF file."""
    tools = tools or ensure_llamacpp()
    import importlib.util

    if importlib.util.find_spec("sentencepiece") is None:
        raise LlamaCppToolError(
            "llama.cpp's convert_hf_to_gguf.py imports sentencepiece for every Llama, Qwen "
            "and Gemma model (BPE ones included); install it: pip install sentencepiece"
        )
    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: not a Hugging Face model folder (no config.json)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            # -P: the shim's folder must not shadow installed packages
            *(sys.executable, "-P", _CONVERTER_SHIM, tools.source, model_dir),
            *("--outfile", out_path, "--outtype", float_type),
        ],
        "convert_hf_to_gguf.py",
    )
    return out_path


def window_text(
    tokenizer: Any,
    ids: torch.Tensor,
    seqlen: int,
    max_windows: int | None = None,
    check: bool = True,
) -> tuple[str, int]:
    """Text whose tokens are the first windows of ``ids``, and how many windows it holds.

    One extra window of text is decoded when ``ids`` has it, so that re-tokenizing the
    text cannot change the last scored window at the cut. With ``check`` the text is
    tokenized back and a difference from ``ids`` is logged (llama.cpp tokenizes the text);
    calibration rows, drawn independently, merge at their seams and need no check.
    """
    flat = ids.reshape(-1)
    n = flat.numel() // seqlen
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"{flat.numel()} tokens do not fill one window of {seqlen}")
    end = min(flat.numel(), (n + 1) * seqlen)
    text: str = tokenizer.decode(flat[:end].tolist(), clean_up_tokenization_spaces=False)
    if not check:
        return text, n
    back = tokenizer(text, add_special_tokens=False)["input_ids"][: n * seqlen]
    differ = sum(a != b for a, b in zip(back, flat[: n * seqlen].tolist(), strict=False))
    differ += abs(len(back) - n * seqlen)
    if differ:
        log.warning("decoded windows re-tokenize with %d of %d ids changed", differ, n * seqlen)
    return text, n


def compute_imatrix(
    float_gguf: Path,
    calibration_text: str,
    seqlen: int,
    n_chunks: int,
    out_path: Path,
    threads: int = 2,
    tools: LlamaCpp | None = None,
) -> Path:
    """``llama-imatrix`` over ``n_chunks`` windows of ``seqlen`` tokens of the text."""
    tools = tools or ensure_llamacpp()
    with tempfile.TemporaryDirectory(prefix="impq-imatrix-") as tmp:
        text_file = Path(tmp) / "calibration.txt"
        text_file.write_text(calibration_text, encoding="utf-8")
        _run(
            [
                *(tools.tool("llama-imatrix"), "-m", float_gguf, "-f", text_file, "-o", out_path),
                *("-c", seqlen, "-b", _batch(seqlen), "--chunks", n_chunks),
                *("-t", threads, "--no-ppl"),
            ],
            "llama-imatrix",
        )
    return out_path


def gguf_tensor_types(path: Path) -> dict[str, str]:
    """Tensor name -> stored type name of every tensor in a GGUF file."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {t.name: gguf.GGMLQuantizationType(t.tensor_type).name for t in reader.tensors}


def _block_weights(path: Path) -> list[tuple[int, Any]]:
    import gguf

    out = []
    for t in gguf.GGUFReader(str(path)).tensors:
        match = _BLOCK_TENSOR.match(t.name)
        if match and len(t.shape) >= 2 and t.name.endswith(".weight"):
            out.append((int(match.group(1)), t))
    return out


def gguf_block_types(path: Path) -> dict[int, set[str]]:
    """Block index -> the stored types of its matrix weights (norms and biases left out)."""
    import gguf

    types: dict[int, set[str]] = {}
    for block, t in _block_weights(path):
        types.setdefault(block, set()).add(gguf.GGMLQuantizationType(t.tensor_type).name)
    return types


def block_tensor_bytes(path: Path, blocks: Sequence[int] | None = None) -> tuple[int, int]:
    """Stored bytes and weight count of the matrix weights of ``blocks`` (default: all)."""
    chosen = None if blocks is None else set(blocks)
    n_bytes = n_weights = 0
    for block, t in _block_weights(path):
        if chosen is None or block in chosen:
            n_bytes += int(t.n_bytes)
            n_weights += int(t.n_elements)
    return n_bytes, n_weights


def _expected_types(
    assignment: Mapping[int, int], settings: GgufSettings, blocks: Sequence[int]
) -> dict[int, str]:
    return {
        b: settings.block_type(assignment[b]) if b in assignment else settings.float_type_name
        for b in blocks
    }


def check_gguf(path: Path, assignment: Mapping[int, int], settings: GgufSettings) -> None:
    """Fail unless every block's matrix weights are stored in the type its bits ask for.

    Raises:
        GgufExportError: naming every tensor whose stored type differs.
    """
    import gguf

    weights = _block_weights(path)
    blocks = sorted({b for b, _ in weights})
    missing = sorted(set(assignment) - set(blocks))
    if missing:
        raise GgufExportError(f"{path}: assignment names blocks {missing} that it does not hold")
    expected = _expected_types(assignment, settings, blocks)
    wrong = [
        f"{t.name}: stored {gguf.GGMLQuantizationType(t.tensor_type).name}, expected {expected[b]}"
        for b, t in weights
        if gguf.GGMLQuantizationType(t.tensor_type).name != expected[b]
    ]
    if wrong:
        raise GgufExportError(
            f"{path} does not store the assignment ({len(wrong)} tensors):\n  " + "\n  ".join(wrong)
        )


def _quantize_args(
    float_gguf: Path, assignment: Mapping[int, int], settings: GgufSettings
) -> tuple[list[str], str]:
    blocks = sorted({b for b, _ in _block_weights(float_gguf)})
    outside = sorted(set(assignment) - set(blocks))
    if outside:
        raise GgufExportError(
            f"assignment names blocks {outside}; the model has blocks 0..{len(blocks) - 1}"
        )
    if not assignment:
        raise GgufExportError("the assignment is empty: nothing to quantize")
    expected = _expected_types(assignment, settings, blocks)
    args = [
        "--pure",
        "--token-embedding-type",
        settings.token_embedding_type or settings.float_type_name,
        "--output-tensor-type",
        settings.output_type or settings.float_type_name,
    ]
    for block, type_name in expected.items():
        args += ["--tensor-type", rf"^blk\.{block}\.={type_name}"]
    # the file-type label: the type most blocks use (the fewer bits on a tie)
    counts = Counter(assignment.values())
    label_bits = min(counts, key=lambda bits: (-counts[bits], bits))
    return args, settings.block_type(label_bits)


def check_shapes(
    float_gguf: Path,
    assignment: Mapping[int, int],
    settings: GgufSettings,
    tools: LlamaCpp | None = None,
) -> None:
    """Fail if llama.cpp would store a tensor in another type than its block asks for.

    Runs ``llama-quantize --dry-run`` with the export's overrides and reads llama.cpp's
    own fallback warnings, so the type named is the one llama.cpp would really use.

    Raises:
        GgufExportError: naming each such tensor, its row length and both types.
    """
    tools = tools or ensure_llamacpp()
    args, label = _quantize_args(float_gguf, assignment, settings)
    output = _run(
        [tools.tool("llama-quantize"), "--dry-run", *args, float_gguf, label],
        "llama-quantize --dry-run",
    )
    fallbacks = [
        f"{m['tensor']} ({m['ncols']} columns, not a multiple of {m['block']}): "
        f"{m['wanted']} -> llama.cpp would store {m['used']}"
        for m in _FALLBACK.finditer(output)
    ]
    if fallbacks:
        raise GgufExportError(
            "llama.cpp cannot store these tensors in the type their block's bits ask for "
            "and would silently use a wider one:\n  "
            + "\n  ".join(fallbacks)
            + "\nK-quants need rows whose length is a multiple of 256: choose a model whose "
            "hidden and intermediate sizes are, or map those bits to a type with smaller "
            "blocks in GgufSettings.types (Q4_0 and Q8_0 have blocks of 32)."
        )


def quantize_gguf(
    float_gguf: Path,
    out_path: Path,
    assignment: Mapping[int, int],
    settings: GgufSettings,
    imatrix: Path | None = None,
    tools: LlamaCpp | None = None,
) -> Path:
    """``llama-quantize`` a float GGUF with one type per block, then check what it wrote.

    Raises:
        GgufExportError: a block cannot be stored in its type (:func:`check_shapes`), or
            the written file does not hold the assignment (:func:`check_gguf`).
    """
    tools = tools or ensure_llamacpp()
    check_shapes(float_gguf, assignment, settings, tools)
    args, label = _quantize_args(float_gguf, assignment, settings)
    if imatrix is not None:
        args = ["--imatrix", str(imatrix), *args]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [tools.tool("llama-quantize"), *args, float_gguf, out_path, label, str(settings.threads)],
        "llama-quantize",
    )
    check_gguf(out_path, assignment, settings)
    return out_path


def export_gguf(
    model_dir: Path,
    assignment: Mapping[int, int],
    calibration_ids: torch.Tensor | None,
    out_path: Path,
    settings: GgufSettings | None = None,
    workdir: Path | None = None,
) -> Path:
    """Write the model in ``model_dir`` as a GGUF file with one llama.cpp type per block.

    Args:
        model_dir: a Hugging Face folder (config, weights, tokenizer).
        assignment: block index -> bits; each bit width must be in ``settings.types``.
        calibration_ids: token ids ``(n, seqlen)`` for the importance matrix (the
            pipeline's calibration set); None when ``settings.imatrix`` is False.
        out_path: the GGUF file to write.
        settings: types and tool options (:class:`GgufSettings` defaults).
        workdir: where the float GGUF and the importance matrix are kept (and reused when
            present); None uses a temporary folder.

    Returns:
        ``out_path``, checked by :func:`check_gguf`.
    """
    settings = settings or GgufSettings()
    for bits in set(assignment.values()):
        settings.block_type(bits)
    if settings.imatrix and (calibration_ids is None or calibration_ids.ndim != 2):
        raise ValueError("an importance matrix needs calibration token ids of shape (n, seqlen)")
    tools = ensure_llamacpp()
    with tempfile.TemporaryDirectory(prefix="impq-gguf-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        float_gguf = work / f"model-{settings.float_type}.gguf"
        if not float_gguf.is_file():
            convert_to_gguf(Path(model_dir), float_gguf, settings.float_type, tools)
        check_shapes(float_gguf, assignment, settings, tools)  # before the imatrix
        imatrix = None
        if settings.imatrix:
            assert calibration_ids is not None
            imatrix = work / "imatrix.gguf"
            if not imatrix.is_file():
                from transformers import AutoTokenizer

                from impq.data import without_bos

                tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
                seqlen = calibration_ids.shape[1]
                rows = without_bos(calibration_ids, tokenizer.bos_token_id)
                text, n = window_text(tokenizer, rows, seqlen, check=False)
                compute_imatrix(float_gguf, text, seqlen, n, imatrix, settings.threads, tools)
        return quantize_gguf(float_gguf, out_path, assignment, settings, imatrix, tools)


def llama_perplexity(
    gguf_path: Path,
    text: str,
    seqlen: int,
    n_windows: int,
    threads: int = 2,
    tools: LlamaCpp | None = None,
    add_bos: bool = False,
) -> PerplexityResult:
    """``llama-perplexity`` of a GGUF on ``text``, cut into windows of ``seqlen`` tokens.

    llama.cpp tokenizes ``text`` (``tokenizer.ggml.add_bos_token`` is overridden to
    ``add_bos``: with it llama.cpp prepends a BOS and overwrites the first token of every
    window with BOS, see :mod:`impq.eval.perplexity`), cuts it into non-overlapping
    windows of ``seqlen`` tokens and scores the first ``n_windows``. Unlike :func:`impq.eval.perplexity`
    it averages the NLL of the last ``seqlen - seqlen // 2 - 1`` predictions of each window
    only (each with at least half a window of context), which is llama.cpp's protocol.

    Each window's mean NLL comes from the running mean NLL that ``--ppl-output-type 1``
    prints after every window (6 decimals): window ``k``'s is ``k m_k - (k-1) m_(k-1)``,
    within ``k * 1e-6`` nats of llama.cpp's own value; their mean is ``m_n``.

    Returns:
        The perplexity ``exp(m_n)``, ``mean_nll`` ``m_n``, the number of scored tokens
        and ``window_nll``.
    """
    tools = tools or ensure_llamacpp()
    with tempfile.TemporaryDirectory(prefix="impq-ppl-") as tmp:
        text_file = Path(tmp) / "eval.txt"
        text_file.write_text(text, encoding="utf-8")
        cmd: list[str | int | Path] = [
            *(tools.tool("llama-perplexity"), "-m", gguf_path, "-f", text_file),
            *("-c", seqlen, "-b", _batch(seqlen), "--chunks", n_windows, "-t", threads),
            *("--ppl-output-type", 1),
            *("--override-kv", f"tokenizer.ggml.add_bos_token=bool:{str(add_bos).lower()}"),
        ]
        output = _run(cmd, "llama-perplexity")
        for _ in range(_PERPLEXITY_RERUNS):
            if len(_RUNNING_NLL.findall(output)) == n_windows:
                break
            # seen on a loaded machine: exit 0 with lines of its log lost (its logger is
            # asynchronous)
            log.warning("llama-perplexity lost per-window results; running it again")
            output = _run(cmd, "llama-perplexity")
    chunks = _N_CHUNKS.search(output)
    if chunks is None or int(chunks.group(1)) != n_windows:
        got = chunks.group(1) if chunks else "no"
        raise LlamaCppToolError(
            f"llama-perplexity scored {got} windows of {seqlen}, not {n_windows}: the text "
            "tokenizes to fewer tokens in llama.cpp than expected"
        )
    running = [float(m) for m in _RUNNING_NLL.findall(output)]
    if len(running) != n_windows:
        raise LlamaCppToolError(
            f"llama-perplexity printed {len(running)} running NLLs for {n_windows} windows:\n"
            + output[-2000:]
        )
    window_nll = tuple(
        k * m - (k - 1) * (running[k - 2] if k > 1 else 0.0) for k, m in enumerate(running, 1)
    )
    mean = running[-1]
    ppl = math.exp(mean) if math.isfinite(mean) else math.inf if mean > 0 else math.nan
    n_tokens = n_windows * (seqlen - seqlen // 2 - 1)
    return PerplexityResult(ppl, mean, n_tokens, n_windows, seqlen, window_nll)


def score_windows(
    gguf_path: Path,
    tokenizer: Any,
    ids: torch.Tensor,
    seqlen: int,
    max_windows: int | None = None,
    threads: int = 2,
    bos: int | None = None,
) -> PerplexityResult:
    """:func:`llama_perplexity` on the sweep's windows: ``max_windows`` windows of ``seqlen``
    from 1-D token ids ``ids`` (``eval_tokens``), given to llama.cpp as their decoded text;
    with ``bos`` llama.cpp starts each window with its BOS, as
    :func:`impq.eval.windows` does."""
    text, n = window_text(tokenizer, ids, seqlen, max_windows)
    return llama_perplexity(gguf_path, text, seqlen, n, threads, add_bos=bos is not None)
