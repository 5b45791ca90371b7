"""The interface every gradient method implements, and the functional form that applies one.

A method sees, per group, only the three reductions of the auxiliary gradient ``s`` and the main
gradient ``a`` (:class:`GroupStats`) and returns two per-group scalars ``A`` and ``B``: the shared
parameters then receive ``A * s + B * a``. It may also return its own diagnostics (0-d tensors) and
keep state across steps (GradVac's target similarity) through ``state_dict``/``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

from gradremedy.surgery.grouping import GRANULARITIES, FlatLayout, GroupStats, group_ids_for

Coefficients = tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]


class GradientMethod:
    """Base class: ``coefficients(stats) -> (A, B, diagnostics)``, all tensors, no host syncs."""

    name = "method"
    # True when method(c s, c a) = c method(s, a) for every c > 0 (needed under a loss scaler).
    scale_equivariant = True

    def __init__(self, granularity: str = "tensor"):
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"{self.name}: unknown granularity '{granularity}' (known: {', '.join(GRANULARITIES)})"
            )
        self.granularity = granularity

    def coefficients(self, stats: GroupStats) -> Coefficients:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got keys {sorted(state)}")

    def settings(self) -> dict[str, Any]:
        """The settings it was built with (for logs and checkpoints)."""
        return {"granularity": self.granularity}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


def plain_sum_where_unusable(
    stats: GroupStats, A: torch.Tensor, B: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Use ``A = B = 1`` (the plain sum) in groups without a usable angle (see GroupStats.usable)."""
    usable = stats.usable
    one = torch.ones_like(A)
    return torch.where(usable, A, one), torch.where(usable, B, one)


def _as_flat_pairs(
    main_grads: Sequence[torch.Tensor | None], aux_grads: Sequence[torch.Tensor | None]
) -> tuple[list[torch.Size], torch.device, torch.dtype]:
    if len(main_grads) != len(aux_grads):
        raise ValueError(f"main_grads has {len(main_grads)} tensors but aux_grads has {len(aux_grads)}")
    shapes, devices, dtypes = [], set(), []
    for i, (a, s) in enumerate(zip(main_grads, aux_grads)):
        if a is not None and s is not None and a.shape != s.shape:
            raise ValueError(f"tensor {i}: main gradient shape {tuple(a.shape)} != aux {tuple(s.shape)}")
        ref = a if a is not None else s
        shapes.append(ref.shape if ref is not None else torch.Size([0]))
        for t in (a, s):
            if t is not None:
                devices.add(t.device)
                dtypes.append(t.dtype)
    if len(devices) > 1:
        raise ValueError(f"gradients are on several devices: {sorted(map(str, devices))}")
    device = devices.pop() if devices else torch.device("cpu")
    dtype = torch.float64 if torch.float64 in dtypes else torch.float32
    return shapes, device, dtype


def apply_method(
    method: GradientMethod,
    main_grads: Sequence[torch.Tensor | None],
    aux_grads: Sequence[torch.Tensor | None],
    *,
    groups: Sequence[Hashable] | None = None,
) -> list[torch.Tensor | None]:
    """Combine per-tensor main and auxiliary gradients with ``method``; returns ``A*s + B*a`` per tensor.

    A ``None`` gradient counts as zeros; a tensor whose two gradients are both ``None`` gets ``None``.
    Results have the shapes and dtypes of the inputs (computed in float32, or float64 if any input is).
    This is the functional form of what :class:`GradientEngine` does inside a training step.
    """
    shapes, device, dtype = _as_flat_pairs(main_grads, aux_grads)
    layout = FlatLayout(shapes, group_ids_for(shapes, method.granularity, groups), device, dtype)
    buffer = layout.new_buffer(2)
    for row, grads in ((0, aux_grads), (1, main_grads)):
        for view, grad in zip(layout.views(buffer[row]), grads):
            if grad is not None:
                view.copy_(grad)
    A, B, _ = method.coefficients(layout.reduce(buffer))
    out = torch.empty(layout.padded, device=device, dtype=dtype)
    layout.combine(buffer, A, B, out)
    results: list[torch.Tensor | None] = []
    for view, a, s in zip(layout.views(out), main_grads, aux_grads):
        ref = a if a is not None else s
        results.append(None if ref is None else view.to(ref.dtype))
    return results
