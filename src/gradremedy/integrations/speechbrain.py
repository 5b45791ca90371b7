"""Gradient Remedy (and every registry method) in SpeechBrain: a ``Brain`` mixin.

SpeechBrain's ``Brain.fit_batch`` does one scaled backward of one loss. With :class:`TwoTaskBrainMixin`
first in the bases, ``compute_objectives`` returns the two losses, ``(main, aux)`` or
``{"main": ..., "aux": ...}``, and ``fit_batch`` hands them to a :class:`GradientEngine`::

    class JointBrain(TwoTaskBrainMixin, sb.Brain):
        def compute_forward(self, batch, stage): ...
        def compute_objectives(self, predictions, batch, stage):
            return asr_loss, se_loss                       # main, aux
        def shared_parameters(self):
            return self.modules.enhance.parameters()       # where both losses meet

The method and its settings come from the hparams (``gradient_method: gr``, ``gradient_method_settings:
{K: 5}``, optional ``clip_per_task: 5.0``, ``gradient_accumulation: accumulated``) or else from the
class attributes of the same names. What SpeechBrain does around the backward keeps working:

* gradient accumulation (``grad_accumulation_factor``): each loss is divided by it, the engine sums
  each task over the micro-batches and combines once, when SpeechBrain steps;
* AMP: both backward passes go through ``self.scaler.scale(loss).backward()``; ``optimizers_step``
  then unscales, clips and steps as usual (the methods are scale-equivariant);
* per-optimizer clipping (``max_grad_norm``) in ``optimizers_step``, on the combined gradients;
  ``clip_per_task`` adds a clip of each task's gradient before the combination;
* DDP: the forward and both backward passes run under ``self.no_sync()`` (DDP cannot all-reduce two
  backward passes of one forward); the engine's :class:`AllReduceTasks` then averages each task's
  gradient, and every other parameter's ``.grad``, over the ranks before combining, so every rank
  takes the same step. Evaluation sums the two losses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

try:
    import speechbrain as sb
except ImportError as err:  # the framework is optional: say what to install
    raise ImportError(
        "gradremedy.integrations.speechbrain needs speechbrain: pip install speechbrain "
        "(or run scripts/setup-integrations.sh)"
    ) from err

from gradremedy.surgery import AllReduceTasks, ClipPerTask, GradientEngine, build_method

__all__ = ["TwoTaskBrainMixin", "split_losses"]


def split_losses(objectives: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(main, aux)`` from what ``compute_objectives`` returned: a pair or a dict with main and aux."""
    if isinstance(objectives, dict):
        missing = sorted({"main", "aux"} - set(objectives))
        if missing:
            raise ValueError(
                f"compute_objectives returned a dict without {', '.join(missing)} "
                f"(keys: {', '.join(map(str, objectives))})"
            )
        return objectives["main"], objectives["aux"]
    if isinstance(objectives, (tuple, list)) and len(objectives) == 2:
        return objectives[0], objectives[1]
    raise ValueError(
        "compute_objectives must return (main_loss, aux_loss) or {'main': ..., 'aux': ...} with "
        f"TwoTaskBrainMixin, got {type(objectives).__name__}"
    )


class TwoTaskBrainMixin:
    """Put first in the bases of a ``speechbrain.Brain`` subclass; see the module docstring."""

    gradient_method: str = "gr"
    gradient_method_settings: dict[str, Any] | None = None
    gradient_accumulation: str = "accumulated"
    clip_per_task: float | None = None

    gradient_engine: GradientEngine | None = None
    gradient_diagnostics: dict[str, torch.Tensor] = {}

    def shared_parameters(self) -> Iterable[nn.Parameter]:
        raise NotImplementedError(f"{type(self).__name__} must define shared_parameters()")

    def _setting(self, name: str) -> Any:
        hparams = getattr(self, "hparams", None)
        if hparams is not None and hasattr(hparams, name):
            return getattr(hparams, name)
        return getattr(self, name)

    def configure_gradient_engine(self) -> GradientEngine:
        """The engine, built once the modules are on their device and wrapped; override to change."""
        settings = self._setting("gradient_method_settings") or {}
        method = build_method(self._setting("gradient_method"), **settings)
        steps: list[Any] = [AllReduceTasks()]
        clip = self._setting("clip_per_task")
        if clip is not None:
            steps.append(ClipPerTask(clip, scaler=self.scaler))
        return GradientEngine(
            self.modules.parameters(),
            self.shared_parameters(),
            method,
            self._setting("gradient_accumulation"),
            before_combination=steps,
        )

    def on_fit_start(self) -> None:
        super().on_fit_start()  # compile, wrap for DDP, build the optimizers, recover
        self.gradient_engine = self.configure_gradient_engine()

    def fit_batch(self, batch: Any) -> torch.Tensor:
        """SpeechBrain's ``fit_batch`` with the two task gradients kept apart and combined by the engine."""
        assert self.gradient_engine is not None, "the engine is built in on_fit_start"
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)

        with self.no_sync(True):  # always: the engine's AllReduceTasks reduces at the step
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                main_loss, aux_loss = split_losses(self.compute_objectives(outputs, batch, sb.Stage.TRAIN))
            factor = self.grad_accumulation_factor
            loss = main_loss if aux_loss is None else main_loss + aux_loss
            self.check_loss_isfinite(self.scaler.scale(loss / factor))

            def backward(task_loss: torch.Tensor, retain_graph: bool) -> None:
                self.scaler.scale(task_loss).backward(retain_graph=retain_graph)

            self.gradient_engine.backward(
                main_loss / factor, None if aux_loss is None else aux_loss / factor, backward=backward
            )

        if should_step:
            self.gradient_diagnostics = self.gradient_engine.combine()
            self.optimizers_step()

        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    @torch.no_grad()
    def evaluate_batch(self, batch: Any, stage: sb.Stage) -> torch.Tensor:
        """The sum of the two losses (what a single-loss Brain would report)."""
        with self.evaluation_ctx:
            outputs = self.compute_forward(batch, stage=stage)
            main_loss, aux_loss = split_losses(self.compute_objectives(outputs, batch, stage=stage))
        loss = main_loss if aux_loss is None else main_loss + aux_loss
        return loss.detach().cpu()
