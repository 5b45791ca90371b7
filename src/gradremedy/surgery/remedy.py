"""Gradient Remedy (GR): Hu, Chen, Li, Zhu, Chng, "Gradient Remedy for Multi-Task Learning in
End-to-End Noise-Robust Speech Recognition", ICASSP 2023, arXiv:2302.11362.

Per group of shared parameters, with s = gradient of w*L_se (auxiliary) and a = gradient of
(1-w)*L_asr (main):

1. Angle. If <s, a> < 0:  s_perp = s - (<s,a>/|a|^2) a,  s' = s_perp + (|s_perp| / r) a/|a|,
   r = |s|/|a|. Otherwise s' = s. Afterwards angle(s', a) = arctan(|s|/|a|).
2. Magnitude. cos' = <s', a> / (|s'| |a|). If |s'| / |a| > K and cos' is not negligible:
   s' <- cos' s',  a' = a / cos'. Otherwise a' = a.
3. The group receives s' + a'.

Closed form. Write cos = <s,a>/(|s||a|), sin = sqrt(1 - cos^2) and r = |s|/|a|.

* Step 1: |s_perp| = |s| sin, so s' = s + p a with
      p = sin - cos r   if cos < 0,   p = 0 otherwise.
  Then <s', a> = |a|^2 (cos r + p) and, when conflicting, |s'| = |s| sin sqrt(1 + 1/r^2), so
      cos' = 1 / sqrt(1 + r^2)            if cos < 0 (and sin > 0)
      cos' = cos,  |s'| = |s|             otherwise.
  (If s is exactly anti-parallel to a, sin = 0: s' = 0 and nothing is rescaled.)
* Step 2 fires when |s'| > K |a| and cos' >= 1 / max_stretch. Then s' + a' = cos' s + (cos' p + 1/cos') a.
* So the group receives A s + B a with
      A = cos',               B = cos' p + 1/cos'   if step 2 fires,
      A = 1,                  B = p + 1             otherwise.

Edges (documented behaviour, each tested):
* cos' near 0. The authors' code rescales whenever cos' != 0, so 1/cos' is unbounded. Here the
  rescale fires only when cos' >= 1/max_stretch (default 1e3): the stretch a/cos' is at most
  max_stretch times a. For smaller cos' the group gets s' + a, as the authors' rule does at cos' = 0.
  ``max_stretch=float("inf")`` is the paper-faithful mode: the rescale fires whenever cos' > 0 (cos'
  is never negative after step 1), exactly the authors' ``cos' != 0``, and the stretch is unbounded
  (a float32 gradient may then overflow to inf, which a GradScaler skips).
* |a| = 0 or |s| = 0, or one negligible next to the other (ratio below 2^-100), or non-finite
  reductions: the group gets the plain sum s + a (for |a| = 0 this is what the rule gives: no
  conflict, and cos' = 0 so no rescale; for |s| = 0 likewise). Non-finite input thus stays non-finite.
* Empty groups take no space and change nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

from gradremedy.surgery.base import Coefficients, GradientMethod, apply_method, plain_sum_where_unusable
from gradremedy.surgery.grouping import GroupStats


class GradientRemedy(GradientMethod):
    """GR with dominance threshold ``K`` (``inf`` disables the magnitude step) and a bounded stretch
    (``max_stretch=inf``: the authors' unbounded rule)."""

    name = "gr"

    def __init__(self, K: float = 5.0, granularity: str = "tensor", max_stretch: float = 1e3):
        super().__init__(granularity)
        if not (K >= 0):  # also refuses NaN
            raise ValueError(f"gr: K must be >= 0 (inf disables the magnitude step), got {K}")
        if not (max_stretch >= 1):  # also refuses NaN; inf is the authors' unbounded rule
            raise ValueError(
                f"gr: max_stretch must be >= 1 (inf: the authors' unbounded rule), got {max_stretch}"
            )
        self.K = float(K)
        self.max_stretch = float(max_stretch)

    def settings(self) -> dict[str, Any]:
        return {"K": self.K, "granularity": self.granularity, "max_stretch": self.max_stretch}

    def coefficients(self, stats: GroupStats) -> Coefficients:
        cos, r = stats.cos, stats.ratio
        usable = stats.usable
        r = torch.where(usable, r, torch.zeros_like(r))  # keep unusable groups' inf/NaN out of the maths
        conflict = usable & (cos < 0)
        sin = torch.sqrt((1 - cos * cos).clamp(min=0))
        # Step 1: s' = s + p a.
        p = torch.where(conflict, sin - cos * r, torch.zeros_like(cos))
        projected_cos = torch.where(conflict, torch.rsqrt(1 + r * r), cos.clamp(min=0))
        projected_cos = torch.where(conflict & (sin == 0), torch.zeros_like(cos), projected_cos)
        projected_ratio = torch.where(conflict, sin * torch.sqrt(1 + r * r), r)  # |s'| / |a|
        # Step 2: rescale when s' dominates and the stretch 1/cos' is bounded.
        # cos' * max_stretch >= 1; with max_stretch = inf this is cos' > 0 (0 * inf is NaN: no rescale).
        rescale = usable & (projected_ratio > self.K) & (projected_cos * self.max_stretch >= 1)
        safe_cos = torch.where(rescale, projected_cos, torch.ones_like(cos))
        A = torch.where(rescale, safe_cos, torch.ones_like(cos))
        B = torch.where(rescale, safe_cos * p + 1 / safe_cos, p + 1)
        A, B = plain_sum_where_unusable(stats, A, B)
        stretch = torch.where(rescale, 1 / safe_cos, torch.ones_like(cos))
        diagnostics = {
            "rescale_rate": rescale.double().sum() / max(rescale.numel(), 1),
            "stretch_max": torch.cat([stretch.new_ones(1), stretch]).amax(),
        }
        return A, B, diagnostics


def gradient_remedy(
    main_grads: Sequence[torch.Tensor | None],
    aux_grads: Sequence[torch.Tensor | None],
    *,
    K: float = 5.0,
    granularity: str = "tensor",
    groups: Sequence[Hashable] | None = None,
    max_stretch: float = 1e3,
) -> list[torch.Tensor | None]:
    """Gradient Remedy on per-tensor gradients: what the shared (SE) parameters receive, s' + a'.

    ``main_grads[i]`` is the gradient of (1-w)*L_asr (``a``) and ``aux_grads[i]`` that of w*L_se
    (``s``) for the same parameter tensor. ``granularity`` is ``"tensor"`` (one group per tensor, as
    the authors' code), ``"layer"`` (``groups`` gives one group id per tensor; required) or
    ``"global"`` (all tensors as one vector). ``max_stretch`` bounds the stretch a / cos' (default
    1000); ``float("inf")`` is the authors' unbounded rule exactly. Returns new tensors with the inputs'
    shapes and dtypes (see :func:`apply_method`: per-tensor reductions and one combine, no packing).
    """
    method = GradientRemedy(K=K, granularity=granularity, max_stretch=max_stretch)
    return apply_method(method, main_grads, aux_grads, groups=groups)
