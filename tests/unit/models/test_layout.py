import pytest
from torch import nn

from impq.models import (
    UnknownArchitectureError,
    block_linears,
    block_param_counts,
    decoder_blocks,
    get_layout,
)
from impq.models.tiny import TINY_ARCHITECTURES, tiny_config, tiny_model


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_layout_finds_every_block(arch: str) -> None:
    model = tiny_model(arch, num_layers=3)
    assert len(decoder_blocks(model)) == 3
    linears = block_linears(model, 1)
    assert len(linears) == 7
    assert all(isinstance(m, nn.Linear) for m in linears.values())


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_param_counts_add_up_to_the_model(arch: str) -> None:
    model = tiny_model(arch, num_layers=3)
    cfg = tiny_config(arch)
    h, f = cfg.hidden_size, cfg.intermediate_size
    q = cfg.num_attention_heads * cfg.head_dim
    kv = cfg.num_key_value_heads * cfg.head_dim
    by_hand = h * q + 2 * h * kv + q * h + 3 * h * f
    assert block_param_counts(model) == [by_hand] * 3

    blocks = decoder_blocks(model)
    in_blocks = sum(p.numel() for p in blocks.parameters())
    outside = sum(p.numel() for n, p in model.named_parameters() if ".layers." not in n)
    assert in_blocks + outside == sum(p.numel() for p in model.parameters())
    norms_etc = in_blocks - sum(block_param_counts(model))
    assert 0 < norms_etc < in_blocks * 0.05  # only norms are left in a block


def test_unknown_architecture_says_how_to_declare_one() -> None:
    class Toy(nn.Module):
        class config:
            model_type = "toy"

    with pytest.raises(UnknownArchitectureError) as err:
        get_layout(Toy())
    assert "'toy'" in str(err.value) and "register_layout" in str(err.value)


def test_unknown_tiny_architecture() -> None:
    with pytest.raises(ValueError, match="choose from"):
        tiny_config("mamba")
