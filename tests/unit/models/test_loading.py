from pathlib import Path

import pytest
import torch

from impq.config import ModelConfig
from impq.models import block_param_counts, load_model, load_tokenizer, resolve_device
from impq.models.tiny import tiny_model


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_model_saved_to_a_local_directory_loads_back(tmp_path: Path, arch: str) -> None:
    model = tiny_model(arch, num_layers=2, seed=3)
    model.save_pretrained(tmp_path)
    loaded = load_model(ModelConfig(source=str(tmp_path), device="cpu"))
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)
    assert not loaded.training


def test_dtype_is_honoured(tmp_path: Path) -> None:
    tiny_model("llama", num_layers=1).save_pretrained(tmp_path)
    loaded = load_model(ModelConfig(source=str(tmp_path), dtype="bfloat16", device="cpu"))
    assert next(loaded.parameters()).dtype == torch.bfloat16


def test_reference_model_and_tokenizer(reference_model_dir: Path) -> None:
    cfg = ModelConfig(source=str(reference_model_dir), device="cpu")
    model = load_model(cfg)
    assert len(block_param_counts(model)) == 12
    ids = load_tokenizer(cfg)("def main():", add_special_tokens=False)["input_ids"]
    assert 0 < len(ids) < 12


def test_missing_local_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_model(ModelConfig(source=str(tmp_path / "absent")))


def test_cuda_without_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
