"""MGDA, two-task closed form: Sener and Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018, arXiv:1810.04650 (Algorithm 1, the two-task case; Desideri 2012).

The min-norm point of the segment between the two gradients,

    gamma = clip( <a - s, a> / |s - a|^2, 0, 1 ),     d = gamma s + (1 - gamma) a,

is a common descent direction (or 0 at a Pareto-stationary point). The group receives 2 d, so that
the update has the scale of the plain sum s + a when the two gradients agree (s = a gives s + a);
that is A = 2 gamma, B = 2 (1 - gamma). If s = a the segment is a point: gamma = 1/2.
Groups without a usable angle (zero, negligible or non-finite; see GroupStats.usable) get s + a.
"""

from __future__ import annotations

import torch

from gradremedy.surgery.base import Coefficients, GradientMethod, plain_sum_where_unusable
from gradremedy.surgery.grouping import GroupStats


class MGDA(GradientMethod):
    """Twice the min-norm convex combination of s and a."""

    name = "mgda"

    def coefficients(self, stats: GroupStats) -> Coefficients:
        ss, aa, sa = stats.ss, stats.aa, stats.sa
        distance2 = (ss + aa - 2 * sa).clamp(min=0)  # |s - a|^2
        safe = torch.where(distance2 > 0, distance2, torch.ones_like(distance2))
        half = torch.full_like(ss, 0.5)
        gamma = torch.where(distance2 > 0, ((aa - sa) / safe).clamp(0, 1), half)
        # 1 - gamma computed directly: it may be far below float64 resolution next to 1 (|s| << |a|).
        one_minus_gamma = torch.where(distance2 > 0, ((ss - sa) / safe).clamp(0, 1), half)
        A, B = plain_sum_where_unusable(stats, 2 * gamma, 2 * one_minus_gamma)
        usable = stats.usable
        mean_gamma = torch.where(usable, gamma, torch.zeros_like(gamma)).sum() / usable.sum().clamp(min=1)
        return A, B, {"gamma_mean": mean_gamma}
