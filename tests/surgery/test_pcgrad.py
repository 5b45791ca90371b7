"""PCGrad. Properties that hold: finite from finite, scale equivariance, non-finite propagation,
zero edges, sum when not conflicting, main not opposed (default, aux-only projection), global = one
vector, permutation equivariance."""

from __future__ import annotations

import pytest
import torch

from gradremedy.surgery import PCGrad, build_method

from .asserts import (
    assert_finite_from_finite,
    assert_global_is_one_vector,
    assert_main_not_opposed,
    assert_non_finite_propagates,
    assert_permutation_equivariant,
    assert_scale_equivariant,
    assert_sum_when_not_conflicting,
    assert_sum_when_one_is_zero,
    combine,
    hard_cases,
)

CASES = hard_cases()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("symmetric", [False, True])
def test_shared_properties(case: str, symmetric: bool) -> None:
    main, aux = CASES[case]
    method = PCGrad(symmetric=symmetric)
    assert_finite_from_finite(method, main, aux)
    assert_scale_equivariant(method, main, aux)
    assert_non_finite_propagates(method, main, aux)
    assert_sum_when_one_is_zero(method, main, aux)
    assert_sum_when_not_conflicting(method, main, aux)
    assert_permutation_equivariant(method, main, aux)
    assert_global_is_one_vector(lambda g: PCGrad(granularity=g, symmetric=symmetric), main, aux)
    if not symmetric:
        assert_main_not_opposed(method, main, aux)


def test_textbook_hand_case() -> None:
    # s = (-1, 1), a = (1, 0): <s,a> = -1. Aux-only: s' = s - (-1/1) a = (0, 1); result (1, 1).
    s, a = torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 0.0])
    (out,) = combine(build_method("pcgrad"), [a], [s])
    torch.testing.assert_close(out, torch.tensor([1.0, 1.0]))
    # Symmetric: also a' = a - (<s,a>/|s|^2) s = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5); result (0.5, 1.5).
    (out,) = combine(build_method("pcgrad", symmetric=True), [a], [s])
    torch.testing.assert_close(out, torch.tensor([0.5, 1.5]))


def test_projected_aux_is_orthogonal_to_main() -> None:
    main, aux = CASES["conflicting_dominant"]
    conflicting = 0
    for o, a, s in zip(combine(PCGrad(), main, aux), main, aux):
        a, s, projected = a.double().flatten(), s.double().flatten(), (o - a).double().flatten()
        if float(s @ a) < 0:
            conflicting += 1
            assert abs(float(projected @ a)) < 1e-5 * float(projected.norm() * a.norm())
    assert conflicting >= 2
