"""Each backend on tiny Llama-3, Gemma-2 and Qwen-3 models: real sizes, forward, save/load."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from impq.backends import BACKENDS, UnsupportedError, get_backend
from impq.backends.base import backends_storing, expected_bytes, set_submodule
from impq.eval import batch_nll
from impq.models import block_linears
from impq.models.tiny import TINY_ARCHITECTURES, tiny_model

GROUP = 32
MIXED = {0: 2, 1: 4, 2: 2}  # block 3 stays in float

PRECISIONS = {"quanto": (2, 4, 8), "hqq": (2, 3, 4, 8), "gptq": (2, 3, 4, 8)}
"""The bits each backend's library stores (optimum-quanto has no 3-bit type)."""
IN_PROCESS = [
    pytest.param(name, bits, marks=[pytest.mark.slow] if name == "hqq" else [])
    for name in ("quanto", "hqq")
    for bits in PRECISIONS[name]
]

BACKEND_PARAMS = [
    "quanto",
    "hqq",
    pytest.param("gptq", marks=[pytest.mark.gptq, pytest.mark.slow]),
]


def _quantize(name: str, model: nn.Module, assignment: dict[int, int]) -> nn.Module:
    calibration = torch.randint(0, model.config.vocab_size, (4, 32), generator=_gen())
    return get_backend(name).quantize(model, assignment, GROUP, calibration)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _bits_read_back(name: str, model: nn.Module) -> dict[str, int]:
    """Module name -> bits of each quantized linear, as the backend's library records them."""
    read = {
        "quanto": lambda m: m.weight_qtype.bits if hasattr(m, "weight_qtype") else None,
        "hqq": lambda m: m.meta["nbits"] if hasattr(m, "meta") else None,
        "gptq": lambda m: m.bits if hasattr(m, "qweight") else None,
    }[name]
    return {n: int(b) for n, m in model.named_modules() if (b := read(m)) is not None}


def test_each_backend_stores_the_precisions_its_library_has() -> None:
    assert {name: tuple(sorted(get_backend(name).supported_bits)) for name in PRECISIONS} == (
        PRECISIONS
    )
    assert backends_storing(3) == ["gptq", "hqq", "llamacpp"]
    assert backends_storing(8) == ["gptq", "hqq", "llamacpp", "quanto"]


@pytest.mark.parametrize(("name", "bits"), IN_PROCESS)
def test_each_precision_reads_back_stores_its_footprint_and_round_trips(
    name: str, bits: int, tmp_path: Path
) -> None:
    backend = get_backend(name)
    model = tiny_model("llama", num_layers=2)
    assignment = {0: bits}
    expected = expected_bytes(model, assignment, GROUP, backend.footprint(model))
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=_gen())

    q = _quantize(name, model, assignment)
    assert backend.stored_bytes(q) == expected
    read = _bits_read_back(name, q)
    assert len(read) == len(block_linears(model, 0)) and set(read.values()) == {bits}
    logits = q(ids).logits
    assert torch.isfinite(logits).all()

    backend.save(q, tmp_path / "ckpt")
    loaded = backend.load(tmp_path / "ckpt")
    assert _bits_read_back(name, loaded) == read
    assert backend.stored_bytes(loaded) == expected
    assert torch.equal(loaded(ids).logits, logits)


@pytest.mark.gptq
@pytest.mark.slow
def test_gptq_reads_back_every_precision_in_one_model_and_stores_its_footprint() -> None:
    """One GPTQModel run with blocks at 2, 3, 4 and 8 bits (its ``dynamic`` overrides)."""
    backend = get_backend("gptq")
    model = tiny_model("llama", num_layers=4)
    assignment = dict(enumerate(PRECISIONS["gptq"]))
    expected = expected_bytes(model, assignment, GROUP, backend.footprint(model))

    q = _quantize("gptq", model, assignment)
    assert backend.stored_bytes(q) == expected
    read = _bits_read_back("gptq", q)
    assert read == {
        f"model.layers.{i}.{rel}": bits
        for i, bits in assignment.items()
        for rel in block_linears(model, i)
    }
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=_gen())
    assert torch.isfinite(q(ids).logits).all()


def test_quanto_refuses_3_bits_and_names_the_backends_that_store_them() -> None:
    backend = get_backend("quanto")
    model = tiny_model("llama", num_layers=2)
    message = r"not 3 \(optimum-quanto.*no 3-bit type\); backends storing 3 bits: \['gptq', 'hqq'"
    with pytest.raises(UnsupportedError, match=message):
        backend.quantize(model, {0: 4, 1: 3}, GROUP)
    with pytest.raises(UnsupportedError, match=message):
        backend.dequantize_weight(torch.randn(8, 64), 3, GROUP)
    assert all(type(m) is nn.Linear for b in (0, 1) for m in block_linears(model, b).values())


def test_hqq_3_bit_codes_are_padded_words_and_quanto_8_bit_keeps_one_scale_per_row() -> None:
    """HQQ packs 10 3-bit codes per int32 word across groups; quanto's qint8 has no groups."""
    model = tiny_model("llama", num_layers=1)
    up = block_linears(model, 0)["mlp.up_proj"]  # 128 x 64: 256 groups of 32
    out, inp = up.out_features, up.in_features
    hqq = _quantize("hqq", model, {0: 3})
    codes = block_linears(hqq, 0)["mlp.up_proj"].W_q
    assert codes.dtype == torch.int32 and codes.shape == (26, GROUP)  # 256 groups padded to 260
    assert codes.numel() * 4 == 3328 > out * inp * 3 // 8

    quanto = _quantize("quanto", tiny_model("llama", num_layers=1), {0: 8})
    weight = block_linears(quanto, 0)["mlp.up_proj"].weight
    assert weight._data.dtype == torch.int8 and weight._data.shape == (out, inp)
    assert weight._scale.numel() == out and not hasattr(weight, "_shift")


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("name", BACKEND_PARAMS)
def test_mixed_assignment_size_forward_and_round_trip(name: str, arch: str, tmp_path: Path) -> None:
    backend = get_backend(name)
    model = tiny_model(arch, num_layers=4)
    expected = expected_bytes(model, MIXED, GROUP, backend.footprint(model))
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=_gen())

    q = _quantize(name, model, MIXED)
    stored = backend.stored_bytes(q)
    assert stored == expected  # the backend's footprint is exactly what it stores
    assert type(block_linears(q, 3)["mlp.down_proj"]) is nn.Linear  # unassigned: float

    logits = q(ids).logits
    assert logits.shape == (2, 24, model.config.vocab_size)
    assert torch.isfinite(logits).all()
    assert torch.isfinite(batch_nll(q, ids)).all()  # runs under torch.inference_mode

    backend.save(q, tmp_path / "ckpt")
    loaded = backend.load(tmp_path / "ckpt")
    assert backend.stored_bytes(loaded) == stored
    assert torch.equal(loaded(ids).logits, logits)


@pytest.mark.parametrize("name", BACKEND_PARAMS)
def test_two_bit_blocks_store_half_the_code_bytes_of_four_bit(name: str) -> None:
    backend = get_backend(name)
    model = tiny_model("llama", num_layers=2)
    n_weights = sum(m.weight.numel() for m in block_linears(model, 0).values())
    at = {
        bits: backend.stored_bytes(_quantize(name, tiny_model("llama", 2), {0: bits}))
        for bits in (2, 4)
    }
    code_diff = n_weights * (4 - 2) // 8
    zero_diff = 0 if name != "gptq" else n_weights // GROUP * (4 - 2) // 8  # packed zeros
    assert at[4] - at[2] == code_diff + zero_diff


@pytest.mark.parametrize(("dtype", "width"), [(torch.float32, 4), (torch.bfloat16, 2)])
def test_quanto_metadata_takes_the_model_dtype_and_hqq_16_bits(
    dtype: torch.dtype, width: int
) -> None:
    for name, meta in (("quanto", width), ("hqq", 2)):
        backend = get_backend(name)
        model = tiny_model("llama", num_layers=2).to(dtype)
        footprint = backend.footprint(model)
        assert footprint.scale_bytes == footprint.zero_bytes == meta
        expected = expected_bytes(model, {0: 2}, GROUP, footprint)
        assert backend.stored_bytes(backend.quantize(model, {0: 2}, GROUP)) == expected


@pytest.mark.parametrize("name", ["quanto", "hqq"])
def test_in_place_quantization_returns_the_same_model(name: str) -> None:
    model = tiny_model("qwen3", num_layers=2)
    assert _quantize(name, model, {1: 2}) is model


@pytest.mark.parametrize(("name", "bad"), [("quanto", 3), ("hqq", 5)])
def test_bad_requests_raise_and_leave_the_model_alone(name: str, bad: int) -> None:
    backend = get_backend(name)
    model = tiny_model("llama", num_layers=2)
    supported = re.escape(str(list(PRECISIONS[name])))
    with pytest.raises(UnsupportedError, match=rf"{supported} bits, not {bad}"):
        backend.quantize(model, {0: 4, 1: bad}, GROUP)
    with pytest.raises(UnsupportedError, match=r"blocks 0\.\.1"):
        backend.quantize(model, {5: 4}, GROUP)
    with pytest.raises(UnsupportedError, match="group size"):
        backend.quantize(model, {0: 4}, 48)
    assert all(type(m) is nn.Linear for b in (0, 1) for m in block_linears(model, b).values())


@pytest.mark.parametrize("name", ["quanto", "hqq"])
def test_model_without_decoder_blocks_is_unsupported(name: str) -> None:
    model = tiny_model("llama", num_layers=2)
    model.config.model_type = "no-such-arch"  # no built-in layout: inference must find blocks
    model.model.layers = nn.Sequential(*model.model.layers)  # type: ignore[assignment]
    with pytest.raises(UnsupportedError, match="cannot infer the decoder blocks"):
        get_backend(name).quantize(model, {0: 4}, GROUP)


def test_registry_lists_valid_names_on_error() -> None:
    with pytest.raises(ValueError, match=r"\['gptq', 'hqq', 'llamacpp', 'quanto'\]"):
        get_backend("awq")
    assert set(BACKENDS) == {"quanto", "hqq", "gptq", "llamacpp"}


@pytest.mark.gptq
def test_gptq_needs_calibration() -> None:
    with pytest.raises(ValueError, match="calibration"):
        get_backend("gptq").quantize(tiny_model("llama", 2), {0: 4}, GROUP, None)


def test_gptq_dequantizes_no_weight_on_its_own() -> None:
    with pytest.raises(UnsupportedError, match="weight_database"):
        get_backend("gptq").dequantize_weight(torch.randn(8, 64), 2, GROUP)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["quanto", "hqq"])
def test_cuda_matches_cpu_sizes_and_runs(name: str) -> None:
    backend = get_backend(name)
    every = dict(enumerate(PRECISIONS[name]))  # a block at each precision
    cpu = _quantize(name, tiny_model("qwen3", num_layers=4), every)
    gpu = _quantize(name, tiny_model("qwen3", num_layers=4).cuda(), every)
    ids = torch.randint(0, 256, (2, 24), generator=_gen())
    assert backend.stored_bytes(gpu) == backend.stored_bytes(cpu)
    torch.testing.assert_close(gpu(ids.cuda()).logits.cpu(), cpu(ids).logits, rtol=0, atol=5e-2)


@pytest.mark.gptq
@pytest.mark.slow
def test_gptq_blocks_on_float_inputs_match_the_sequential_run_where_inputs_agree() -> None:
    """Block 0's q/k/v see the float embeddings in both ways of quantizing, so their packed
    codes equal GPTQModel's; later blocks see float inputs here, quantized ones there."""
    backend = get_backend("gptq")
    model = tiny_model("llama", num_layers=3)
    calibration = torch.randint(0, model.config.vocab_size, (4, 32), generator=_gen())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    blocks = backend.quantize_blocks(model, [0, 1, 2], 2, GROUP, calibration)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    sequential = backend.quantize(model, dict.fromkeys(range(3), 2), GROUP, calibration)

    for rel in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
        ours, theirs = blocks[0][rel], block_linears(sequential, 0)[rel]
        for name in ("qweight", "qzeros", "g_idx"):
            assert torch.equal(getattr(ours, name), getattr(theirs, name)), (rel, name)
        torch.testing.assert_close(ours.scales, theirs.scales)
    later = (
        blocks[2]["mlp.down_proj"].qweight,
        block_linears(sequential, 2)["mlp.down_proj"].qweight,
    )
    assert not torch.equal(*later)  # quantized inputs upstream change what GPTQ sees

    assembled = copy.deepcopy(model)
    for i, modules in blocks.items():
        for rel, module in modules.items():
            set_submodule(assembled, f"model.layers.{i}.{rel}", module)
    assembled = backend.assembled(assembled)
    assert backend.stored_bytes(assembled) == backend.stored_bytes(sequential)
    assert {p.dtype for p in assembled.parameters()} == {p.dtype for p in sequential.parameters()}
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=_gen())
    assert torch.isfinite(assembled(ids).logits).all()


@pytest.mark.gptq
def test_gptq_linears_multiply_in_float32_on_a_cpu_without_native_bfloat16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On such a CPU torch's bfloat16 matmul is about 50x slower than float32's: the
    linears widen their input, and round the output back to bfloat16."""
    from impq.backends import gptq

    monkeypatch.setattr(gptq, "_native_16_bit_matmul", lambda: False)
    model = tiny_model("llama", num_layers=1)
    calibration = torch.randint(0, model.config.vocab_size, (4, 32), generator=_gen())
    blocks = get_backend("gptq").quantize_blocks(model, [0], 2, GROUP, calibration)
    linear = blocks[0]["mlp.up_proj"]
    seen: list[torch.dtype] = []
    linear.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))  # after ours

    x = torch.randn(5, linear.in_features, generator=_gen()).to(torch.bfloat16)
    out = linear(x)
    weight = linear.dequantize_weight().float()  # (in, out)
    assert seen == [torch.float32]
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, (x.float() @ weight).to(torch.bfloat16))
    assert torch.equal(copy.deepcopy(linear)(x), out)  # the hooks travel with a copy


@pytest.mark.gptq
@pytest.mark.slow
@pytest.mark.parametrize("bits", [3, 8])
def test_gptq_blocks_on_float_inputs_store_their_footprint_at_3_and_8_bits(bits: int) -> None:
    backend = get_backend("gptq")
    model = tiny_model("llama", num_layers=1)
    calibration = torch.randint(0, model.config.vocab_size, (4, 32), generator=_gen())
    modules = backend.quantize_blocks(model, [0], bits, GROUP, calibration)[0]
    assert {int(m.bits) for m in modules.values()} == {bits}
    assembled = copy.deepcopy(model)
    for rel, module in modules.items():
        set_submodule(assembled, f"model.layers.0.{rel}", module)
    assembled = backend.assembled(assembled)
    expected = expected_bytes(model, {0: bits}, GROUP, backend.footprint(model))
    assert backend.stored_bytes(assembled) == expected
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=_gen())
    assert torch.isfinite(assembled(ids).logits).all()
