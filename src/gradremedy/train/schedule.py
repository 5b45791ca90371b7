"""Learning-rate schedules: linear warm-up, then one of three decays (``train.schedule``).

- ``inverse_sqrt`` (ESPnet's WarmupLR, the default):
  ``lr(step) = base_lr * warmup^0.5 * min(step^-0.5, step * warmup^-1.5)``, step = 1, 2, ...
- ``cosine``: from ``base_lr`` at ``warmup`` down to ``base_lr * final_lr_ratio`` at ``total_steps``
  along half a cosine, constant after.
- ``linear``: the same end points on a straight line.

The peak, ``base_lr``, is reached at ``step == warmup``; ``warmup <= 0`` starts at the peak (and keeps
``inverse_sqrt`` constant). ``cosine`` and ``linear`` need the run's length, ``total_steps`` (the
training loop passes ``train.max_steps``): a short run that ends at a small learning rate learns more in
the same steps than one cut off on the slow inverse-square-root tail. A class rather than a ``LambdaLR``
so that its state (the step count) goes into checkpoints without pickling a lambda.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler

SCHEDULES = ("inverse_sqrt", "cosine", "linear")
_SETTINGS = ("warmup_steps", "schedule", "total_steps", "final_lr_ratio")  # from the config, not checkpoints


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (counted from 1), inverse_sqrt."""
    if warmup_steps <= 0:  # no schedule: the base learning rate throughout
        return 1.0
    step = max(step, 1)
    return warmup_steps**0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def lr_factor(
    step: int,
    warmup_steps: int,
    schedule: str = "inverse_sqrt",
    total_steps: int = 0,
    final_lr_ratio: float = 0.0,
) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (counted from 1)."""
    if schedule == "inverse_sqrt":
        return warmup_factor(step, warmup_steps)
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
    if total_steps <= warmup_steps:
        raise ValueError(f"schedule {schedule!r} needs total_steps > warmup_steps, got {total_steps}")
    step = max(step, 1)
    if step < warmup_steps:
        return step / warmup_steps
    progress = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return final_lr_ratio + (1.0 - final_lr_ratio) * shape


class WarmupLR(LRScheduler):
    """Warm-up then decay; call ``step()`` once after every optimizer step."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int,
        last_epoch: int = -1,
        *,
        schedule: str = "inverse_sqrt",
        total_steps: int = 0,
        final_lr_ratio: float = 0.0,
    ):
        self.warmup_steps = warmup_steps
        self.schedule = schedule
        self.total_steps = total_steps
        self.final_lr_ratio = final_lr_ratio
        lr_factor(1, warmup_steps, schedule, total_steps, final_lr_ratio)  # bad settings fail here
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict:
        """The step count, not the settings: a resumed run may extend ``total_steps`` (train.max_steps)."""
        state = super().state_dict()
        for key in _SETTINGS:
            state.pop(key, None)
        return state

    def get_lr(self) -> list[float]:
        # last_epoch counts the scheduler's steps: 0 right after construction, so the first optimizer
        # step runs with the factor of step 1.
        factor = lr_factor(
            self.last_epoch + 1, self.warmup_steps, self.schedule, self.total_steps, self.final_lr_ratio
        )
        return [base_lr * factor for base_lr in self.base_lrs]
