"""The plain multi-task baseline: the shared parameters receive s + a (A = B = 1 in every group).

This is what ``L = (1 - w) L_asr + w L_se`` followed by one ``backward()`` gives; it is the
reference every other method is compared with.
"""

from __future__ import annotations

import torch

from gradremedy.surgery.base import Coefficients, GradientMethod
from gradremedy.surgery.grouping import GroupStats


class PlainSum(GradientMethod):
    """``s + a``."""

    name = "sum"
    adds_gradients = True

    def coefficients(self, stats: GroupStats) -> Coefficients:
        one = torch.ones_like(stats.ss)
        return one, one.clone(), {}
