import subprocess
import sys
from pathlib import Path

import pytest
import torch

from impq.artifacts import fingerprint, read_tensors, write_tensors

WRITE = """
import sys, torch
from impq.artifacts import write_tensors
tensors = {name: torch.arange(12, dtype=torch.int64).reshape(3, 4) + i
           for i, name in enumerate(["input_ids", "attention", "extra", "more"])}
meta = {key: key.upper() for key in ["source", "seed", "seqlen", "tokenizer", "bos", "split"]}
write_tensors(sys.argv[1], tensors, meta)
"""


def test_a_tensor_hashes_as_its_raw_bytes() -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert fingerprint(t) == fingerprint(t.numpy().tobytes())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.bool])
def test_tensors_numpy_cannot_hold_still_hash_by_contents(dtype: torch.dtype) -> None:
    t = torch.tensor([[1.0, 0.0], [3.0, 0.5]]).to(dtype)
    changed = t.clone()
    changed[0, 1] = 1
    assert fingerprint(t) == fingerprint(t.clone())
    assert fingerprint(t) != fingerprint(changed)
    assert fingerprint(torch.tensor(1.5, dtype=dtype)) != fingerprint(torch.tensor(0, dtype=dtype))


def test_the_same_tensors_are_the_same_bytes_in_every_process(tmp_path: Path) -> None:
    """safetensors orders its header by a per-process hash map; the artifact must not vary
    (DVC hashes the bytes: a rerun of ``prepare`` would otherwise change dvc.lock)."""
    paths = [tmp_path / f"{i}.safetensors" for i in range(4)]
    for path in paths:
        subprocess.run([sys.executable, "-c", WRITE, str(path)], check=True)
    assert len({path.read_bytes() for path in paths}) == 1
    tensors, meta = read_tensors(paths[0])
    assert meta["seqlen"] == "SEQLEN" and "schema_version" in meta
    assert torch.equal(tensors["more"], torch.arange(12).reshape(3, 4) + 3)
    write_tensors(tmp_path / "here.safetensors", tensors, {k: v for k, v in meta.items()})
    assert (tmp_path / "here.safetensors").read_bytes() == paths[0].read_bytes()
