"""Gradient methods for one main task and one auxiliary task sharing parameters, and the engine
that applies them inside a training step.

Every method combines, per group of shared parameters, the auxiliary gradient ``s`` and the main
gradient ``a`` as ``A * s + B * a`` with per-group scalars computed from ``|s|^2, |a|^2, <s, a>``:

======== ==========================================================================
sum      plain multi-task sum ``s + a``                          (``plain_sum.py``)
gr       Gradient Remedy, Hu et al. ICASSP 2023                  (``remedy.py``)
pcgrad   PCGrad, Yu et al. NeurIPS 2020                          (``pcgrad.py``)
gradvac  Gradient Vaccine, Wang et al. ICLR 2021                 (``gradvac.py``)
cagrad   CAGrad, Liu et al. NeurIPS 2021 (two-task closed form)  (``cagrad.py``)
mgda     MGDA, Sener and Koltun NeurIPS 2018 (two-task closed form) (``mgda.py``)
======== ==========================================================================
"""

from __future__ import annotations

import inspect
from typing import Any

from gradremedy.errors import UserError
from gradremedy.surgery.base import GradientMethod, apply_method
from gradremedy.surgery.cagrad import CAGrad
from gradremedy.surgery.engine import ACCUMULATION_POLICIES, GradientEngine
from gradremedy.surgery.gradvac import GradVac
from gradremedy.surgery.grouping import (
    GRANULARITIES,
    FlatLayout,
    GroupStats,
    groups_from_modules,
    kinds_from_modules,
)
from gradremedy.surgery.mgda import MGDA
from gradremedy.surgery.pcgrad import PCGrad
from gradremedy.surgery.plain_sum import PlainSum
from gradremedy.surgery.remedy import GradientRemedy, gradient_remedy

METHODS: dict[str, type[GradientMethod]] = {
    "sum": PlainSum,
    "gr": GradientRemedy,
    "pcgrad": PCGrad,
    "gradvac": GradVac,
    "cagrad": CAGrad,
    "mgda": MGDA,
}


class SurgeryError(UserError, ValueError):
    """An unknown method or a bad setting (a config error: printed as one line by the CLI)."""


def build_method(name: str, **settings: Any) -> GradientMethod:
    """Build a method by name, e.g. ``build_method("gr", K=5, granularity="tensor")``.

    Settings per method: every method takes ``granularity`` (tensor | layer | global); ``gr``: ``K``,
    ``max_stretch``; ``pcgrad``: ``symmetric``; ``gradvac``: ``beta``; ``cagrad``: ``c``.
    A setting the method does not use is an error, never silently ignored.
    """
    if name not in METHODS:
        raise SurgeryError(f"unknown gradient method '{name}' (known: {', '.join(METHODS)})")
    cls = METHODS[name]
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise SurgeryError(
            f"method '{name}' has no setting {', '.join(unknown)} (its settings: {', '.join(known)})"
        )
    try:
        return cls(**settings)
    except ValueError as err:
        raise SurgeryError(str(err)) from None


def build_method_from_config(surgery: Any) -> GradientMethod:
    """Build the method named by a ``SurgeryConfig`` (``method``, ``K``, ``granularity``, ...)."""
    settings: dict[str, Any] = {"granularity": surgery.granularity}
    if surgery.method == "gr":
        settings.update(K=surgery.K, max_stretch=surgery.gr_max_stretch)
    elif surgery.method == "pcgrad":
        settings.update(symmetric=surgery.pcgrad_symmetric)
    elif surgery.method == "gradvac":
        settings.update(beta=surgery.gradvac_beta)
    elif surgery.method == "cagrad":
        settings.update(c=surgery.cagrad_c)
    return build_method(surgery.method, **settings)


__all__ = [
    "ACCUMULATION_POLICIES",
    "CAGrad",
    "FlatLayout",
    "GRANULARITIES",
    "GradVac",
    "GradientEngine",
    "GradientMethod",
    "GradientRemedy",
    "GroupStats",
    "MGDA",
    "METHODS",
    "PCGrad",
    "PlainSum",
    "SurgeryError",
    "apply_method",
    "build_method",
    "build_method_from_config",
    "gradient_remedy",
    "groups_from_modules",
    "kinds_from_modules",
]
