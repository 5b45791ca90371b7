"""WarmupLR: linear warm-up to the base rate at ``warmup`` steps, then inverse-sqrt, cosine or linear decay"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gradremedy.train.schedule import WarmupLR, lr_factor, warmup_factor


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


@given(
    warmup=st.integers(0, 500),
    length=st.integers(1, 5_000),
    step=st.integers(1, 10_000),
    final=st.floats(0.0, 1.0),
    schedule=st.sampled_from(["cosine", "linear"]),
)
def test_decay_runs_from_the_peak_at_warmup_to_the_final_ratio_at_the_end(
    warmup: int, length: int, step: int, final: float, schedule: str
) -> None:
    total = warmup + length
    factor = lr_factor(step, warmup, schedule, total, final)
    assert min(final, 1.0) - 1e-12 <= factor <= 1.0 + 1e-12 or step < warmup
    if step < warmup:
        assert factor == pytest.approx(step / warmup, rel=1e-12)
    if step >= total:
        assert factor == pytest.approx(final, abs=1e-12)
    peak = lr_factor(max(warmup, 1), warmup, schedule, total, final)
    assert peak == pytest.approx(1.0, abs=1e-9 + 1 / length)
    later = lr_factor(step + 1, warmup, schedule, total, final)
    assert later <= factor + 1e-12 or step < warmup  # never rises after the warm-up


def test_cosine_midpoint_and_linear_midpoint() -> None:
    assert lr_factor(60, 10, "cosine", 110, 0.0) == pytest.approx(0.5)
    assert lr_factor(60, 10, "linear", 110, 0.2) == pytest.approx(0.6)
    assert lr_factor(35, 10, "cosine", 110, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_decay_needs_a_run_longer_than_the_warmup() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="total_steps"):
        WarmupLR(torch.optim.Adam([param], lr=1.0), 10, schedule="cosine", total_steps=10)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(1, 10, "step", 100)


def test_resumed_decay_takes_its_length_from_the_config_not_the_checkpoint() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1.0)
    scheduler = WarmupLR(optimizer, 2, schedule="linear", total_steps=12)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    extended = WarmupLR(torch.optim.Adam([param], lr=1.0), 2, schedule="linear", total_steps=22)
    extended.load_state_dict(scheduler.state_dict())
    assert extended.total_steps == 22
    assert extended.get_lr()[0] == pytest.approx(lr_factor(8, 2, "linear", 22))
