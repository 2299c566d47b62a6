"""Layer layouts: built in, inferred for any causal LM, declared for one model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, Qwen2MoeConfig

from impq.config import ConfigError
from impq.models import (
    LAYOUTS,
    LayerLayout,
    LayoutError,
    block_linears,
    block_param_counts,
    declare_layout,
    decoder_blocks,
    final_norm,
    get_layout,
    infer_layout,
    load_model,
    unfuse_experts,
)
from impq.models.tiny import (
    TINY_ARCHITECTURES,
    TINY_INFERRED_ARCHITECTURES,
    tiny_config,
    tiny_model,
)
from impq.pipeline.params import parse_params

ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _experts(n: int) -> tuple[str, ...]:
    return tuple(
        f"mlp.experts.{e}.{p}" for e in range(n) for p in ("gate_proj", "up_proj", "down_proj")
    )


EXPECTED_LINEARS = {
    "gemma3_text": ATTENTION + MLP,
    "phi3": ("self_attn.o_proj", "self_attn.qkv_proj", "mlp.gate_up_proj", "mlp.down_proj"),
    "olmo2": ATTENTION + MLP,
    "qwen2_moe": ATTENTION
    + _experts(4)
    + tuple(f"mlp.shared_expert.{p.split('.')[1]}" for p in MLP),
    "olmoe": ATTENTION + _experts(4),
}
"""Every nn.Linear of a block but the routers, by hand from each family's modeling code."""


def _ids(n: int = 2, seqlen: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, seqlen), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_layout_finds_every_block(arch: str) -> None:
    model = tiny_model(arch, num_layers=3)
    assert len(decoder_blocks(model)) == 3
    linears = block_linears(model, 1)
    assert len(linears) == 7
    assert all(isinstance(m, nn.Linear) for m in linears.values())
    assert get_layout(model).source == f"built-in {arch!r}"


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_inference_agrees_with_the_built_in_table(arch: str) -> None:
    model = tiny_model(arch, num_layers=2)
    inferred = infer_layout(model)
    assert inferred.blocks == LAYOUTS[arch].blocks
    assert set(inferred.linears) == set(LAYOUTS[arch].linears)


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


@pytest.mark.parametrize("arch", TINY_INFERRED_ARCHITECTURES)
def test_inferred_layout_names_every_linear_but_the_routers(
    arch: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny_model(arch, num_layers=3)
    assert arch not in LAYOUTS
    with caplog.at_level(logging.INFO, logger="impq.models.layout"):
        layout = get_layout(model)
    assert layout.blocks == "model.layers" and layout.source.startswith("inferred")
    assert "inferred" in caplog.text and "model.layers (3 x" in caplog.text
    for i in range(3):
        assert set(block_linears(model, i)) == set(EXPECTED_LINEARS[arch])
    if "moe" in arch:  # the router stays in float, and says so in the log
        assert "kept in float: mlp.gate.weight" in caplog.text
        assert not any("gate." in n or n.endswith("_gate") for n in block_linears(model, 0))


@pytest.mark.parametrize("arch", ["qwen2_moe", "olmoe"])
def test_a_moe_block_counts_every_experts_weights(arch: str) -> None:
    model = tiny_model(arch, num_layers=2)
    cfg = model.config
    h, e = cfg.hidden_size, cfg.num_experts
    q = cfg.num_attention_heads * cfg.head_dim if hasattr(cfg, "head_dim") else h
    kv = cfg.num_key_value_heads * (q // cfg.num_attention_heads)
    attention = h * q + 2 * h * kv + q * h
    experts = e * 3 * h * getattr(cfg, "moe_intermediate_size", cfg.intermediate_size)
    shared = 3 * h * cfg.shared_expert_intermediate_size if arch == "qwen2_moe" else 0
    assert block_param_counts(model) == [attention + experts + shared] * 2


def test_blocks_of_one_model_may_hold_different_linears() -> None:
    torch.manual_seed(0)
    config = Qwen2MoeConfig(**{**tiny_config("qwen2_moe").to_dict(), "mlp_only_layers": [1]})
    model = AutoModelForCausalLM.from_config(config).eval()
    unfuse_experts(model)
    assert set(block_linears(model, 0)) == set(EXPECTED_LINEARS["qwen2_moe"])
    assert set(block_linears(model, 1)) == set(ATTENTION + MLP)  # the dense block
    counts = block_param_counts(model)
    assert counts[0] == counts[2] != counts[1]


@pytest.mark.parametrize("arch", ["qwen2_moe", "olmoe"])
def test_split_experts_compute_what_the_fused_ones_do(arch: str) -> None:
    torch.manual_seed(3)
    fused = AutoModelForCausalLM.from_config(tiny_config(arch, 2)).eval()
    torch.manual_seed(3)
    split = AutoModelForCausalLM.from_config(tiny_config(arch, 2)).eval()
    assert unfuse_experts(split) == 2
    assert unfuse_experts(split) == 0  # nothing left to split
    ids = _ids()
    with torch.inference_mode():
        torch.testing.assert_close(split(ids).logits, fused(ids).logits, rtol=1e-4, atol=1e-5)
    assert not any(p.ndim >= 3 for p in split.parameters())


def test_fused_experts_are_refused_with_the_way_out() -> None:
    fused = AutoModelForCausalLM.from_config(tiny_config("olmoe", 2)).eval()
    with pytest.raises(LayoutError, match=r"3-D tensors .*load_model.*model\.layout\.linears"):
        get_layout(fused)


def test_an_experts_variant_that_cannot_be_split_is_named() -> None:
    model = AutoModelForCausalLM.from_config(tiny_config("olmoe", 2)).eval()
    model.model.layers[1].mlp.experts.is_concatenated = False
    with pytest.raises(LayoutError, match=r"model\.layers\.1\.mlp\.experts .*interleaved"):
        unfuse_experts(model)


def test_split_experts_save_and_load_like_the_hub_checkpoint(tmp_path: Path) -> None:
    model = tiny_model("olmoe", num_layers=2, seed=1)
    model.save_pretrained(tmp_path)
    loaded = load_model(parse_params({"model": {"source": str(tmp_path), "device": "cpu"}}).model)
    ids = _ids()
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert set(block_linears(loaded, 0)) == set(EXPECTED_LINEARS["olmoe"])


def test_a_declared_layout_overrides_inference_and_travels_with_the_model(
    tmp_path: Path,
) -> None:
    tiny_model("olmo2", num_layers=2).save_pretrained(tmp_path)
    params = {
        "model": {
            "source": str(tmp_path),
            "device": "cpu",
            "layout": {"blocks": "model.layers", "linears": ["mlp.*"]},
        }
    }
    model = load_model(parse_params(params).model)
    assert get_layout(model).source == "declared"
    assert set(block_linears(model, 1)) == set(MLP)
    assert model.config.impq_layout == {"blocks": "model.layers", "linears": ["mlp.*"]}

    model.save_pretrained(tmp_path / "again")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "again")
    assert get_layout(again).source == "declared"
    assert set(block_linears(again, 0)) == set(MLP)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (
            {"blocks": "model.decoder.layers", "linears": ["mlp.up_proj"]},
            r"model\.layout: .*'model\.decoder\.layers' does not exist.*"
            r"ModuleLists are: model\.layers \(2 x Olmo2DecoderLayer\)",
        ),
        (
            {"blocks": "model.norm", "linears": ["mlp.up_proj"]},
            r"'model\.norm' is a Olmo2RMSNorm, not a ModuleList",
        ),
        (
            {"blocks": "model.layers", "linears": ["mlp.fc1"]},
            r"'mlp\.fc1' names no linear .*linears of block 0 are: \['mlp\.down_proj'",
        ),
        (
            {"blocks": "model.layers", "linears": ["mlp"]},
            r"'mlp' is a Olmo2MLP, not an nn\.Linear",
        ),
    ],
)
def test_a_declared_layout_that_does_not_fit_says_what_exists(
    tmp_path: Path, layout: dict[str, object], message: str
) -> None:
    tiny_model("olmo2", num_layers=2).save_pretrained(tmp_path)
    cfg = parse_params({"model": {"source": str(tmp_path), "device": "cpu", "layout": layout}})
    with pytest.raises(ConfigError, match=message):
        load_model(cfg.model)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"blocks": "model.layers", "linears": []}, "model.layout.linears"),
        ({"blocks": "", "linears": ["mlp.up_proj"]}, "model.layout.blocks"),
        ({"blocks": "model.layers", "linears": ["mlp.up_proj", "mlp.up_proj"]}, "repeat"),
        ({"blocks": "model.layers", "linears": ["mlp."]}, "not a dotted path"),
        ({"blocks": "model.layers", "linear": ["mlp.up_proj"]}, "unknown key"),
    ],
)
def test_a_malformed_layout_fails_when_params_load(layout: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_params({"model": {"source": "x", "layout": layout}})


def test_a_declared_layout_is_checked_before_use() -> None:
    model = tiny_model("llama", num_layers=2)
    model.model.layers[1].mlp = nn.Identity()
    with pytest.raises(LayoutError, match=r"block 1 of model\.layers holds none"):
        declare_layout(model, LayerLayout("model.layers", ("mlp.*",)))


class _NoBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)


class _TwoStacks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(nn.Sequential(nn.Linear(4, 4)) for _ in range(3))
        self.decoder = nn.ModuleList(nn.Sequential(nn.Linear(4, 4)) for _ in range(3))


def test_a_model_without_blocks_says_to_declare_them() -> None:
    with pytest.raises(LayoutError, match=r"no ModuleList of blocks.*model\.layout"):
        get_layout(_NoBlocks())


def test_two_equally_likely_block_lists_are_not_guessed() -> None:
    with pytest.raises(LayoutError, match=r"encoder \(3 x Sequential\), decoder .*model\.layout"):
        get_layout(_TwoStacks())


def test_the_final_norm_follows_the_blocks() -> None:
    llama = tiny_model("llama", num_layers=2)
    assert final_norm(llama) is llama.model.norm
    stacks = _TwoStacks()
    declare_layout(stacks, LayerLayout("decoder", ("0",)))
    assert final_norm(stacks) is None


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.experts = nn.ModuleList(nn.Linear(4, 4) for _ in range(5))


class _Stack(nn.Module):
    """No _no_split_modules: the blocks are the outermost list, though experts are longer."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Block() for _ in range(2))


def test_the_longest_list_is_looked_for_outside_the_blocks() -> None:
    model = _Stack()
    layout = get_layout(model)
    assert layout.blocks == "layers" and "longest" in layout.source
    assert set(block_linears(model, 1)) == {f"experts.{e}" for e in range(5)}
