"""GradVac: Wang, Tsvetkov, Firat, Cao, "Gradient Vaccine: Investigating and Improving Multi-task
Optimization in Massively Multilingual Models", ICLR 2021, arXiv:2010.05874.

Each group keeps an exponential moving average phi_hat of cos(s, a) (the target similarity,
initially 0, updated after use with ``phi_hat <- (1 - beta) phi_hat + beta phi``). When the current
similarity phi = cos(s, a) is below the target, the auxiliary gradient is moved toward a until
their cosine equals phi_hat:

    s' = s + |s| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (|a| sqrt(1 - phi_hat^2)) a

and the group receives s' + a (the main gradient is kept, as in GR and our PCGrad default). So
A = 1 and B = 1 + r (phi_hat sin - phi sqrt(1 - phi_hat^2)) / sqrt(1 - phi_hat^2), r = |s|/|a|.
With phi_hat = 0 this is PCGrad. The target used is clamped to at most 1 - 1e-6 so that the
coefficient stays bounded. The targets are state: checkpoint them with state_dict(). Groups without
a usable angle (zero, negligible or non-finite; see GroupStats.usable) get s + a and leave their
target unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from gradremedy.surgery.base import Coefficients, GradientMethod, plain_sum_where_unusable
from gradremedy.surgery.grouping import GroupStats

MAX_TARGET = 1 - 1e-6


class GradVac(GradientMethod):
    """Raise cos(s, a) to a per-group EMA target; ``beta`` is the EMA rate."""

    name = "gradvac"

    def __init__(self, granularity: str = "tensor", beta: float = 0.01):
        super().__init__(granularity)
        if not (0 < beta <= 1):
            raise ValueError(f"gradvac: beta must be in (0, 1], got {beta}")
        self.beta = float(beta)
        self.target: torch.Tensor | None = None  # (G,) float64, created on first use

    def settings(self) -> dict[str, Any]:
        return {"granularity": self.granularity, "beta": self.beta}

    def coefficients(self, stats: GroupStats) -> Coefficients:
        if self.target is None:
            self.target = torch.zeros_like(stats.ss)
        if self.target.shape != stats.ss.shape:
            raise ValueError(f"gradvac: state has {self.target.numel()} groups, gradients {stats.ss.numel()}")
        self.target = self.target.to(stats.ss.device)
        target = self.target.clamp(max=MAX_TARGET)
        usable = stats.usable
        phi = stats.cos
        r = torch.where(usable, stats.ratio, torch.zeros_like(phi))
        apply = usable & (phi < target)
        sin = torch.sqrt((1 - phi * phi).clamp(min=0))
        target_sin = torch.sqrt(1 - target * target)
        shift = r * (target * sin - phi * target_sin) / target_sin
        B = 1 + torch.where(apply, shift, torch.zeros_like(phi))
        A, B = plain_sum_where_unusable(stats, torch.ones_like(B), B)
        self.target = torch.where(usable, (1 - self.beta) * self.target + self.beta * phi, self.target)
        diagnostics = {
            "applied_rate": apply.double().mean(),
            "target_mean": self.target.mean(),
        }
        return A, B, diagnostics

    def state_dict(self) -> dict[str, Any]:
        return {"target": None if self.target is None else self.target.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - {"target"}
        if unknown:
            raise ValueError(f"gradvac: unknown state keys {sorted(unknown)}")
        target = state.get("target")
        self.target = None if target is None else target.to(torch.float64).clone()
