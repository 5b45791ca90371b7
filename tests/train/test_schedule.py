"""WarmupLR: linear warm-up to the base rate at ``warmup`` steps, then inverse square-root decay."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gradremedy.train.schedule import WarmupLR, warmup_factor


def _lrs(warmup: int, steps: int, base_lr: float = 0.002) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=base_lr)
    scheduler = WarmupLR(optimizer, warmup)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])  # the rate the next optimizer step uses
        optimizer.step()
        scheduler.step()
    return lrs


def test_peak_is_base_lr_at_warmup_and_espnet_formula_elsewhere() -> None:
    warmup, base = 10, 0.002
    lrs = _lrs(warmup, 40, base)
    for index, lr in enumerate(lrs):
        step = index + 1
        expected = base * warmup**0.5 * min(step**-0.5, step * warmup**-1.5)
        assert lr == pytest.approx(expected, rel=1e-12)
    assert max(lrs) == pytest.approx(base)
    assert lrs.index(max(lrs)) == warmup - 1
    assert lrs[0] == pytest.approx(base / warmup)


@given(warmup=st.integers(1, 10_000), step=st.integers(1, 1_000_000))
def test_factor_rises_linearly_then_decays_as_inverse_sqrt(warmup: int, step: int) -> None:
    factor = warmup_factor(step, warmup)
    assert 0 < factor <= 1 + 1e-12
    if step <= warmup:
        assert factor == pytest.approx(step / warmup, rel=1e-9)
    else:
        assert factor == pytest.approx(math.sqrt(warmup / step), rel=1e-9)


def test_zero_warmup_keeps_the_base_rate() -> None:
    assert _lrs(0, 5) == [0.002] * 5


def test_state_dict_resumes_the_schedule() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1.0)
    scheduler = WarmupLR(optimizer, 4)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_optimizer = torch.optim.Adam([param], lr=1.0)
    fresh = WarmupLR(fresh_optimizer, 4)
    fresh.load_state_dict(state)
    fresh_optimizer.load_state_dict(optimizer.state_dict())
    optimizer.step()
    scheduler.step()
    fresh_optimizer.step()
    fresh.step()
    assert fresh.get_last_lr() == scheduler.get_last_lr()
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(warmup_factor(9, 4))
