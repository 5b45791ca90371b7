"""Learning-rate schedule: linear warm-up then inverse-square-root decay (ESPnet's WarmupLR).

    lr(step) = base_lr * warmup^0.5 * min(step^-0.5, step * warmup^-1.5),   step = 1, 2, ...

The peak, ``base_lr``, is reached at ``step == warmup``; ``warmup <= 0`` keeps ``base_lr`` constant.
A class rather than a ``LambdaLR`` so that its state (the step count) goes into checkpoints without
pickling a lambda.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (counted from 1)."""
    if warmup_steps <= 0:  # no schedule: the base learning rate throughout
        return 1.0
    step = max(step, 1)
    return warmup_steps**0.5 * min(step**-0.5, step * warmup_steps**-1.5)


class WarmupLR(LRScheduler):
    """ESPnet's WarmupLR; call ``step()`` once after every optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, last_epoch: int = -1):
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        # last_epoch counts the scheduler's steps: 0 right after construction, so the first optimizer
        # step runs with the factor of step 1.
        factor = warmup_factor(self.last_epoch + 1, self.warmup_steps)
        return [base_lr * factor for base_lr in self.base_lrs]
