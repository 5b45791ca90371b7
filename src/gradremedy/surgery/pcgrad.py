"""PCGrad: Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task Learning",
NeurIPS 2020, arXiv:2001.06782.

If the two gradients conflict (<s, a> < 0), project away the conflicting component:

    s' = s - (<s, a> / |a|^2) a          (auxiliary projected onto the normal plane of a)
    a' = a - (<s, a> / |s|^2) s          (only with ``symmetric=True``: the original, symmetric rule)

and the group receives s' + a' (a' = a by default: the main task's gradient is kept as it is, as in
GR). Without conflict s + a. So A = 1 - [symmetric] <s,a>/|s|^2 and B = 1 - <s,a>/|a|^2 when
conflicting. For two tasks the order of projections does not matter: each uses the other's original.
Groups without a usable angle (zero, negligible or non-finite; see GroupStats.usable) get s + a.
"""

from __future__ import annotations

from typing import Any

import torch

from gradremedy.surgery.base import Coefficients, GradientMethod, plain_sum_where_unusable
from gradremedy.surgery.grouping import GroupStats


class PCGrad(GradientMethod):
    """Project the auxiliary gradient (and the main one too with ``symmetric=True``) on conflict."""

    name = "pcgrad"

    def __init__(self, granularity: str = "tensor", symmetric: bool = False):
        super().__init__(granularity)
        self.symmetric = bool(symmetric)

    def settings(self) -> dict[str, Any]:
        return {"granularity": self.granularity, "symmetric": self.symmetric}

    def coefficients(self, stats: GroupStats) -> Coefficients:
        usable = stats.usable
        cos = stats.cos
        r = torch.where(usable, stats.ratio, torch.ones_like(cos))  # |s| / |a|
        conflict = usable & (cos < 0)
        zero = torch.zeros_like(cos)
        B = 1 - torch.where(conflict, cos * r, zero)  # <s,a>/|a|^2 = cos |s|/|a|
        A = 1 - torch.where(conflict, cos / r, zero) if self.symmetric else torch.ones_like(cos)
        A, B = plain_sum_where_unusable(stats, A, B)
        return A, B, {}
