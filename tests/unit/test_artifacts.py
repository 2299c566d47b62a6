import pytest
import torch

from impq.artifacts import fingerprint


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
