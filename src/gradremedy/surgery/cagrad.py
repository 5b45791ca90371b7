"""CAGrad, two-task closed form: Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for
Multi-task Learning", NeurIPS 2021, arXiv:2110.14048.

With g0 = (s + a) / 2 the average gradient, CAGrad takes d = g0 + (c |g0| / |g_x|) g_x where
g_x = x s + (1 - x) a and x in [0, 1] minimises  F(x) = <g_x, g0> + c |g0| |g_x|  (the dual of
"maximise the worst task's improvement within a ball of radius c |g0| around g0"). The official
code then divides by 1 + c^2 and we multiply by 2 (tasks summed, not averaged), so that c = 0 gives
the plain sum s + a.

No solver: F is convex in x. With u = s - a, q = |u|^2, m = <a, u>, h^2 = (|s|^2|a|^2 - <s,a>^2)/q
(the squared distance from 0 to the line through s and a) and t = -<u, g0> / (c |g0|), F'(x) = 0 at

    x* = -m/q + t h / sqrt(q (q - t^2))     if t^2 < q,

F decreases everywhere if t >= sqrt(q) (x = 1) and increases if t <= -sqrt(q) (x = 0); x = clip(x*, 0, 1).
If s = a (q = 0) every x gives the same g_x (x = 1/2). If g_x = 0 the direction term is dropped (as
the official code's 1e-8 guard does). Result: A = (1 + 2 lambda x) / (1 + c^2) and
B = (1 + 2 lambda (1 - x)) / (1 + c^2), lambda = c |g0| / |g_x|.
Groups without a usable angle (zero, negligible or non-finite; see GroupStats.usable) get s + a.
"""

from __future__ import annotations

from typing import Any

import torch

from gradremedy.surgery.base import Coefficients, GradientMethod, plain_sum_where_unusable
from gradremedy.surgery.grouping import GroupStats


class CAGrad(GradientMethod):
    """Conflict-averse direction with ball radius ``c`` (relative to |g0|)."""

    name = "cagrad"

    def __init__(self, granularity: str = "tensor", c: float = 0.5):
        super().__init__(granularity)
        if not (c >= 0 and c < float("inf")):
            raise ValueError(f"cagrad: c must be a finite number >= 0, got {c}")
        self.c = float(c)

    def settings(self) -> dict[str, Any]:
        return {"granularity": self.granularity, "c": self.c}

    def weight(self, stats: GroupStats) -> torch.Tensor:
        """The minimiser x in [0, 1] of F (the weight of s in g_x), per group."""
        ss, aa, sa = stats.ss, stats.aa, stats.sa
        q = (ss + aa - 2 * sa).clamp(min=0)  # |s - a|^2
        safe_q = torch.where(q > 0, q, torch.ones_like(q))
        m = sa - aa  # <a, s - a>
        h2 = ((ss * aa - sa * sa) / safe_q).clamp(min=0)
        g0_norm = torch.sqrt(((ss + aa + 2 * sa) / 4).clamp(min=0))
        slope = (ss - aa) / 2  # <u, g0>
        radius = self.c * g0_norm
        t = -slope / torch.where(radius > 0, radius, torch.ones_like(radius))
        inside = (radius > 0) & (t * t < q)
        denom = torch.sqrt(torch.where(inside, q * (q - t * t), torch.ones_like(q)))
        interior = -m / safe_q + t * torch.sqrt(h2) / denom
        x = torch.where(t >= torch.sqrt(q), torch.ones_like(q), torch.zeros_like(q))
        x = torch.where(inside, interior.clamp(0, 1), x)
        return torch.where(q > 0, x, torch.full_like(q, 0.5))

    def coefficients(self, stats: GroupStats) -> Coefficients:
        ss, aa, sa = stats.ss, stats.aa, stats.sa
        x = self.weight(stats)
        gx2 = (x * x * ss + 2 * x * (1 - x) * sa + (1 - x) ** 2 * aa).clamp(min=0)
        g0_norm = torch.sqrt(((ss + aa + 2 * sa) / 4).clamp(min=0))
        tiny = gx2 <= (ss + aa) * GroupStats.NEGLIGIBLE_SQUARED_RATIO
        lam = torch.where(
            tiny, torch.zeros_like(gx2), self.c * g0_norm / torch.sqrt(torch.where(tiny, 1, gx2))
        )
        scale = 1 / (1 + self.c**2)
        A, B = plain_sum_where_unusable(stats, (1 + 2 * lam * x) * scale, (1 + 2 * lam * (1 - x)) * scale)
        usable = stats.usable
        mean_x = torch.where(usable, x, torch.zeros_like(x)).sum() / usable.sum().clamp(min=1)
        return A, B, {"weight_mean": mean_x}
