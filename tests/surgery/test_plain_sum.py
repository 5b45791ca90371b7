"""The plain sum: s + a. Properties that hold: finite from finite, scale equivariance, non-finite
propagation, zero edges, sum when not conflicting (trivially: always the sum), global = one vector,
permutation equivariance. Not "main not opposed": a dominant conflicting s wins."""

from __future__ import annotations

import pytest
import torch

from gradremedy.surgery import PlainSum, build_method

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
    method = PlainSum()
    assert_finite_from_finite(method, main, aux)
    assert_scale_equivariant(method, main, aux)
    assert_non_finite_propagates(method, main, aux)
    assert_sum_when_one_is_zero(method, main, aux)
    assert_permutation_equivariant(method, main, aux)
    assert_global_is_one_vector(lambda g: PlainSum(granularity=g), main, aux)


@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_s_plus_a(case: str) -> None:
    main, aux = CASES[case]
    for o, a, s in zip(combine(build_method("sum"), main, aux), main, aux):
        torch.testing.assert_close(o, s + a)
