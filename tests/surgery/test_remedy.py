"""Gradient Remedy: closed form vs the literal loop, the angle and magnitude steps, every edge.

Shared properties that hold for GR (see asserts.py): finite from finite, scale equivariance,
non-finite propagation, s (or a) alone when the other is zero, main not opposed, global = one vector,
permutation equivariance. Not "sum when not conflicting": the magnitude step also fires without
conflict when s dominates.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradremedy.surgery import GradientRemedy, build_method, gradient_remedy
from gradremedy.surgery.reference import gradient_remedy_loop

from .asserts import (
    angle,
    assert_finite_from_finite,
    assert_global_is_one_vector,
    assert_main_not_opposed,
    assert_non_finite_propagates,
    assert_permutation_equivariant,
    assert_scale_equivariant,
    assert_sum_when_one_is_zero,
    cosine,
    hard_cases,
)

CASES = hard_cases()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("granularity", ["tensor", "global"])
def test_shared_properties_on_hard_inputs(case: str, granularity: str) -> None:
    main, aux = CASES[case]
    method = GradientRemedy(granularity=granularity)
    assert_finite_from_finite(method, main, aux)
    assert_scale_equivariant(method, main, aux)
    assert_main_not_opposed(method, main, aux)
    if granularity == "tensor":
        assert_non_finite_propagates(method, main, aux)
        assert_sum_when_one_is_zero(method, main, aux)
        assert_permutation_equivariant(method, main, aux)


@pytest.mark.parametrize("case", ["random", "conflicting_dominant", "anti_parallel_dominant"])
def test_global_granularity_is_one_vector(case: str) -> None:
    main, aux = CASES[case]
    assert_global_is_one_vector(lambda g: GradientRemedy(granularity=g), main, aux)


def make_pair(seed: int, numel: int, cos: float, log_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A unit main gradient a and an aux gradient s with |s| = 10^log_ratio and cos(s, a) = cos."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(numel, generator=g, dtype=torch.float64)
    a = a / a.norm()
    noise = torch.randn(numel, generator=g, dtype=torch.float64)
    noise = noise - (noise @ a) * a
    if numel == 1 or noise.norm() < 1e-6:
        s = math.copysign(1.0, cos) * a
    else:
        s = cos * a + math.sqrt(max(0.0, 1 - cos * cos)) * noise / noise.norm()
    return a, s * 10.0**log_ratio


pair_lists = st.lists(
    st.tuples(
        st.integers(0, 2**31 - 1),  # seed
        st.integers(1, 40),  # numel
        st.floats(-1.0, 1.0),  # cos(s, a)
        st.floats(-3.0, 3.0),  # log10 |s|/|a|
        st.floats(-4.0, 4.0),  # log10 of a common scale
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=100, deadline=None)
@given(
    pairs=pair_lists,
    K=st.sampled_from([0.0, 1.0, 5.0, 20.0, math.inf]),
    max_stretch=st.sampled_from([10.0, 1e3]),
)
def test_closed_form_equals_literal_loop(pairs, K: float, max_stretch: float) -> None:
    main, aux = [], []
    for seed, numel, cos, log_ratio, log_scale in pairs:
        a, s = make_pair(seed, numel, cos, log_ratio)
        main.append(a * 10.0**log_scale)
        aux.append(s * 10.0**log_scale)
        # Stay away from the branch boundaries, where rounding may pick either side.
        c = float((a @ s) / (a.norm() * s.norm()))
        r = float(s.norm() / a.norm())
        assume(abs(c) > 1e-6)
        sin = math.sqrt(max(0.0, 1 - c * c))
        projected_ratio = sin * math.sqrt(1 + r * r) if c < 0 else r
        projected_cos = 1 / math.sqrt(1 + r * r) if c < 0 else c
        assume(abs(projected_ratio - K) > 1e-6 * max(1.0, K) or math.isinf(K))
        assume(abs(projected_cos * max_stretch - 1) > 1e-6)
        assume(sin > 1e-6)
    method = GradientRemedy(K=K, max_stretch=max_stretch)
    from gradremedy.surgery import apply_method

    fast = apply_method(method, main, aux)
    slow = gradient_remedy_loop(main, aux, K=K, max_stretch=max_stretch)
    for f, s in zip(fast, slow):
        assert f.dtype == torch.float64
        torch.testing.assert_close(f, s, rtol=1e-9, atol=1e-12 * float(s.abs().max()))


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    numel=st.integers(2, 50),
    cos=st.floats(-0.999, -0.001),
    log_ratio=st.floats(-3, 3),
)
def test_projection_angle_is_arctan_of_norm_ratio(
    seed: int, numel: int, cos: float, log_ratio: float
) -> None:
    a, s = make_pair(seed, numel, cos, log_ratio)
    (combined,) = gradient_remedy([a], [s], K=math.inf)  # magnitude step off: result is s' + a
    projected = combined - a
    expected = math.atan(float(s.norm() / a.norm()))
    assert angle(projected, a) == pytest.approx(expected, abs=1e-7)


def test_no_conflict_and_no_dominance_is_the_plain_sum() -> None:
    a, s = make_pair(0, 30, 0.3, 0.0)
    (combined,) = gradient_remedy([a], [s])
    torch.testing.assert_close(combined, s + a)


def test_pinned_values() -> None:
    # s = (-3, 4), a = (1, 0): <s,a> = -3, r = 5, s_perp = (0, 4), s' = (0, 4) + 4/5 (1, 0) = (0.8, 4).
    s, a = torch.tensor([-3.0, 4.0]), torch.tensor([1.0, 0.0])
    (no_rescale,) = gradient_remedy([a], [s], K=5.0)  # |s'| / |a| = 4.08 < 5
    torch.testing.assert_close(no_rescale, torch.tensor([1.8, 4.0]))
    (rescaled,) = gradient_remedy([a], [s], K=2.0)  # cos' = 1/sqrt(26): s'/sqrt(26) + a sqrt(26)
    root = math.sqrt(26.0)
    torch.testing.assert_close(rescaled, torch.tensor([0.8 / root + root, 4.0 / root]))


def test_rescale_compresses_s_and_stretches_a() -> None:
    a, s = make_pair(1, 20, 0.5, 2.0)  # no conflict, |s| = 100 |a|: rescale fires, cos' = 0.5
    (combined,) = gradient_remedy([a], [s], K=5.0)
    torch.testing.assert_close(combined, 0.5 * s + a / 0.5)


def test_stretch_is_bounded_when_cos_prime_is_tiny() -> None:
    # Dominant, non-conflicting, cos' = 1e-5 < 1/max_stretch: no rescale (the authors' cos' = 0 case).
    a, s = make_pair(2, 20, 1e-5, 3.0)
    (combined,) = gradient_remedy([a], [s], K=5.0)
    torch.testing.assert_close(combined, s + a)
    # Just above the bound the stretch fires, at most max_stretch times a.
    a, s = make_pair(2, 20, 2e-3, 3.0)
    method = GradientRemedy(K=5.0, max_stretch=1e3)
    from gradremedy.surgery import apply_method

    (combined,) = apply_method(method, [a], [s])
    torch.testing.assert_close(combined, 2e-3 * s + a / 2e-3)


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    numel=st.integers(1, 64),
    cos=st.floats(-1.0, 1.0),
    log_s=st.floats(-30.0, 30.0),
    log_a=st.floats(-30.0, 30.0),
    K=st.sampled_from([0.0, 5.0, math.inf]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_never_non_finite_from_finite_input(seed, numel, cos, log_s, log_a, K, dtype) -> None:
    a, s = make_pair(seed, numel, cos, 0.0)
    a, s = (a * 10.0**log_a).to(dtype), (s * 10.0**log_s).to(dtype)
    assume(torch.isfinite(a).all() and torch.isfinite(s).all())
    (combined,) = gradient_remedy([a], [s], K=K)
    assert torch.isfinite(combined).all()
    assert combined.dtype == dtype


def test_edges_defined() -> None:
    a, s = make_pair(3, 16, -0.5, 0.0)
    a, s = a.float(), s.float()
    zero = torch.zeros_like(a)
    for main, aux, expected in [
        (zero, zero, zero),
        (zero, s, s),
        (a, zero, a),
    ]:
        (combined,) = gradient_remedy([main], [aux])
        torch.testing.assert_close(combined, expected)
    # Tiny and huge float32 gradients (squares beyond float32 range): reductions are float64, so GR is
    # exactly what it is at unit scale.
    (unit,) = gradient_remedy([a], [s], K=0.5)
    for scale in (1e-30, 1e-40, 1e30, 1e35):
        (combined,) = gradient_remedy([a * scale], [s * scale], K=0.5)
        torch.testing.assert_close(combined, unit * scale, rtol=1e-5, atol=1e-42)  # subnormal ulps
    # Exactly anti-parallel: s_perp = 0, so s' = 0 and the result is a.
    (combined,) = gradient_remedy([a], [-3 * a])
    torch.testing.assert_close(combined, a, atol=1e-6, rtol=1e-6)


def test_empty_groups_and_empty_tensors() -> None:
    main = [torch.zeros(0), torch.ones(3), torch.zeros(2, 0)]
    aux = [torch.zeros(0), -torch.ones(3) * 2, torch.zeros(2, 0)]
    out = gradient_remedy(main, aux)
    assert [o.shape for o in out] == [(0,), (3,), (2, 0)]
    assert gradient_remedy([], []) == []


def test_layer_granularity_groups_tensors() -> None:
    main, aux = CASES["conflicting_dominant"]
    grouped = gradient_remedy(main, aux, granularity="layer", groups=["x", "y", "x"])
    # Group "x" = tensors 0 and 2 as one vector, group "y" = tensor 1 alone.
    x_main = torch.cat([main[0].flatten(), main[2].flatten()])
    x_aux = torch.cat([aux[0].flatten(), aux[2].flatten()])
    (x_out,) = gradient_remedy([x_main], [x_aux])
    (y_out,) = gradient_remedy([main[1]], [aux[1]])
    torch.testing.assert_close(torch.cat([grouped[0].flatten(), grouped[2].flatten()]), x_out)
    torch.testing.assert_close(grouped[1], y_out)


def test_bad_arguments_are_clear_errors() -> None:
    main, aux = CASES["random"]
    with pytest.raises(ValueError, match="needs groups="):
        gradient_remedy(main, aux, granularity="layer")
    with pytest.raises(ValueError, match="applies to granularity='layer' only"):
        gradient_remedy(main, aux, groups=[0, 1, 2])
    with pytest.raises(ValueError, match="groups= has 2 entries"):
        gradient_remedy(main, aux, granularity="layer", groups=[0, 1])
    with pytest.raises(ValueError, match="unknown granularity"):
        gradient_remedy(main, aux, granularity="block")
    with pytest.raises(ValueError, match="main_grads has 3 tensors but aux_grads has 2"):
        gradient_remedy(main, aux[:2])
    with pytest.raises(ValueError, match="shape"):
        gradient_remedy([torch.zeros(3)], [torch.zeros(4)])
    with pytest.raises(ValueError, match="K must be"):
        build_method("gr", K=-1.0)


def test_mixed_dtypes_keep_their_dtype() -> None:
    main = [torch.randn(4, dtype=torch.float64), torch.randn(3).half()]
    aux = [torch.randn(4, dtype=torch.float64), torch.randn(3).half()]
    out = gradient_remedy(main, aux)
    assert [o.dtype for o in out] == [torch.float64, torch.float16]


def test_rescale_rate_diagnostic() -> None:
    from gradremedy.surgery import FlatLayout
    from gradremedy.surgery.grouping import group_ids_for

    a1, s1 = make_pair(4, 10, 0.5, 2.0)  # rescaled
    a2, s2 = make_pair(5, 10, 0.5, 0.0)  # not
    layout = FlatLayout(
        [a1.shape, a2.shape], group_ids_for([a1.shape, a2.shape], "tensor", None), dtype=torch.float64
    )
    buffer = layout.new_buffer()
    for view, t in zip(layout.views(buffer[0]), [s1, s2]):
        view.copy_(t)
    for view, t in zip(layout.views(buffer[1]), [a1, a2]):
        view.copy_(t)
    _, _, diagnostics = GradientRemedy().coefficients(layout.reduce(buffer))
    assert float(diagnostics["rescale_rate"]) == 0.5
    assert float(diagnostics["stretch_max"]) == pytest.approx(2.0)
    assert cosine(s1, a1) == pytest.approx(0.5)


def authors_rule(a: torch.Tensor, s: torch.Tensor, K: float) -> torch.Tensor:
    """The authors' rule as they wrote it: rescale whenever |s'|/|a| > K and cos' != 0, unbounded."""
    dot = (s * a).sum()
    if dot < 0:
        r = s.norm() / a.norm()
        s_perp = s - dot / a.norm() ** 2 * a
        s = s_perp + s_perp.norm() / r * a / a.norm()
    cos = (s * a).sum() / (s.norm() * a.norm())
    if s.norm() / a.norm() > K and cos != 0:
        return cos * s + a / cos
    return s + a


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    numel=st.integers(2, 30),
    cos=st.floats(-0.999, 0.999),
    log_ratio=st.floats(-1, 4),
)
def test_unbounded_stretch_is_the_authors_rule(seed: int, numel: int, cos: float, log_ratio: float) -> None:
    """max_stretch=inf is the paper-faithful mode: exactly the authors' rule, however large 1/cos'."""
    a, s = make_pair(seed, numel, cos, log_ratio)
    assume(abs(cos) > 1e-6)
    (combined,) = gradient_remedy([a], [s], K=5.0, max_stretch=math.inf)
    expected = authors_rule(a, s, 5.0)
    torch.testing.assert_close(combined, expected, rtol=1e-9, atol=1e-12 * float(expected.abs().max()))
    (looped,) = gradient_remedy_loop([a], [s], K=5.0, max_stretch=math.inf)
    torch.testing.assert_close(combined, looped, rtol=1e-9, atol=1e-12 * float(expected.abs().max()))


def test_unbounded_stretch_goes_beyond_the_default_bound() -> None:
    a, s = make_pair(2, 20, 2e-4, 3.0)  # cos' = 2e-4: the default stretch bound (1000) holds it back
    (bounded,) = gradient_remedy([a], [s])
    torch.testing.assert_close(bounded, s + a)
    (unbounded,) = gradient_remedy([a], [s], max_stretch=float("inf"))
    torch.testing.assert_close(unbounded, 2e-4 * s + a / 2e-4)
    assert build_method("gr", max_stretch=math.inf).settings()["max_stretch"] == math.inf
    with pytest.raises(ValueError, match="max_stretch must be >= 1"):
        build_method("gr", max_stretch=float("nan"))
