"""What an export folder holds on disk: tensor headers and sizes, without loading tensors."""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["TensorHeader", "folder_bytes", "tensor_headers"]

_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


class TensorHeader:
    """The dtype and shape of one stored tensor, and its bytes."""

    __slots__ = ("dtype", "shape")

    def __init__(self, dtype: str, shape: list[int]) -> None:
        self.dtype = dtype
        self.shape = tuple(int(d) for d in shape)

    @property
    def numel(self) -> int:
        """Elements of the tensor."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data."""
        return self.numel * _DTYPE_BYTES[self.dtype]


def _files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"{single}: missing; {folder} holds no safetensors checkpoint")
    return [single]


def tensor_headers(folder: str | Path) -> dict[str, TensorHeader]:
    """Key -> header of every tensor of the (possibly sharded) safetensors checkpoint."""
    from safetensors import safe_open

    out: dict[str, TensorHeader] = {}
    for path in _files(Path(folder)):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                piece = f.get_slice(key)
                out[key] = TensorHeader(piece.get_dtype(), list(piece.get_shape()))
    return out


def folder_bytes(folder: str | Path) -> int:
    """Bytes of every file under ``folder`` (its size on disk, as shipped)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
