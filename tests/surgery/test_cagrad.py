"""CAGrad (two-task closed form). Properties that hold: finite from finite, scale equivariance,
non-finite propagation, zero edges, global = one vector, permutation equivariance. With c = 0 it is
the plain sum. Not "main not opposed" in general (it protects the worse of the two tasks)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradremedy.surgery import CAGrad, build_method

from .asserts import (
    assert_finite_from_finite,
    assert_global_is_one_vector,
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
    method = CAGrad(c=0.5)
    assert_finite_from_finite(method, main, aux)
    assert_scale_equivariant(method, main, aux)
    assert_non_finite_propagates(method, main, aux)
    assert_sum_when_one_is_zero(method, main, aux)
    assert_permutation_equivariant(method, main, aux)
    assert_global_is_one_vector(lambda g: CAGrad(granularity=g, c=0.5), main, aux)


def test_c_zero_is_the_plain_sum() -> None:
    main, aux = CASES["conflicting_dominant"]
    for o, a, s in zip(combine(build_method("cagrad", c=0.0), main, aux), main, aux):
        torch.testing.assert_close(o, s + a)


def official_direction(s: torch.Tensor, a: torch.Tensor, c: float) -> torch.Tensor:
    """CAGrad as the official code computes it, with a dense grid search in place of its solver."""
    g0 = (s + a) / 2
    xs = torch.linspace(0, 1, 20001, dtype=torch.float64)
    gx = xs[:, None] * s + (1 - xs[:, None]) * a  # (n_x, D)
    objective = gx @ g0 + c * g0.norm() * gx.norm(dim=1)
    gw = gx[objective.argmin()]
    d = g0 + c * g0.norm() / gw.norm() * gw
    return 2 * d / (1 + c**2)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    numel=st.integers(2, 20),
    log_ratio=st.floats(-1.5, 1.5),
    c=st.sampled_from([0.1, 0.5, 0.9, 2.0]),
)
def test_closed_form_matches_the_minimised_dual(seed: int, numel: int, log_ratio: float, c: float) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(numel, generator=g, dtype=torch.float64)
    s = torch.randn(numel, generator=g, dtype=torch.float64) * 10**log_ratio
    # Where the segment passes near 0, d depends on x through 1/|g_x|: a grid cannot resolve it.
    xs = torch.linspace(0, 1, 1001, dtype=torch.float64)[:, None]
    assume(float((xs * s + (1 - xs) * a).norm(dim=1).min()) > 0.05 * max(float(s.norm()), float(a.norm())))
    (out,) = combine(CAGrad(c=c), [a], [s])
    expected = official_direction(s, a, c)
    torch.testing.assert_close(out, expected, rtol=2e-3, atol=2e-3 * float(expected.norm()))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), numel=st.integers(2, 10), c=st.sampled_from([0.2, 0.5, 0.8]))
def test_maximises_the_worst_improvement_in_the_ball(seed: int, numel: int, c: float) -> None:
    # Primal: d maximises min(<s, d>, <a, d>) over |d - g0| <= c |g0| (before the output scaling).
    g = torch.Generator().manual_seed(seed)
    a, s = (
        torch.randn(numel, generator=g, dtype=torch.float64),
        torch.randn(numel, generator=g, dtype=torch.float64),
    )
    (out,) = combine(CAGrad(c=c), [a], [s])
    d = out * (1 + c**2) / 2  # undo "x2 tasks summed" and "/(1 + c^2)": d is now g0-scale
    g0 = (s + a) / 2
    assert float((d - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-6)
    best = min(float(s @ d), float(a @ d))
    directions = torch.randn(2000, numel, generator=g, dtype=torch.float64)
    candidates = g0 + c * g0.norm() * directions / directions.norm(dim=1, keepdim=True)
    worst = torch.minimum(candidates @ s, candidates @ a)
    assert best >= float(worst.max()) - 1e-9 * float(g0.norm() ** 2)
