"""IMTL-G (two-task closed form) against a literal transcription of the paper's formula, with the shared
properties that hold for it: finite from finite, scale equivariance, non-finite propagation, zero edges,
main not opposed, global = one vector, permutation equivariance. Not "sum when not conflicting": it
reweights by the norms whatever the angle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.surgery import build_method
from gradremedy.surgery.imtl import IMTLG

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


def imtl_g_literal(gradients: list[torch.Tensor]) -> torch.Tensor:
    """The paper's IMTL-G for T tasks, written as printed: alpha_{2:T} = g_1 U^T (D U^T)^{-1},
    alpha_1 = 1 - sum alpha_{2:T}, with D = [g_1 - g_t] and U = [u_1 - u_t] (rows, t = 2..T)."""
    g = torch.stack([t.flatten() for t in gradients])  # (T, n)
    u = g / g.norm(dim=1, keepdim=True)
    D = g[:1] - g[1:]  # (T-1, n)
    U = u[:1] - u[1:]
    alpha_rest = g[:1] @ U.T @ torch.linalg.inv(D @ U.T)  # (1, T-1)
    alpha = torch.cat([1 - alpha_rest.sum(dim=1, keepdim=True), alpha_rest], dim=1)  # (1, T)
    return (alpha @ g).view_as(gradients[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_shared_properties(case: str) -> None:
    main, aux = CASES[case]
    method = IMTLG()
    assert_finite_from_finite(method, main, aux)
    assert_scale_equivariant(method, main, aux)
    assert_non_finite_propagates(method, main, aux)
    assert_sum_when_one_is_zero(method, main, aux)
    assert_main_not_opposed(method, main, aux)
    assert_permutation_equivariant(method, main, aux)
    assert_global_is_one_vector(lambda g: IMTLG(granularity=g), main, aux)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    numel=st.integers(2, 40),
    log_ratio=st.floats(-3, 3),
    log_scale=st.floats(-4, 4),
)
def test_closed_form_equals_the_papers_formula(
    seed: int, numel: int, log_ratio: float, log_scale: float
) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(numel, generator=g, dtype=torch.float64) * 10**log_scale
    s = torch.randn(numel, generator=g, dtype=torch.float64) * 10 ** (log_scale + log_ratio)
    (out,) = combine(build_method("imtl"), [a], [s])
    torch.testing.assert_close(
        out, 2 * imtl_g_literal([a, s]), rtol=1e-8, atol=1e-12 * float(out.abs().max())
    )
    # What IMTL-G is for: equal projections on both unit gradients.
    torch.testing.assert_close(out @ a / a.norm(), out @ s / s.norm(), rtol=1e-9, atol=0)


def test_task_order_does_not_matter_and_hand_cases() -> None:
    a = torch.tensor([3.0, 0.0], dtype=torch.float64)
    s = torch.tensor([0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(imtl_g_literal([a, s]), imtl_g_literal([s, a]))
    # |a| = 3, |s| = 1: weights 1/4 on a and 3/4 on s, doubled: (1.5, 1.5).
    (out,) = combine(build_method("imtl"), [a], [s])
    torch.testing.assert_close(out, torch.tensor([1.5, 1.5], dtype=torch.float64))
    # Identical gradients: the plain sum.
    (out,) = combine(build_method("imtl"), [a], [a.clone()])
    torch.testing.assert_close(out, 2 * a)
