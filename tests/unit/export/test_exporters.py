"""Every exporter on tiny Llama-3, Gemma-2 and Qwen-3 models: read back, budget, reload."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from impq.backends.base import budget_bytes_for, expected_bytes
from impq.export import EXPORTERS, ExportCheckError, StoredLinear, check_stored, get_exporter
from impq.models.tiny import TINY_ARCHITECTURES, tiny_model
from impq.pipeline.export import expected_linears

GROUP = 32
BITS = {0: 2, 1: 4, 2: 2, 3: 4}  # four equal blocks, two at 4 bits: exactly 3.0 average bits
EVERY_PRECISION = {  # each block at another of the backend's precisions
    "quanto": {0: 2, 1: 4, 2: 8, 3: 4},
    "hqq": {0: 2, 1: 3, 2: 4, 3: 8},
    "gptq": {0: 2, 1: 3, 2: 4, 3: 8},
}
EXPORTER_PARAMS = [
    "quanto",
    "hqq",
    pytest.param(
        "gptq",
        marks=[pytest.mark.gptq, pytest.mark.slow],
    ),
]


def _tamper_quanto(out: Path, module: str) -> None:
    """Declare a 2-bit module 4-bit in the qmap."""
    qmap = json.loads((out / "quanto_qmap.json").read_text())
    qmap[module]["weights"] = "qint4"
    (out / "quanto_qmap.json").write_text(json.dumps(qmap))


def _tamper_hqq(out: Path, module: str) -> None:
    """Declare a 2-bit module 4-bit in HQQ's metadata."""
    weights = torch.load(out / "qmodel.pt", weights_only=True)
    weights[module]["nbits"] = 4
    torch.save(weights, out / "qmodel.pt")


def _tamper_gptq(out: Path, module: str) -> None:
    """Declare other base bits in the GPTQ config (those of the modules no rule overrides)."""
    config = json.loads((out / "config.json").read_text())
    q = config["quantization_config"]
    q["bits"] = 2 if q["bits"] != 2 else 4
    (out / "config.json").write_text(json.dumps(config))


TAMPER: dict[str, Callable[[Path, str], None]] = {
    "quanto": _tamper_quanto,
    "hqq": _tamper_hqq,
    "gptq": _tamper_gptq,
}


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("name", EXPORTER_PARAMS)
def test_export_holds_the_assignment_within_budget_and_reloads_the_same_model(
    name: str, arch: str, tmp_path: Path
) -> None:
    exporter = get_exporter(name)
    model = tiny_model(arch, num_layers=4)
    expected = expected_linears(model, BITS)
    footprint = exporter.footprint(model)
    footprint_bytes = expected_bytes(model, BITS, GROUP, footprint)
    budget = budget_bytes_for(model, 3.0, GROUP, (2, 4), footprint)
    gen = torch.Generator().manual_seed(0)
    calibration = torch.randint(0, model.config.vocab_size, (4, 32), generator=gen)
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=gen)
    out = tmp_path / "export"

    quantized = exporter.export(model, BITS, GROUP, calibration, out)
    stored = exporter.read_stored(out)
    check_stored(stored, expected, GROUP)
    assert {n: s.bits for n, s in stored.items()} == {n: b for n, (b, _) in expected.items()}
    assert sum(s.nbytes for s in stored.values()) == footprint_bytes <= budget
    assert footprint_bytes == budget  # half the blocks at 4 bits: exactly the 3.0-bit budget
    reloaded = exporter.load(out)
    assert torch.equal(reloaded(ids).logits, quantized(ids).logits)

    with pytest.raises(ExportCheckError, match="stored at 2 bits, assigned 4"):
        check_stored(stored, {**expected, "model.layers.0.mlp.up_proj": (4, 128 * 64)}, GROUP)
    TAMPER[name](out, "model.layers.0.self_attn.q_proj")
    with pytest.raises(ExportCheckError, match=r"disagrees|do not hold"):
        check_stored(exporter.read_stored(out), expected, GROUP)


@pytest.mark.parametrize("name", EXPORTER_PARAMS)
def test_every_precision_in_one_model_reads_back_stores_its_footprint_and_reloads(
    name: str, tmp_path: Path
) -> None:
    exporter = get_exporter(name)
    bits = EVERY_PRECISION[name]
    assert set(bits.values()) == exporter.backend.supported_bits
    model = tiny_model("llama", num_layers=4)
    expected = expected_linears(model, bits)
    footprint_bytes = expected_bytes(model, bits, GROUP, exporter.footprint(model))
    gen = torch.Generator().manual_seed(0)
    calibration = torch.randint(0, model.config.vocab_size, (4, 32), generator=gen)
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=gen)
    out = tmp_path / "export"

    quantized = exporter.export(model, bits, GROUP, calibration, out)
    stored = exporter.read_stored(out)
    check_stored(stored, expected, GROUP)
    assert {n: s.bits for n, s in stored.items()} == {n: b for n, (b, _) in expected.items()}
    assert sum(s.nbytes for s in stored.values()) == footprint_bytes
    assert exporter.backend.stored_bytes(quantized) == footprint_bytes
    reloaded = exporter.load(out)
    assert exporter.backend.stored_bytes(reloaded) == footprint_bytes
    logits = reloaded(ids).logits
    assert torch.isfinite(logits).all() and torch.equal(logits, quantized(ids).logits)

    odd = next(i for i, b in bits.items() if b not in (2, 4))  # a 3- or 8-bit block
    TAMPER[name](out, f"model.layers.{odd}.self_attn.q_proj")
    with pytest.raises(ExportCheckError, match=r"disagrees|do not hold"):
        check_stored(exporter.read_stored(out), expected, GROUP)


def test_check_stored_names_every_difference() -> None:
    expected = {"a": (2, 64), "b": (4, 64), "c": (2, 64)}
    stored = {
        "a": StoredLinear(2, 64, 32, 24),
        "b": StoredLinear(2, 64, 32, 24),  # wrong bits
        "d": StoredLinear(2, 64, 16, 24),  # not assigned
    }
    with pytest.raises(ExportCheckError) as err:
        check_stored(stored, expected, 32)
    text = str(err.value)
    assert "3 problems" in text
    for part in ("c: not stored quantized", "d: quantized, but", "b: stored at 2 bits"):
        assert part in text
    check_stored({"a": StoredLinear(2, 64, None, 24)}, {"a": (2, 64)}, 32)  # no groups: fine


def test_registry_lists_the_export_backends() -> None:
    assert {"quanto", "hqq", "gptq"} <= set(EXPORTERS)
    with pytest.raises(ValueError, match="unknown export backend 'awq'"):
        get_exporter("awq")
