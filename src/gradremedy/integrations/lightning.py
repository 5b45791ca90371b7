"""Gradient Remedy (and every registry method) in PyTorch Lightning, through manual optimisation.

Lightning's automatic optimisation runs one backward pass on one loss, so the two task gradients never
exist apart. Manual optimisation is the way in: the engine runs its two backward passes through
``LightningModule.manual_backward``, so Lightning's precision plugin (loss scaling) and strategy hooks
see every backward. Two ways to use it:

* subclass :class:`TwoTaskModule`, write ``task_losses(batch)`` (returns ``(main_loss, aux_loss)``)
  and ``shared_parameters()``; it does the whole training step (accumulation, per-task clipping,
  optimizer and scheduler steps);
* or, in your own manual ``training_step``, call :func:`engine_backward` instead of
  ``manual_backward`` and then ``engine.combine()`` before ``optimizer.step()``.

Distributed (the DDP strategy): ``DistributedDataParallel`` all-reduces during a backward pass, and
two backward passes through one forward are not what it expects (it refuses, or averages each
task's gradient into the shared ``.grad`` before the engine can keep them apart). So both backward
passes run under the strategy's ``block_backward_sync()`` (DDP's ``no_sync``) and the engine's
:class:`~gradremedy.surgery.AllReduceTasks` step averages each task's gradient over the ranks, and the
ordinary ``.grad`` of every other parameter, before the combination: every rank combines the same
gradients and takes the same step. Keep ``AllReduceTasks`` in ``before_combination`` under DDP.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

try:
    import lightning.pytorch as pl
except ImportError as err:  # the framework is optional: say what to install
    raise ImportError(
        "gradremedy.integrations.lightning needs lightning: pip install lightning "
        "(or run scripts/setup-integrations.sh)"
    ) from err

from gradremedy.surgery import AllReduceTasks, ClipPerTask, GradientEngine, ScaleTasks, build_method

__all__ = ["TwoTaskModule", "engine_backward", "backward_sync_blocked", "loss_scaler"]


@contextlib.contextmanager
def backward_sync_blocked(module: pl.LightningModule) -> Iterator[None]:
    """No DDP gradient all-reduce inside (the strategy's ``block_backward_sync``, if it has one)."""
    strategy = module.trainer.strategy
    block = getattr(strategy, "block_backward_sync", None)
    with block() if block is not None else contextlib.nullcontext():
        yield


def engine_backward(
    module: pl.LightningModule,
    engine: GradientEngine,
    main_loss: torch.Tensor,
    aux_loss: torch.Tensor | None,
    **backward_kwargs: Any,
) -> None:
    """``engine.backward`` with both passes through ``module.manual_backward`` and DDP sync blocked.

    ``backward_kwargs`` go to ``manual_backward`` (and on to ``Tensor.backward``).
    """

    def backward(loss: torch.Tensor, retain_graph: bool) -> None:
        module.manual_backward(loss, retain_graph=retain_graph, **backward_kwargs)

    with backward_sync_blocked(module):
        engine.backward(main_loss, aux_loss, backward=backward)


def loss_scaler(module: pl.LightningModule) -> Any:
    """The ``GradScaler`` of the trainer's precision plugin (``"16-mixed"``), or ``None``."""
    return getattr(module.trainer.precision_plugin, "scaler", None)


class TwoTaskModule(pl.LightningModule):
    """A LightningModule trained on a main and an auxiliary loss combined by a gradient method.

    Subclasses define ``task_losses(batch, batch_idx) -> (main_loss, aux_loss)``, ``shared_parameters()``
    (where both losses meet, e.g. a speech-enhancement front end) and ``configure_optimizers`` (one
    optimizer; schedulers returned with it are stepped after every optimizer step).

    ``method`` and ``method_settings`` go to ``build_method``; ``accumulate_grad_batches`` is counted
    here (Lightning's own is for automatic optimisation only); ``clip_per_task`` clips each task's
    gradient before the combination (:class:`ClipPerTask`, aware of the precision plugin's scaler);
    ``task_weights`` = ``(main, aux)`` scales the tasks on the shared parameters (:class:`ScaleTasks`).
    The losses of each batch are divided by ``accumulate_grad_batches``, as Lightning does.
    """

    def __init__(
        self,
        method: str = "gr",
        method_settings: dict[str, Any] | None = None,
        *,
        accumulation: str = "accumulated",
        accumulate_grad_batches: int = 1,
        clip_per_task: float | None = None,
        task_weights: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if accumulate_grad_batches < 1:
            raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        self.automatic_optimization = False
        self.gradient_method = build_method(method, **(method_settings or {}))
        self.accumulation = accumulation
        self.accumulate_grad_batches = accumulate_grad_batches
        self.clip_per_task = clip_per_task
        self.task_weights = task_weights
        self.engine: GradientEngine | None = None
        self.last_diagnostics: dict[str, torch.Tensor] = {}

    # ---- to be written by the subclass -------------------------------------------------------------

    def task_losses(self, batch: Any, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError(f"{type(self).__name__} must define task_losses(batch, batch_idx)")

    def shared_parameters(self) -> Iterable[nn.Parameter]:
        raise NotImplementedError(f"{type(self).__name__} must define shared_parameters()")

    # ---- the engine --------------------------------------------------------------------------------

    def configure_gradient_engine(self) -> GradientEngine:
        """The engine (built at fit start, once the strategy has placed the model); override to change."""
        steps: list[Any] = []
        if self.task_weights is not None:
            steps.append(ScaleTasks(main=self.task_weights[0], aux=self.task_weights[1]))
        steps.append(AllReduceTasks())
        if self.clip_per_task is not None:
            steps.append(ClipPerTask(self.clip_per_task, scaler=loss_scaler(self)))
        return GradientEngine(
            self.parameters(),
            self.shared_parameters(),
            self.gradient_method,
            self.accumulation,
            before_combination=steps,
        )

    def on_fit_start(self) -> None:
        self.engine = self.configure_gradient_engine()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        assert self.engine is not None, "the engine is built in on_fit_start"
        main_loss, aux_loss = self.task_losses(batch, batch_idx)
        n = self.accumulate_grad_batches
        engine_backward(
            self,
            self.engine,
            main_loss / n if n > 1 else main_loss,
            None if aux_loss is None else (aux_loss / n if n > 1 else aux_loss),
        )
        if (batch_idx + 1) % n == 0 or self.trainer.is_last_batch:  # as Lightning: step at epoch end
            self.last_diagnostics = self.engine.combine()
            optimizer = self.optimizers()
            optimizer.step()
            optimizer.zero_grad()
            schedulers = self.lr_schedulers()
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                if scheduler is not None:
                    scheduler.step()
        total = main_loss.detach() + (0 if aux_loss is None else aux_loss.detach())
        self.log("train/main_loss", main_loss.detach(), prog_bar=True)
        if aux_loss is not None:
            self.log("train/aux_loss", aux_loss.detach())
        return total
