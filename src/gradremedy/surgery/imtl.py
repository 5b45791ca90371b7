"""IMTL-G, two-task closed form: Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, "Towards Impartial
Multi-task Learning", ICLR 2021 (gradient part, "IMTL-G").

IMTL-G looks for the combination g = sum_t alpha_t g_t with sum_t alpha_t = 1 whose projections on
every task's unit gradient u_t = g_t / |g_t| are equal. With g_1 the first task's gradient,
D = [g_1 - g_2, ...] and U = [u_1 - u_2, ...] (one row per other task), the paper's solution is

    alpha_{2:T} = g_1 U^T (D U^T)^{-1},      alpha_1 = 1 - sum(alpha_{2:T}).

For two tasks (g_1 = a, g_2 = s) D U^T is the scalar <a - s, u_a - u_s> = (|a| + |s|)(1 - cos) and
g_1 U^T = <a, u_a - u_s> = |a| (1 - cos), so

    alpha_s = |a| / (|a| + |s|),     alpha_a = |s| / (|a| + |s|),

the same for every angle (the cos = 1 case, where D U^T = 0 and any alpha works, is its limit): each
gradient is weighted by the other's norm, g = |a||s| / (|a| + |s|) (u_s + u_a). As MGDA's and CAGrad's
here, the group receives 2 g, so that identical gradients give the plain sum s + a:

    A = 2 |a| / (|a| + |s|),     B = 2 |s| / (|a| + |s|).

The result never opposes either task: <2g, a> = 2|a| (|s||a| + <s, a>) / (|a| + |s|) >= 0, likewise
for s. Groups without a usable angle (zero, negligible or non-finite; see GroupStats.usable) get s + a.
"""

from __future__ import annotations

import torch

from gradremedy.surgery.base import Coefficients, GradientMethod, plain_sum_where_unusable
from gradremedy.surgery.grouping import GroupStats


class IMTLG(GradientMethod):
    """Weights making the combined gradient's projections on both unit task gradients equal."""

    name = "imtl"

    def coefficients(self, stats: GroupStats) -> Coefficients:
        usable = stats.usable
        norm_s = torch.sqrt(torch.where(usable, stats.ss, torch.ones_like(stats.ss)))
        norm_a = torch.sqrt(torch.where(usable, stats.aa, torch.ones_like(stats.aa)))
        total = norm_s + norm_a
        A, B = plain_sum_where_unusable(stats, 2 * norm_a / total, 2 * norm_s / total)
        weight_s = torch.where(usable, norm_a / total, torch.zeros_like(total))
        return A, B, {"weight_mean": weight_s.sum() / usable.sum().clamp(min=1)}
