"""Gradient methods for one main task and one auxiliary task sharing parameters, and the engine
that applies them inside a training step. Needs only torch (and numpy through torch).

Every method combines, per group of shared parameters, the auxiliary gradient ``s`` and the main
gradient ``a`` as ``A * s + B * a`` with per-group scalars computed from ``|s|^2, |a|^2, <s, a>``:

======== ============================================================================
sum      plain multi-task sum ``s + a``                             (``plain_sum.py``)
gr       Gradient Remedy, Hu et al. ICASSP 2023                     (``remedy.py``)
pcgrad   PCGrad, Yu et al. NeurIPS 2020                             (``pcgrad.py``)
gradvac  Gradient Vaccine, Wang et al. ICLR 2021                    (``gradvac.py``)
cagrad   CAGrad, Liu et al. NeurIPS 2021 (two-task closed form)     (``cagrad.py``)
mgda     MGDA, Sener and Koltun NeurIPS 2018 (two-task closed form) (``mgda.py``)
imtl     IMTL-G, Liu et al. ICLR 2021 (two-task closed form)        (``imtl.py``)
======== ============================================================================

The list itself lives in one place, :mod:`gradremedy.surgery.registry`; see docs/library.md.
"""

from __future__ import annotations

from gradremedy.surgery.base import GradientMethod, apply_method
from gradremedy.surgery.cagrad import CAGrad
from gradremedy.surgery.engine import ACCUMULATION_POLICIES, GradientEngine, default_backward
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
from gradremedy.surgery.registry import (
    SurgeryError,
    build_method,
    method_class,
    method_names,
    method_settings,
    register_method,
)
from gradremedy.surgery.remedy import GradientRemedy, gradient_remedy
from gradremedy.surgery.steps import AllReduceTasks, ClipPerTask, ScaleTasks, TaskGradients

__all__ = [
    "ACCUMULATION_POLICIES",
    "AllReduceTasks",
    "CAGrad",
    "ClipPerTask",
    "FlatLayout",
    "GRANULARITIES",
    "GradVac",
    "GradientEngine",
    "GradientMethod",
    "GradientRemedy",
    "GroupStats",
    "MGDA",
    "PCGrad",
    "PlainSum",
    "ScaleTasks",
    "SurgeryError",
    "TaskGradients",
    "apply_method",
    "build_method",
    "default_backward",
    "gradient_remedy",
    "groups_from_modules",
    "kinds_from_modules",
    "method_class",
    "method_names",
    "method_settings",
    "register_method",
]
