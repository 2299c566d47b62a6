"""Families without a built-in layout, end to end on tiny random models: the inferred
layout drives the model game, SPQE, LIM and every backend.

Gemma-3 alternates sliding-window and full attention (its window is shorter than the
inputs here), Phi-3 has fused ``qkv_proj`` / ``gate_up_proj``, Qwen2-MoE and OLMoE are
mixtures of experts (every expert's linears in the block's player, routers in float).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from impq.backends import UnsupportedError, get_backend
from impq.backends.base import expected_bytes
from impq.baselines.lim import lim_scores
from impq.estimate import PermutationSampling
from impq.eval import batch_nll
from impq.game import ModelGame, weight_quantizer
from impq.models import block_linears, decoder_blocks, get_layout
from impq.models.tiny import TINY_INFERRED_ARCHITECTURES, TINY_SLIDING_WINDOW, tiny_model

GROUP = 32
MIXED = {0: 2, 1: 4, 2: 2}  # block 3 stays in float
QUANTIZE = weight_quantizer("quanto", GROUP)
BACKEND_PARAMS = ["quanto", "hqq", pytest.param("gptq", marks=[pytest.mark.gptq, pytest.mark.slow])]
SEQLEN = 3 * TINY_SLIDING_WINDOW


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ids(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, SEQLEN), generator=torch.Generator().manual_seed(seed))


def _plain_nll(model: nn.Module, ids: torch.Tensor, low: np.ndarray) -> float:
    """Mean NLL of a copy of ``model`` quantized block by block, by its own forward."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for i in range(len(decoder_blocks(ref))):
            for lin in block_linears(ref, i).values():
                lin.weight.data = QUANTIZE(lin.weight.data, 2 if low[i] else 4)
    return batch_nll(ref, ids).sum().item() / (ids.shape[0] * (ids.shape[1] - 1))


@pytest.mark.parametrize("arch", TINY_INFERRED_ARCHITECTURES)
def test_game_equals_a_plain_forward_and_spqe_runs(arch: str) -> None:
    model = tiny_model(arch, num_layers=4, seed=1)
    assert get_layout(model).source.startswith("inferred")
    ids = _ids(3)
    configs = np.array([[1, 0, 1, 0], [0, 1, 1, 1]], dtype=bool)
    # the start-up check compares the block-by-block path with the model's forward
    with ModelGame(model, ids, QUANTIZE, batch_size=2, progress=False) as game:
        values = game(configs)
        result = PermutationSampling().estimate(game, 2 + 2 * 4, np.random.default_rng(0))
    for config, value in zip(configs, values, strict=True):
        assert value == pytest.approx(_plain_nll(model, ids, config), rel=1e-5)
    assert result.marginals is not None and result.marginals.shape == (2, 4)
    assert np.isfinite(result.values).all()
    # along each permutation the marginals add up to v(all low) - v(all high)
    ends = _plain_nll(model, ids, np.ones(4, bool)) - _plain_nll(model, ids, np.zeros(4, bool))
    np.testing.assert_allclose(result.marginals.sum(axis=1), ends, rtol=1e-4)


@pytest.mark.parametrize("arch", TINY_INFERRED_ARCHITECTURES)
def test_lim_agrees_with_output_hidden_states(arch: str) -> None:
    model = tiny_model(arch, num_layers=3)
    ids = _ids(2)
    with torch.inference_mode():
        hidden = model(ids, output_hidden_states=True).hidden_states
    # hidden_states[i] enters block i; the last entry is after the final norm: skip it
    by_hand = [
        -torch.nn.functional.cosine_similarity(hidden[i], hidden[i + 1], dim=-1).mean().item()
        for i in range(2)
    ]
    scores = lim_scores(model, ids, batch_size=1)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores[:2], by_hand, atol=1e-5)


@pytest.mark.parametrize("arch", TINY_INFERRED_ARCHITECTURES)
@pytest.mark.parametrize("name", BACKEND_PARAMS)
def test_a_mixed_assignment_on_every_backend(name: str, arch: str, tmp_path: Path) -> None:
    backend = get_backend(name)
    model = tiny_model(arch, num_layers=4)
    expected = expected_bytes(model, MIXED, GROUP, backend.footprint(model))
    float_weights = sum(m.weight.numel() for m in block_linears(model, 3).values())
    ids = _ids(2)
    calibration = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(1))

    q = backend.quantize(model, MIXED, GROUP, calibration)
    stored = backend.stored_bytes(q)
    if name == "gptq":  # GPTQModel splits Phi-3's gate_up_proj: one more g_idx per column
        split = sum(m.in_features for b in MIXED for m in block_linears(model, b).values())
        assert expected <= stored <= expected + 4 * split
    else:
        assert stored == expected  # the backend's footprint is exactly what it stores
    unassigned = block_linears(q, 3).values()  # in float (gptq splits Phi-3's gate_up_proj)
    assert all(type(m) is nn.Linear for m in unassigned)
    assert sum(m.weight.numel() for m in unassigned) == float_weights
    logits = q(ids).logits
    assert logits.shape == (2, SEQLEN, 256) and torch.isfinite(logits).all()

    if name == "hqq" and arch in ("qwen2_moe", "olmoe"):
        with pytest.raises(UnsupportedError, match="HQQ's loader"):
            backend.save(q, tmp_path / "ckpt")
        return
    backend.save(q, tmp_path / "ckpt")
    loaded = backend.load(tmp_path / "ckpt")
    assert backend.stored_bytes(loaded) == stored
    assert torch.equal(loaded(ids).logits, logits)


def test_two_bit_moe_blocks_store_half_the_expert_code_bytes() -> None:
    backend = get_backend("hqq")
    n_weights = sum(m.weight.numel() for m in block_linears(tiny_model("olmoe", 2), 0).values())
    at = {
        bits: backend.stored_bytes(backend.quantize(tiny_model("olmoe", 2), {0: bits}, GROUP))
        for bits in (2, 4)
    }
    assert at[4] - at[2] == n_weights * (4 - 2) // 8


class _FakeGptqLinear(nn.Module):
    """What GPTQModel's quantized linears look like to the coverage check."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        for name in ("qweight", "qzeros", "scales"):
            self.register_buffer(name, torch.zeros(1))


def test_gptq_coverage_check_names_the_linears_it_left_out() -> None:
    from impq.backends.base import set_submodule
    from impq.backends.gptq import _check_coverage

    model = tiny_model("phi3", num_layers=2)
    quantized = copy.deepcopy(model)
    for rel, linear in block_linears(model, 0).items():
        if rel != "mlp.down_proj":
            set_submodule(quantized, f"model.layers.0.{rel}", _FakeGptqLinear(linear))
    with pytest.raises(
        UnsupportedError, match=r"block 0 .*not quantized: \['model\.layers\.0\.mlp\.down_proj'\]"
    ):
        _check_coverage(model, quantized, {0: 4})
    set_submodule(
        quantized,
        "model.layers.0.mlp.down_proj",
        _FakeGptqLinear(model.model.layers[0].mlp.down_proj),
    )
    _check_coverage(model, quantized, {0: 4})
    with pytest.raises(UnsupportedError, match=r"block 0 .*layout names 0"):
        _check_coverage(model, quantized, {1: 4})


@pytest.mark.gptq
@pytest.mark.slow
def test_gptq_quantizes_only_the_linears_a_declared_layout_names() -> None:
    from impq.models import LayerLayout, declare_layout

    model = tiny_model("olmo2", num_layers=3)
    declare_layout(model, LayerLayout("model.layers", ("mlp.*",)))
    calibration = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(1))
    q = get_backend("gptq").quantize(model, {0: 2, 1: 4}, GROUP, calibration)
    quantized = {n for n, m in q.named_modules() if hasattr(m, "qweight")}
    assert quantized == {
        f"model.layers.{i}.mlp.{p}" for i in (0, 1) for p in ("gate_proj", "up_proj", "down_proj")
    }


_GPTQ_MISFIT = """
import time
import torch
import gptqmodel.utils.offload as offload
from transformers import AutoModelForCausalLM, Qwen2MoeConfig
from impq.backends import UnsupportedError, get_backend
from impq.models import unfuse_experts
from impq.models.tiny import tiny_config

# GPTQModel's Qwen2-MoE definition expects experts in every block; block 1 is dense
config = Qwen2MoeConfig(**{**tiny_config("qwen2_moe").to_dict(), "mlp_only_layers": [1]})
model = AutoModelForCausalLM.from_config(config).eval()
unfuse_experts(model)
# slow GPTQModel's block writer down: it is still writing block 0 when block 1 fails
write = offload._bundle_module_state_dict
offload._bundle_module_state_dict = lambda *a, **k: (time.sleep(2), write(*a, **k))[1]
calibration = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(1))
try:
    get_backend("gptq").quantize(model, {0: 2, 1: 4}, 32, calibration)
except UnsupportedError as err:
    time.sleep(4)  # a caller that goes on after the error, as a sweep does
    print(err)
"""


@pytest.mark.gptq
@pytest.mark.slow
def test_gptq_names_an_architecture_its_definition_does_not_fit() -> None:
    # in a process of its own: were the backend to remove GPTQModel's offload folder while
    # its writer threads still write there, GPTQModel would end the process
    env = {**os.environ, "GPTQMODEL_CPU_WORKERS": "2", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _GPTQ_MISFIT], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(
        r"backend 'gptq': GPTQModel cannot quantize Qwen2MoeForCausalLM .*mlp\.shared_expert",
        out.stdout,
    ), out.stdout[-2000:]


@pytest.mark.gptq
@pytest.mark.slow
def test_gptq_leaves_the_transformers_moe_classes_as_it_found_them() -> None:
    from transformers import AutoModelForCausalLM

    from impq.models import unfuse_experts
    from impq.models.tiny import tiny_config

    calibration = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(1))
    get_backend("gptq").quantize(tiny_model("qwen2_moe", 2), {0: 2, 1: 4}, GROUP, calibration)
    # GPTQModel's loader swaps in unfused MoE blocks while it runs; they are put back
    assert unfuse_experts(AutoModelForCausalLM.from_config(tiny_config("qwen2_moe", 2))) == 2


_SMALL: dict[str, object] = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    moe_intermediate_size=32,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=3,
    num_experts=4,
    num_local_experts=4,
    num_experts_per_tok=2,
    max_position_embeddings=512,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
MORE_FAMILIES = {
    "granite": {"logits_scaling": 4.0},
    "smollm3": {},
    "starcoder2": {},
    "stablelm": {},
    "cohere": {"logit_scale": 0.25},
    "phi": {},
    "gpt_neox": {},
    "falcon": {},
    "mixtral": {},
    "qwen3_moe": {},
    "granitemoe": {"logits_scaling": 4.0},
}
"""Families with their own final norm names or head scalings (README's list)."""


@pytest.mark.parametrize("model_type", sorted(MORE_FAMILIES))
def test_more_families_infer_a_layout_the_game_reproduces(model_type: str) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    from impq.models import unfuse_experts

    config = AutoConfig.for_model(model_type, **_SMALL, **MORE_FAMILIES[model_type])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    unfuse_experts(model)
    assert get_layout(model).source.startswith("inferred")
    assert all(block_linears(model, i) for i in range(3))
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with ModelGame(model, ids, QUANTIZE, progress=False) as game:  # start-up check inside
        assert np.isfinite(game(np.array([[True, False, True]]))).all()


def test_gpt2_conv1d_blocks_are_refused_by_name() -> None:
    from transformers import AutoModelForCausalLM, GPT2Config

    from impq.models import LayoutError

    model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=2))
    with pytest.raises(LayoutError, match=r"transformer\.h hold no nn\.Linear"):
        get_layout(model)


@pytest.mark.parametrize("name", ["quanto", "hqq"])
def test_a_linear_the_group_size_does_not_fit_is_named(name: str) -> None:
    model = tiny_model("phi3", num_layers=2)  # o_proj, qkv_proj, gate_up_proj: 64 inputs
    match = r"model\.layers\.0\.self_attn\.o_proj: .*input width 64"
    with pytest.raises(UnsupportedError, match=match):
        get_backend(name).quantize(model, {0: 4}, 128)
