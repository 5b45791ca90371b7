"""Named properties of the gradient methods, and the seeded hard inputs they are checked on.

Each method's test file runs the properties that hold for it over ``hard_cases()`` and says which.
Gradients are lists of tensors (``main`` = a, ``aux`` = s), combined with granularity "tensor"
unless a test says otherwise.
"""

from __future__ import annotations

import math

import torch

from gradremedy.surgery import GradientMethod, apply_method

SHAPES = [(7, 5), (11,), (3, 2, 4)]


def _pair(generator: torch.Generator, dtype: torch.dtype = torch.float32) -> tuple[list, list]:
    main = [torch.randn(shape, generator=generator, dtype=dtype) for shape in SHAPES]
    aux = [torch.randn(shape, generator=generator, dtype=dtype) for shape in SHAPES]
    return main, aux


def hard_cases(dtype: torch.dtype = torch.float32) -> dict[str, tuple[list, list]]:
    """Seeded hard inputs: zeros, one side zero, tiny, huge, parallel, anti-parallel, orthogonal, ..."""
    g = torch.Generator().manual_seed(1234)
    main, aux = _pair(g, dtype)
    zeros = [torch.zeros(shape, dtype=dtype) for shape in SHAPES]
    flip = [-t for t in main]

    def orthogonal(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return s - (s * a).sum() / (a * a).sum() * a

    return {
        "random": (main, aux),
        "zeros": (zeros, [z.clone() for z in zeros]),
        "main_zero": (zeros, aux),
        "aux_zero": (main, zeros),
        "tiny": ([t * 1e-30 for t in main], [t * 1e-30 for t in aux]),
        "tiny_aux": (main, [t * 1e-30 for t in aux]),
        "huge": ([t * 1e30 for t in main], [t * 1e30 for t in aux]),
        "huge_aux": (main, [t * 1e20 for t in aux]),
        "parallel": (main, [3 * t for t in main]),
        "anti_parallel": (main, [-3 * t for t in main]),
        "anti_parallel_dominant": (main, [-100 * t for t in main]),
        "orthogonal": (main, [orthogonal(s, a) for s, a in zip(aux, main)]),
        "conflicting_dominant": (main, [40 * (0.3 * f + s) for f, s in zip(flip, aux)]),
        "nearly_orthogonal_dominant": (main, [50 * orthogonal(s, a) + 1e-5 * a for s, a in zip(aux, main)]),
        "mixed_zero_tensor": ([main[0], zeros[1], main[2]], [aux[0], aux[1], zeros[2]]),
    }


def combine(method: GradientMethod, main: list, aux: list, **kwargs) -> list[torch.Tensor]:
    return apply_method(method, main, aux, **kwargs)


def all_finite(tensors: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def assert_finite_from_finite(method: GradientMethod, main: list, aux: list) -> None:
    """Finite input gives finite output of the same shapes and dtypes."""
    out = combine(method, main, aux)
    for o, a in zip(out, main):
        assert o.shape == a.shape and o.dtype == a.dtype
    assert all_finite(out), [o for o in out if not torch.isfinite(o).all()]


def assert_scale_equivariant(
    method: GradientMethod, main: list, aux: list, scales=(2.0**-20, 0.5, 8.0, 2.0**20)
):
    """method(c s, c a) = c method(s, a): exactly for powers of two (no rounding anywhere)."""
    out = combine(method, main, aux)
    for c in scales:
        scaled = combine(method, [c * t for t in main], [c * t for t in aux])
        for o, sc in zip(out, scaled):
            torch.testing.assert_close(sc, c * o, rtol=1e-6, atol=0)


def assert_non_finite_propagates(method: GradientMethod, main: list, aux: list) -> None:
    """An inf or NaN in either gradient makes that tensor's result non-finite (tensor granularity)."""
    for bad in (float("inf"), float("-inf"), float("nan")):
        for side in ("main", "aux"):
            m, a = [t.clone() for t in main], [t.clone() for t in aux]
            (m if side == "main" else a)[0].view(-1)[0] = bad
            out = combine(method, m, a)
            assert not torch.isfinite(out[0]).all(), (bad, side)
            clean = combine(method, main, aux)
            for o, c in zip(out[1:], clean[1:]):  # other groups are untouched
                torch.testing.assert_close(o, c)


def assert_sum_when_one_is_zero(method: GradientMethod, main: list, aux: list) -> None:
    """With a = 0 the result is s, with s = 0 it is a (nothing to resolve)."""
    zeros = [torch.zeros_like(t) for t in main]
    for o, s in zip(combine(method, zeros, aux), aux):
        torch.testing.assert_close(o, s)
    for o, a in zip(combine(method, main, zeros), main):
        torch.testing.assert_close(o, a)


def assert_sum_when_not_conflicting(method: GradientMethod, main: list, aux: list) -> None:
    """Where <s, a> >= 0 (per tensor) the result is the plain sum s + a."""
    out = combine(method, main, aux)
    for o, a, s in zip(out, main, aux):
        if (a.double() * s.double()).sum() >= 0:
            torch.testing.assert_close(o, s + a, rtol=1e-5, atol=1e-6 * float((s + a).abs().max()))


def assert_main_not_opposed(method: GradientMethod, main: list, aux: list) -> None:
    """The result never points against the main gradient: <out, a> >= 0 in every group."""
    out = combine(method, main, aux)
    if method.granularity == "global":
        out, main = [torch.cat([o.flatten() for o in out])], [torch.cat([a.flatten() for a in main])]
    for o, a in zip(out, main):
        dot = float((o.double() * a.double()).sum())
        assert dot >= -1e-5 * float(o.double().norm() * a.double().norm()), dot


def assert_global_is_one_vector(method_factory, main: list, aux: list) -> None:
    """granularity="global" on many tensors equals "tensor" on their concatenation."""
    out = combine(method_factory("global"), main, aux)
    flat = combine(
        method_factory("tensor"),
        [torch.cat([t.flatten() for t in main])],
        [torch.cat([t.flatten() for t in aux])],
    )
    torch.testing.assert_close(torch.cat([o.flatten() for o in out]), flat[0], rtol=1e-5, atol=1e-6)


def assert_permutation_equivariant(method: GradientMethod, main: list, aux: list) -> None:
    """Reordering the tensors reorders the results (tensor granularity)."""
    out = combine(method, main, aux)
    order = list(reversed(range(len(main))))
    permuted = combine(method, [main[i] for i in order], [aux[i] for i in order])
    for i, p in zip(order, permuted):
        torch.testing.assert_close(p, out[i])


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double().flatten(), y.double().flatten()
    return float((x @ y) / (x.norm() * y.norm()))


def angle(x: torch.Tensor, y: torch.Tensor) -> float:
    return math.acos(max(-1.0, min(1.0, cosine(x, y))))
