"""Gradient Remedy written as a literal per-tensor loop, following the three steps of the spec word
for word: the slow, obvious reference that the vectorised closed form (remedy.py) is tested and
benchmarked against. Not for training: two Python ``if``s on device values per tensor.

The edge rules are the documented ones of remedy.py, spelled out as ``if``s: a group without a
usable angle (a zero, negligible or non-finite gradient) gets s + a, and the magnitude step needs
cos' >= 1/max_stretch instead of the authors' cos' != 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

NEGLIGIBLE_RATIO = 2.0**-100  # |a| / |s| (or |s| / |a|) below which one gradient is negligible


def gradient_remedy_loop(
    main_grads: Sequence[torch.Tensor],
    aux_grads: Sequence[torch.Tensor],
    K: float = 5.0,
    max_stretch: float = 1e3,
) -> list[torch.Tensor]:
    """GR per tensor (granularity "tensor"): returns s' + a' for every pair (a = main, s = aux)."""
    combined = []
    for a, s in zip(main_grads, aux_grads):
        norm_s, norm_a = s.norm(), a.norm()
        usable = (
            bool(torch.isfinite(norm_s) and torch.isfinite(norm_a))
            and norm_s > 0
            and norm_a > 0
            and norm_a > norm_s * NEGLIGIBLE_RATIO
            and norm_s > norm_a * NEGLIGIBLE_RATIO
        )
        if not usable:
            combined.append(s + a)
            continue
        # 1. Angle: only if <s, a> < 0.
        dot = (s * a).sum()
        if dot < 0:
            r = norm_s / norm_a  # tan(theta)
            s_perp = s - (dot / norm_a**2) * a
            s_new = s_perp + (s_perp.norm() / r) * a / norm_a
        else:
            s_new = s
        # 2. Magnitude: only if |s'| / |a| > K and cos' is not negligible.
        a_new = a
        norm_s_new = s_new.norm()
        if norm_s_new > 0:
            cos_new = (s_new * a).sum() / (norm_s_new * norm_a)
            if norm_s_new / norm_a > K and cos_new * max_stretch >= 1:
                s_new = cos_new * s_new
                a_new = a / cos_new
        # 3. The shared parameters get s' + a'.
        combined.append(s_new + a_new)
    return combined
