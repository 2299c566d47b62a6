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


def test_solver_footprint_is_the_budget_the_assignment_was_solved_under() -> None:
    model = tiny_model("qwen3", num_layers=4)
    for budget in BUDGETS:
        problem = BitProblem.build(
            [0.0] * 4, [[0.0] * 4] * 4, block_param_counts(model), budget, group_size=GROUP
        )
        assert budget_bytes_for(model, budget, GROUP, PRECISIONS) == problem.budget_bytes
        choice = [1, 0, 1, 1]
        assert expected_bytes(model, problem.bits(choice), GROUP) == problem.stored_bytes(choice)


@pytest.mark.parametrize(("name", "dtype"), STORAGE)
def test_within_the_solver_budget_means_within_every_backend_budget(
    name: str, dtype: torch.dtype
) -> None:
    model = tiny_model("gemma2", num_layers=4).to(dtype)
    footprint = get_backend(name).footprint(model)
    for budget in BUDGETS:
        solver_budget = budget_bytes_for(model, budget, GROUP, PRECISIONS)
        backend_budget = budget_bytes_for(model, budget, GROUP, PRECISIONS, footprint)
        fits = 0
        for bits in itertools.product(PRECISIONS, repeat=4):
            assignment = dict(enumerate(bits))
            if expected_bytes(model, assignment, GROUP) <= solver_budget:
                fits += 1
                assert expected_bytes(model, assignment, GROUP, footprint) <= backend_budget
        assert fits >= 1  # all-2 always fits


def test_footprint_counts_each_part_of_a_linear() -> None:
    out, inp, bits = 48, 128, 2
    groups = out * inp // GROUP
    codes = out * inp * bits // 8
    assert SOLVER.linear(out, inp, bits, GROUP) == codes + 4 * groups
    gptq = Footprint(scale_bytes=2, zero_bytes=0, zero_packed=True, column_bytes=4)
    assert gptq.linear(out, inp, bits, GROUP) == codes + 2 * groups + groups * bits // 8 + 4 * inp
    quanto32 = Footprint(scale_bytes=4, zero_bytes=4, linear_bytes=8)
    assert quanto32.linear(out, inp, bits, GROUP) == codes + 8 * groups + 8
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
