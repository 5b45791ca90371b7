"""The registry: names, build_method's settings check, register_method, and errors a config can cause."""

from __future__ import annotations

import pytest
import torch

from gradremedy.errors import UserError
from gradremedy.surgery import (
    GradientMethod,
    SurgeryError,
    apply_method,
    build_method,
    method_class,
    method_names,
    method_settings,
    register_method,
)
from gradremedy.surgery.registry import _REGISTRY, BUILTIN_METHODS


def test_every_method_is_listed_once_in_registration_order() -> None:
    assert method_names()[:7] == ("sum", "gr", "pcgrad", "gradvac", "cagrad", "mgda", "imtl")
    assert len(set(method_names())) == len(method_names())
    assert set(BUILTIN_METHODS) <= set(method_names())


def test_every_method_builds_with_every_granularity() -> None:
    for name in method_names():
        for granularity in ("tensor", "layer", "global"):
            method = build_method(name, granularity=granularity)
            assert method.name == name and method.granularity == granularity
            assert method.settings()["granularity"] == granularity
            assert isinstance(method, method_class(name))


def test_settings_are_the_signature() -> None:
    assert method_settings("gr") == {"K": 5.0, "granularity": "tensor", "max_stretch": 1e3}
    assert method_settings("pcgrad") == {"granularity": "tensor", "symmetric": False}
    assert method_settings("imtl") == {"granularity": "tensor"}
    settings = build_method("gr", K=3.0, max_stretch=50.0, granularity="global").settings()
    assert settings == {"K": 3.0, "max_stretch": 50.0, "granularity": "global"}


def test_errors_name_the_method_and_setting() -> None:
    with pytest.raises(SurgeryError, match="unknown gradient method 'grr'"):
        build_method("grr")
    with pytest.raises(
        SurgeryError, match=r"method 'pcgrad' has no setting K \(its settings: granularity, symmetric\)"
    ):
        build_method("pcgrad", K=5.0)
    with pytest.raises(SurgeryError, match="unknown granularity 'block'"):
        build_method("gr", granularity="block")
    with pytest.raises(SurgeryError, match="beta must be in"):
        build_method("gradvac", beta=0.0)
    with pytest.raises(SurgeryError, match="c must be a finite number"):
        build_method("cagrad", c=-1.0)
    with pytest.raises(SurgeryError, match="max_stretch"):
        build_method("gr", max_stretch=0.5)
    assert issubclass(SurgeryError, UserError) and issubclass(SurgeryError, ValueError)


class HalfSum(GradientMethod):
    """A method from outside the package: (s + a) / 2 everywhere."""

    name = "half_sum"

    def __init__(self, granularity: str = "tensor", weight: float = 0.5):
        super().__init__(granularity)
        self.weight = weight

    def coefficients(self, stats):
        w = torch.full_like(stats.ss, self.weight)
        return w, w.clone(), {}


def test_register_method_from_outside() -> None:
    try:
        register_method("half_sum", HalfSum)
        assert method_names()[-1] == "half_sum"
        (out,) = apply_method(build_method("half_sum", weight=0.25), [torch.ones(3)], [torch.ones(3)])
        torch.testing.assert_close(out, torch.full((3,), 0.5))
        with pytest.raises(SurgeryError, match="already registered"):
            register_method("half_sum", HalfSum)
        with pytest.raises(SurgeryError, match="has no setting K"):
            build_method("half_sum", K=1.0)
        with pytest.raises(SurgeryError, match="name attribute is 'half_sum'"):
            register_method("other", HalfSum)
        with pytest.raises(SurgeryError, match="not a GradientMethod"):
            register_method("other", dict)  # type: ignore[arg-type]
    finally:
        _REGISTRY.pop("half_sum", None)


class NeedsAlpha(GradientMethod):
    """A method from outside whose setting has no default."""

    name = "needs_alpha"

    def __init__(self, alpha: float, granularity: str = "tensor"):
        super().__init__(granularity)
        self.alpha = alpha

    def coefficients(self, stats):
        w = torch.full_like(stats.ss, self.alpha)
        return w, w.clone(), {}


def test_a_required_setting_is_listed_and_needed() -> None:
    try:
        register_method("needs_alpha", NeedsAlpha)
        assert method_settings("needs_alpha") == {"alpha": None, "granularity": "tensor"}
        assert method_settings("needs_alpha", required=False) == {"granularity": "tensor"}
        with pytest.raises(SurgeryError, match="alpha"):
            build_method("needs_alpha")
        assert build_method("needs_alpha", alpha=0.5).alpha == 0.5
    finally:
        _REGISTRY.pop("needs_alpha", None)
