"""GradVac. Properties that hold (fresh state, target 0): finite from finite, scale equivariance,
non-finite propagation, zero edges, sum when not conflicting, main not opposed, global = one vector,
permutation equivariance. With a positive target it also acts on non-conflicting pairs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.surgery import GradVac, apply_method, build_method

from .asserts import (
    assert_finite_from_finite,
    assert_global_is_one_vector,
    assert_main_not_opposed,
    assert_non_finite_propagates,
    assert_permutation_equivariant,
    assert_scale_equivariant,
    assert_sum_when_not_conflicting,
    assert_sum_when_one_is_zero,
    cosine,
    hard_cases,
)

CASES = hard_cases()


class FreshGradVac(GradVac):
    """GradVac whose target is reset before every call, so repeated calls are comparable."""

    def coefficients(self, stats):
        self.target = None
        return super().coefficients(stats)


@pytest.mark.parametrize("case", sorted(CASES))
def test_shared_properties(case: str) -> None:
    main, aux = CASES[case]
    method = FreshGradVac()
    assert_finite_from_finite(method, main, aux)
    assert_scale_equivariant(method, main, aux)
    assert_non_finite_propagates(method, main, aux)
    assert_sum_when_one_is_zero(method, main, aux)
    assert_sum_when_not_conflicting(method, main, aux)
    assert_main_not_opposed(method, main, aux)
    assert_permutation_equivariant(method, main, aux)
    assert_global_is_one_vector(lambda g: FreshGradVac(granularity=g), main, aux)


def test_zero_target_is_pcgrad() -> None:
    main, aux = CASES["conflicting_dominant"]
    for o, p in zip(apply_method(GradVac(), main, aux), apply_method(build_method("pcgrad"), main, aux)):
        torch.testing.assert_close(o, p)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    numel=st.integers(2, 30),
    cos=st.floats(-0.95, 0.95),
    target=st.floats(-0.9, 0.9),
    log_ratio=st.floats(-2, 2),
)
def test_raises_similarity_to_its_target(seed, numel, cos, target, log_ratio) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(numel, generator=g, dtype=torch.float64)
    noise = torch.randn(numel, generator=g, dtype=torch.float64)
    noise = noise - (noise @ a) / (a @ a) * a
    s = (cos * a / a.norm() + math.sqrt(1 - cos**2) * noise / noise.norm()) * a.norm() * 10**log_ratio
    method = GradVac(beta=0.25)
    method.load_state_dict({"target": torch.tensor([target], dtype=torch.float64)})
    (out,) = apply_method(method, [a], [s])
    new_cos = cosine(out - a, a)
    if cos < target:
        assert new_cos == pytest.approx(target, abs=1e-7)
    else:
        torch.testing.assert_close(out, s + a)
    # The target then moves toward the observed similarity.
    assert float(method.target[0]) == pytest.approx(0.75 * target + 0.25 * cos, abs=1e-9)


def test_state_round_trip_and_mismatch() -> None:
    main, aux = CASES["random"]
    method = GradVac(beta=0.5)
    apply_method(method, main, aux)
    state = method.state_dict()
    assert state["target"].shape == (3,)
    other = GradVac(beta=0.5)
    other.load_state_dict(state)
    for x, y in zip(apply_method(method, main, aux), apply_method(other, main, aux)):
        torch.testing.assert_close(x, y)
    torch.testing.assert_close(method.target, other.target)
    with pytest.raises(ValueError, match="state has 3 groups"):
        apply_method(other, main[:2], aux[:2])
    with pytest.raises(ValueError, match="unknown state keys"):
        other.load_state_dict({"targets": None})


def test_non_finite_input_leaves_target_unchanged() -> None:
    main, aux = CASES["random"]
    method = GradVac(beta=0.5)
    method.load_state_dict({"target": torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)})
    bad = [t.clone() for t in aux]
    bad[1].view(-1)[0] = float("nan")
    apply_method(method, main, bad)
    assert float(method.target[1]) == pytest.approx(0.2)
    assert torch.isfinite(method.target).all()
