"""Byte budgets in each backend's own bytes: consistent with the solver's, and enforced."""

from __future__ import annotations

import itertools

import pytest
import torch

from impq.backends import get_backend
from impq.backends.base import (
    OverBudgetError,
    budget_bytes_for,
    check_within_budget,
    expected_bytes,
)
from impq.backends.gptq import GptqFootprint
from impq.backends.hqq import HqqFootprint, code_bytes
from impq.backends.quanto import QuantoFootprint
from impq.footprint import SOLVER, Footprint
from impq.models import block_param_counts
from impq.models.tiny import tiny_model
from impq.solve.problem import BitProblem

GROUP = 32
PRECISIONS = (2, 4)
BUDGETS = (2.0, 2.25, 2.5, 3.0, 3.5, 3.75, 4.0)


STORAGE = [
    ("quanto", torch.float32),  # float32 scale and shift: 8 bytes a group
    ("quanto", torch.bfloat16),
    ("hqq", torch.float32),  # 16-bit scale and zero whatever the model's dtype
    ("gptq", torch.bfloat16),  # packed zeros, int32 g_idx per input column
]
PRECISION_SETS = [(2, 4), (3, 4), (2, 3, 4), (4, 8), (2, 4, 8), (2, 3, 4, 8)]
HQQ_3_AND_8_BITS = (
    "HQQ packs 3-bit codes 10 to an int32 word (3.2 bits a weight and more), so its uniform "
    "sizes bend upward from 4 to 8 bits after bending downward from 3 to 4: a mix of 3- and "
    "8-bit blocks within the solver's budget can be over HQQ's, between 4 and 8 bits. Three "
    "blocks at 3 bits and one at 8 fit the solver's 4.25-bit budget and are 3840 bytes "
    "(4.0%) over HQQ's here"
)
KNOWN_OVER = {("hqq", (2, 3, 4, 8)): HQQ_3_AND_8_BITS}
"""Where an assignment within the solver's budget is over the backend's: its uniform sizes
bend upward somewhere, so a mix of precisions either side of the bend is over the
interpolated budget. Where they only bend downward (HQQ over {2, 3, 4}, quanto over
{2, 4, 8}) every assignment within the solver's budget is within the backend's."""


def _claims() -> list[object]:
    return [
        pytest.param(
            name,
            dtype,
            precisions,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_OVER[name, precisions])]
            if (name, precisions) in KNOWN_OVER
            else [],
            id=f"{name}-{str(dtype).removeprefix('torch.')}-{'/'.join(map(str, precisions))}",
        )
        for name, dtype in STORAGE
        for precisions in PRECISION_SETS
        if set(precisions) <= get_backend(name).supported_bits
    ]


def test_solver_footprint_is_the_budget_the_assignment_was_solved_under() -> None:
    model = tiny_model("qwen3", num_layers=4)
    for budget in BUDGETS:
        problem = BitProblem.build(
            [0.0] * 4, [[0.0] * 4] * 4, block_param_counts(model), budget, group_size=GROUP
        )
        assert budget_bytes_for(model, budget, GROUP, PRECISIONS) == problem.budget_bytes
        choice = [1, 0, 1, 1]
        assert expected_bytes(model, problem.bits(choice), GROUP) == problem.stored_bytes(choice)


@pytest.mark.parametrize(("name", "dtype", "precisions"), _claims())
def test_within_the_solver_budget_means_within_every_backend_budget(
    name: str, dtype: torch.dtype, precisions: tuple[int, ...]
) -> None:
    model = tiny_model("gemma2", num_layers=4).to(dtype)
    footprint = get_backend(name).footprint(model)
    lo, hi = precisions[0], precisions[-1]
    for budget in sorted(b for b in {*BUDGETS, *precisions, *_between(lo, hi)} if lo <= b <= hi):
        solver_budget = budget_bytes_for(model, budget, GROUP, precisions)
        backend_budget = budget_bytes_for(model, budget, GROUP, precisions, footprint)
        fits = 0
        for bits in itertools.product(precisions, repeat=4):
            assignment = dict(enumerate(bits))
            if expected_bytes(model, assignment, GROUP) <= solver_budget:
                fits += 1
                stored = expected_bytes(model, assignment, GROUP, footprint)
                assert stored <= backend_budget, (budget, bits, stored - backend_budget)
        assert fits >= 1  # all at the lowest precision always fits


def _between(lo: int, hi: int) -> list[float]:
    """Budgets from ``lo`` to ``hi`` bits in eighths of the range."""
    return [lo + (hi - lo) * k / 8 for k in range(9)]


def test_footprint_counts_each_part_of_a_linear() -> None:
    out, inp, bits = 48, 128, 2
    groups = out * inp // GROUP
    codes = out * inp * bits // 8
    assert SOLVER.linear(out, inp, bits, GROUP) == codes + 4 * groups
    gptq = GptqFootprint()
    assert gptq.linear(out, inp, bits, GROUP) == codes + 2 * groups + groups * bits // 8 + 4 * inp
    quanto32 = QuantoFootprint(scale_bytes=4, zero_bytes=4, linear_bytes=8)
    assert quanto32.linear(out, inp, bits, GROUP) == codes + 8 * groups + 8
    assert quanto32.linear(out, inp, 8, GROUP) == out * inp + 4 * out + 8  # a scale per row
    assert Footprint(column_bytes=1).linear(out, inp, bits, GROUP) == codes + 4 * groups + inp
    with pytest.raises(ValueError, match="does not divide"):
        SOLVER.linear(out, 100, bits, GROUP)


def test_a_model_over_its_budget_fails_loudly() -> None:
    backend = get_backend("hqq")
    model = tiny_model("llama", num_layers=4)
    all_four = expected_bytes(model, dict.fromkeys(range(4), 4), GROUP, backend.footprint(model))
    budget = check_within_budget(backend, model, 4.0, PRECISIONS, GROUP, all_four)
    assert budget == all_four
    with pytest.raises(OverBudgetError, match=r"'hqq' stores \d+ bytes for a budget of \d+"):
        check_within_budget(backend, model, 3.0, PRECISIONS, GROUP, all_four)


def test_packing_in_words_is_counted_as_stored() -> None:
    """HQQ's 3-bit words hold one code of each of 10 groups (the groups padded to a
    multiple of 10); GPTQ's int32 words run down each column (qweight) and along each
    group's row of outputs (qzeros), rounded up to whole words."""
    assert code_bytes(10 * GROUP, 3, GROUP) == 4 * GROUP  # 10 groups: one word per position
    assert code_bytes(11 * GROUP, 3, GROUP) == 8 * GROUP  # 11 groups take 20
    assert code_bytes(64 * GROUP, 8, GROUP) == 64 * GROUP
    assert HqqFootprint().codes(48, 128, 3, GROUP) == 4 * GROUP * 20  # 192 groups -> 200
    assert HqqFootprint().codes(48, 128, 4, GROUP) == 48 * 128 // 2
    gptq = GptqFootprint()
    assert gptq.codes(48, 128, 3, GROUP) == 4 * 48 * 12  # 128 x 3 bits = 12 words a column
    assert gptq.codes(48, 48, 3, 16) == 4 * 48 * 5  # 144 bits round up to 5 words
    assert gptq.zeros(48, 128, 3, GROUP) == 4 * 4 * 5  # 4 group rows of 48 x 3 bits
