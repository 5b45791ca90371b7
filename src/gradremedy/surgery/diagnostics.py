"""Per-step diagnostics of the two task gradients, computed on the device from the per-group
reductions (a few operations on G numbers; no pass over the gradients, no host sync).

All values are 0-d float64 tensors; call ``.item()`` only when logging. Statistics over an empty
set (no group where both gradients are non-zero) are NaN: undefined, not 0.
"""

from __future__ import annotations

import torch

from gradremedy.surgery.grouping import GroupStats

QUANTILES = (0.1, 0.5, 0.9)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / count  # NaN when count == 0: undefined


def gradient_diagnostics(
    stats: GroupStats,
    A: torch.Tensor,
    B: torch.Tensor,
    kind_index: torch.Tensor,
    kind_names: list[str],
) -> dict[str, torch.Tensor]:
    """Conflict rate, cos(s, a) mean and quantiles, median |s|/|a|, global norms, per-kind rates.

    * ``conflict_rate``: fraction of all groups with <s, a> < 0;
    * ``cos_mean``, ``cos_q10``, ``cos_q50``, ``cos_q90``: over groups where both gradients are usable;
    * ``norm_ratio_median``: median of |s| / |a| over the same groups;
    * ``aux_norm``, ``main_norm``, ``combined_norm``: global norms of s, a and the combined gradient
      (the last from the coefficients: |A s + B a|^2 = A^2 |s|^2 + 2 A B <s,a> + B^2 |a|^2);
    * ``usable_groups``: how many groups had an angle;
    * ``conflict_rate/<kind>``, ``cos_mean/<kind>`` for every kind of group (e.g. matrix / vector,
      or LSTM / Linear).
    """
    usable = stats.usable
    cos = stats.cos
    conflict = stats.sa < 0
    nan = cos.new_full((1,), float("nan"))  # keeps the quantiles defined (NaN) with no groups at all
    nan_outside = torch.cat([torch.where(usable, cos, nan), nan])
    ratio = torch.cat([torch.where(usable, stats.ratio, nan), nan])
    combined = (A * A * stats.ss + 2 * A * B * stats.sa + B * B * stats.aa).clamp(min=0)
    out = {
        "conflict_rate": conflict.double().mean(),
        "cos_mean": _masked_mean(cos, usable),
        "norm_ratio_median": torch.nanquantile(ratio, 0.5),
        "aux_norm": stats.ss.sum().sqrt(),
        "main_norm": stats.aa.sum().sqrt(),
        "combined_norm": combined.sum().sqrt(),
        "usable_groups": usable.double().sum(),
    }
    for q in QUANTILES:  # a Python float q: no host-to-device copy
        out[f"cos_q{round(q * 100)}"] = torch.nanquantile(nan_outside, q)
    if len(kind_names) > 1:
        zeros = torch.zeros(len(kind_names), dtype=torch.float64, device=cos.device)
        groups = zeros.index_add(0, kind_index, torch.ones_like(cos))
        conflicts = zeros.index_add(0, kind_index, conflict.double())
        usable_count = zeros.index_add(0, kind_index, usable.double())
        cos_sum = zeros.index_add(0, kind_index, torch.where(usable, cos, torch.zeros_like(cos)))
        for k, name in enumerate(kind_names):
            out[f"conflict_rate/{name}"] = conflicts[k] / groups[k]
            out[f"cos_mean/{name}"] = cos_sum[k] / usable_count[k]
    return out
