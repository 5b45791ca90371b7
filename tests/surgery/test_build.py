"""build_method / build_method_from_config: names, settings, and errors a config can cause."""

from __future__ import annotations

import dataclasses

import pytest

from gradremedy.config import SurgeryConfig
from gradremedy.errors import UserError
from gradremedy.surgery import METHODS, SurgeryError, build_method, build_method_from_config


def test_every_method_builds_with_every_granularity() -> None:
    for name in METHODS:
        for granularity in ("tensor", "layer", "global"):
            method = build_method(name, granularity=granularity)
            assert method.name == name and method.granularity == granularity
            assert method.settings()["granularity"] == granularity


def test_errors_name_the_method_and_setting() -> None:
    with pytest.raises(SurgeryError, match="unknown gradient method 'grr'"):
        build_method("grr")
    with pytest.raises(SurgeryError, match="method 'pcgrad' has no setting K"):
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


@pytest.mark.parametrize("name", sorted(METHODS))
def test_from_config_passes_the_method_settings(name: str) -> None:
    config = dataclasses.replace(
        SurgeryConfig(),
        method=name,
        K=3.0,
        gr_max_stretch=50.0,
        granularity="global",
        pcgrad_symmetric=True,
        gradvac_beta=0.2,
        cagrad_c=0.7,
    )
    settings = build_method_from_config(config).settings()
    expected = {
        "sum": {},
        "gr": {"K": 3.0, "max_stretch": 50.0},
        "pcgrad": {"symmetric": True},
        "gradvac": {"beta": 0.2},
        "cagrad": {"c": 0.7},
        "mgda": {},
    }[name]
    assert settings == {"granularity": "global", **expected}
