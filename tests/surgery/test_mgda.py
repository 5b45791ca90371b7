"""MGDA (two-task closed form). Properties that hold: finite from finite, scale equivariance,
non-finite propagation, zero edges, main not opposed, global = one vector, permutation equivariance.
Not "sum when not conflicting": it always takes the min-norm point of the segment."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.surgery import MGDA, build_method

from .asserts import (
    assert_finite_from_finite,
    assert_global_is_one_vector,
    assert_main_not_opposed,
    assert_non_finite_propagates,
    assert_permutation_equivariant,
    assert_scale_equivariant,
    assert_sum_when_one_is_zero,
    combine,
    hard_cases,
)

CASES = hard_cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_shared_properties(case: str) -> None:
    main, aux = CASES[case]
    method = MGDA()
    assert_finite_from_finite(method, main, aux)
    assert_scale_equivariant(method, main, aux)
    assert_non_finite_propagates(method, main, aux)
    assert_sum_when_one_is_zero(method, main, aux)
    assert_main_not_opposed(method, main, aux)
    assert_permutation_equivariant(method, main, aux)
    assert_global_is_one_vector(lambda g: MGDA(granularity=g), main, aux)


def test_textbook_hand_cases() -> None:
    method = build_method("mgda")
    # Orthogonal unit vectors: the min-norm point is the midpoint (0.5, 0.5); we return twice it.
    (out,) = combine(method, [torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 1.0])])
    torch.testing.assert_close(out, torch.tensor([1.0, 1.0]))
    # a = (1, 0), s = (3, 0)... parallel: min-norm point is a itself (gamma = 0): 2 a.
    (out,) = combine(method, [torch.tensor([1.0, 0.0])], [torch.tensor([3.0, 0.0])])
    torch.testing.assert_close(out, torch.tensor([2.0, 0.0]))
    # s = a: the segment is one point: s + a.
    (out,) = combine(method, [torch.tensor([1.0, 2.0])], [torch.tensor([1.0, 2.0])])
    torch.testing.assert_close(out, torch.tensor([2.0, 4.0]))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), numel=st.integers(1, 30), log_ratio=st.floats(-2, 2))
def test_min_norm_point_of_the_segment(seed: int, numel: int, log_ratio: float) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(numel, generator=g, dtype=torch.float64)
    s = torch.randn(numel, generator=g, dtype=torch.float64) * 10**log_ratio
    (out,) = combine(MGDA(), [a], [s])
    gammas = torch.linspace(0, 1, 2001, dtype=torch.float64)
    norms = (gammas[:, None] * s + (1 - gammas[:, None]) * a).norm(dim=1)
    assert float((out / 2).norm()) <= float(norms.min()) + 1e-9
