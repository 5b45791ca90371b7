"""Gradient Remedy (and every registry method) in ESPnet's joint enhancement + ASR recipes (``enh_asr``).

Upstream ESPnet trains ``ESPnetEnhS2TModel`` with one backward pass of ``loss_enh + loss_s2t``; the two
losses exist apart only detached, in ``stats``. Three small pieces change that, with no fork:

* :class:`EnhS2TTwoLossModel`: ``ESPnetEnhS2TModel`` whose ``forward`` also returns the two losses,
  ``loss_main`` (ASR) and ``loss_aux`` (SE), attached to the graph, beside ESPnet's usual ``loss`` (their
  sum), ``stats`` and ``weight``. Same submodules, same parameter names, so checkpoints stay loadable by
  the stock task and ESPnet's inference.
* :class:`GradientMethodTrainer`: a ``Trainer`` whose ``train_one_epoch`` runs both backward passes
  through a :class:`GradientEngine` (the enhancement model's parameters are the shared ones) and
  combines them before ESPnet's usual ``grad_clip``, optimizer and scheduler steps. It keeps
  ``accum_grad`` (each task summed over the micro-batches, combined once per step), AMP (the backward
  passes go through the ``GradScaler``), the batch weighting across GPUs, and distributed training:
  the forward and both backward passes run under DDP's ``no_sync`` and the engine's
  :class:`AllReduceTasks` averages each task's gradient over the ranks before the combination (DDP
  alone would average only the sum, and cannot all-reduce two backward passes of one forward).
* :class:`GradientMethodEnhS2TTask`: ``EnhS2TTask`` with that trainer and model. ESPnet's command line
  and YAML then take ``gradient_method: gr`` (any name of gradremedy's registry) and
  ``gradient_method_conf: {K: 5.0, max_stretch: 1000.0}``, plus ``gradient_accumulation`` and
  ``gradient_clip_per_task``.

Run it as ``python -m gradremedy.integrations.espnet --config conf/train.yaml ...`` wherever an ESPnet
recipe runs ``python -m espnet2.bin.enh_s2t_train`` (in ``enh_asr.sh``: ``--python`` stays, replace the
train module; see docs/integrations/espnet.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
import weakref
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch

try:
    from espnet2.enh.espnet_enh_s2t_model import ESPnetEnhS2TModel
    from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
    from espnet2.tasks.enh_s2t import EnhS2TTask
    from espnet2.torch_utils.add_gradient_noise import add_gradient_noise
    from espnet2.torch_utils.device_funcs import force_gatherable, to_device
    from espnet2.torch_utils.recursive_op import recursive_average
    from espnet2.train.trainer import Trainer, TrainerOptions, autocast, autocast_args
    from espnet2.utils.build_dataclass import build_dataclass
    from espnet2.utils.nested_dict_action import NestedDictAction
    from espnet2.utils.types import float_or_none
except ImportError as err:  # the framework is optional: say what to install
    raise ImportError(
        "gradremedy.integrations.espnet needs espnet: run scripts/setup-integrations.sh "
        "(see docs/integrations/espnet.md for a manual install)"
    ) from err

from gradremedy.surgery import (
    ACCUMULATION_POLICIES,
    AllReduceTasks,
    ClipPerTask,
    GradientEngine,
    build_method,
    method_names,
)

__all__ = [
    "EnhS2TTwoLossModel",
    "GradientMethodEnhS2TTask",
    "GradientMethodTrainer",
    "GradientMethodTrainerOptions",
    "main",
]


class EnhS2TTwoLossModel(ESPnetEnhS2TModel):
    """``ESPnetEnhS2TModel`` whose forward returns ESPnet's dict form with the two losses apart.

    Returns ``{"loss", "stats", "weight", "loss_main", "loss_aux"}``: ``loss`` is ESPnet's own total
    (so the stock trainer and validation still work), ``loss_main`` the ASR (s2t) loss and ``loss_aux``
    the enhancement loss, ``None`` where ESPnet computes none (clean or real data, ``calc_enh_loss:
    false``). ``loss_main = loss - loss_aux``: its gradient is exactly the ASR loss's (the enhancement
    loss's two paths cancel to an exact zero at the loss node).
    """

    @classmethod
    def from_model(cls, model: ESPnetEnhS2TModel) -> EnhS2TTwoLossModel:
        """The same submodules (and so the same parameters and their names) in this class."""
        return cls(
            enh_model=model.enh_model,
            s2t_model=model.s2t_model,
            calc_enh_loss=model.calc_enh_loss,
            bypass_enh_prob=model.bypass_enh_prob,
        )

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor | None = None, **kwargs: Any):
        captured: list[torch.Tensor] = []
        forward_loss = self.enh_model.forward_loss

        def recording_forward_loss(*args: Any, **kw: Any) -> Any:
            out = forward_loss(*args, **kw)
            captured.append(out[0][0])  # what ESPnetEnhS2TModel adds to the s2t loss
            return out

        self.enh_model.forward_loss = recording_forward_loss  # this call only: removed below
        try:
            loss, stats, weight = super().forward(speech, speech_lengths, **kwargs)
        finally:
            del self.enh_model.forward_loss
        loss_aux = captured[-1] if captured and stats.get("loss_enh") is not None else None
        loss_main = loss if loss_aux is None else loss - loss_aux
        if loss_aux is not None:
            loss_aux = force_gatherable(loss_aux, loss.device)  # shaped like ``loss`` (1-d, for DataParallel)
        return {"loss": loss, "stats": stats, "weight": weight, "loss_main": loss_main, "loss_aux": loss_aux}


@dataclasses.dataclass
class GradientMethodTrainerOptions(TrainerOptions):
    gradient_method: str
    gradient_method_conf: dict
    gradient_accumulation: str
    gradient_clip_per_task: float | None


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DataParallel / DistributedDataParallel."""
    return getattr(model, "module", model)


class GradientMethodTrainer(Trainer):
    """ESPnet's ``Trainer`` with the two task gradients combined by a gradremedy method at every step."""

    # One engine per model for the whole run (a method may keep state across steps, e.g. GradVac).
    _engines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> GradientMethodTrainerOptions:
        return build_dataclass(GradientMethodTrainerOptions, args)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("Gradient method (gradremedy)")
        group.add_argument(
            "--gradient_method",
            default="gr",
            choices=list(method_names()),
            help="How the enhancement (aux) and ASR (main) gradients of the enhancement model are combined",
        )
        group.add_argument(
            "--gradient_method_conf",
            action=NestedDictAction,
            default=dict(),
            help="The method's settings, e.g. {K: 5.0, max_stretch: 1000.0} for gr",
        )
        group.add_argument(
            "--gradient_accumulation",
            default="accumulated",
            choices=list(ACCUMULATION_POLICIES),
            help="accumulated: combine once per step the task gradients summed over accum_grad batches; "
            "per_micro: combine every batch and sum",
        )
        group.add_argument(
            "--gradient_clip_per_task",
            type=float_or_none,
            default=None,
            help="If set, clip each task's gradient to this norm before the combination "
            "(ESPnet's grad_clip still clips the combined gradient)",
        )

    @classmethod
    def build_engine(
        cls, model: torch.nn.Module, options: GradientMethodTrainerOptions, scaler: Any
    ) -> GradientEngine:
        inner = _unwrap(model)
        if not isinstance(inner, EnhS2TTwoLossModel):
            raise TypeError(
                f"GradientMethodTrainer needs an EnhS2TTwoLossModel (use GradientMethodEnhS2TTask), "
                f"got {type(inner).__name__}"
            )
        method = build_method(options.gradient_method, **(options.gradient_method_conf or {}))
        steps: list[Any] = [AllReduceTasks()]
        if options.gradient_clip_per_task is not None:
            steps.append(ClipPerTask(options.gradient_clip_per_task, scaler=scaler))
        logging.info(f"gradremedy: {method!r}, {options.gradient_accumulation}, before combination {steps}")
        return GradientEngine(
            inner.parameters(),
            inner.enh_model.parameters(),
            method,
            options.gradient_accumulation,
            before_combination=steps,
        )

    @classmethod
    def engine_for(cls, model: torch.nn.Module, options: Any, scaler: Any) -> GradientEngine:
        inner = _unwrap(model)
        if inner not in cls._engines:
            cls._engines[inner] = cls.build_engine(model, options, scaler)
        return cls._engines[inner]

    @classmethod
    def train_one_epoch(
        cls,
        model: torch.nn.Module,
        iterator: Iterable[tuple[list[str], dict[str, torch.Tensor]]],
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[Any],
        scaler: Any,
        reporter: Any,
        summary_writer: Any,
        options: GradientMethodTrainerOptions,
        distributed_option: Any,
    ) -> bool:
        """One epoch as ESPnet's ``Trainer.train_one_epoch``, the backward pass split by task.

        Returns True if every step was skipped (non-finite gradient norm), as ESPnet's does. Kept as one
        function because it follows ESPnet's own step for step, so the two can be read side by side.
        """
        engine = cls.engine_for(model, options, scaler)
        accum_grad, grad_clip = options.accum_grad, options.grad_clip
        distributed = distributed_option.distributed
        device = "cuda" if options.ngpu > 0 else "cpu"
        log_interval = options.log_interval
        if log_interval is None:
            try:
                log_interval = max(len(iterator) // 20, 10)
            except TypeError:
                log_interval = 100

        def backward(loss: torch.Tensor, retain_graph: bool) -> None:
            (scaler.scale(loss) if scaler is not None else loss).backward(retain_graph=retain_graph)

        # DDP must not all-reduce inside the backward passes: AllReduceTasks does it, per task.
        ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        no_sync = model.no_sync if ddp else nullcontext

        model.train()
        all_steps_are_invalid = True
        iterator_stop = torch.tensor(0).to(device)  # ranks may run out of batches at different times
        start_time = time.perf_counter()
        for iiter, (utt_id, batch) in enumerate(reporter.measure_iter_time(iterator, "iter_time"), 1):
            assert isinstance(batch, dict), type(batch)
            if distributed:
                torch.distributed.all_reduce(iterator_stop, torch.distributed.ReduceOp.SUM)
                if iterator_stop > 0:
                    break
            batch["utt_id"] = utt_id
            batch = to_device(batch, device)
            if options.no_forward_run:
                all_steps_are_invalid = False
                continue

            with no_sync():
                with autocast(scaler is not None, **autocast_args):
                    with reporter.measure_time("forward_time"):
                        retval = model(**batch)
                    main_loss, aux_loss = retval["loss_main"], retval["loss_aux"]
                    stats = {k: v for k, v in retval["stats"].items() if v is not None}
                    weight = retval["weight"]
                    if options.ngpu > 1 or distributed:
                        # Each task weighted by this rank's share of the batch, as ESPnet weights the sum.
                        main_loss = (main_loss * weight.type(main_loss.dtype)).sum()
                        if aux_loss is not None:
                            aux_loss = (aux_loss * weight.type(aux_loss.dtype)).sum()
                        stats, weight = recursive_average(stats, weight, distributed)
                        main_loss = main_loss / weight
                        aux_loss = None if aux_loss is None else aux_loss / weight
                    if distributed:
                        # AllReduceTasks averages over the ranks, as DDP would: undo the average of weights.
                        world = torch.distributed.get_world_size()
                        main_loss = main_loss * world
                        aux_loss = None if aux_loss is None else aux_loss * world
                    main_loss = (main_loss / accum_grad).sum()
                    aux_loss = None if aux_loss is None else (aux_loss / accum_grad).sum()
                reporter.register(stats, weight)
                with reporter.measure_time("backward_time"):
                    engine.backward(main_loss, aux_loss, backward=backward)
            del retval, main_loss, aux_loss

            if iiter % accum_grad == 0:
                diagnostics = engine.combine()
                if cls._step(model, optimizers, schedulers, scaler, reporter, options, grad_clip):
                    all_steps_are_invalid = False
                reporter.register({f"gr_{k}": v for k, v in diagnostics.items() if v.dim() == 0})
                for optimizer in optimizers:
                    optimizer.zero_grad()
                reporter.register(
                    dict(
                        {
                            f"optim{i}_lr{j}": pg["lr"]
                            for i, optimizer in enumerate(optimizers)
                            for j, pg in enumerate(optimizer.param_groups)
                            if "lr" in pg
                        },
                        train_time=time.perf_counter() - start_time,
                    )
                )
                start_time = time.perf_counter()

            reporter.next()
            if iiter % log_interval == 0:
                logging.info(reporter.log_message(-log_interval))
                if summary_writer is not None:
                    reporter.tensorboard_add_scalar(summary_writer, -log_interval)
                if options.use_wandb:
                    reporter.wandb_log()
        else:
            if distributed:
                iterator_stop.fill_(1)
                torch.distributed.all_reduce(iterator_stop, torch.distributed.ReduceOp.SUM)
        return all_steps_are_invalid

    @classmethod
    def _step(
        cls,
        model: torch.nn.Module,
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[Any],
        scaler: Any,
        reporter: Any,
        options: GradientMethodTrainerOptions,
        grad_clip: float,
    ) -> bool:
        """Unscale, clip the combined gradient, step: ESPnet's step. False if skipped (non-finite norm)."""
        if scaler is not None:
            for optimizer in optimizers:
                scaler.unscale_(optimizer)
        if options.grad_noise:
            add_gradient_noise(model, reporter.get_total_count(), duration=100, eta=1.0, scale_factor=0.55)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), max_norm=grad_clip, norm_type=options.grad_clip_type
        )
        if not isinstance(grad_norm, torch.Tensor):
            grad_norm = torch.tensor(grad_norm)
        if not torch.isfinite(grad_norm):
            logging.warning(f"The grad norm is {grad_norm}. Skipping updating the model.")
            if scaler is not None:  # unscale_() was called: the scaler must see a step and an update
                for optimizer in optimizers:
                    scaler.step(optimizer)
                    scaler.update()
            return False
        reporter.register(
            {
                "grad_norm": grad_norm,
                "clip": torch.where(
                    grad_norm > grad_clip, grad_norm.new_tensor(100), grad_norm.new_tensor(0)
                ),
                "loss_scale": scaler.get_scale() if scaler else 1.0,
            }
        )
        with reporter.measure_time("optim_step_time"):
            for optimizer, scheduler in zip(optimizers, schedulers):
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                if isinstance(scheduler, AbsBatchStepScheduler):
                    scheduler.step()
        return True


class GradientMethodEnhS2TTask(EnhS2TTask):
    """``EnhS2TTask`` trained by :class:`GradientMethodTrainer` on :class:`EnhS2TTwoLossModel`."""

    trainer = GradientMethodTrainer

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> EnhS2TTwoLossModel:
        return EnhS2TTwoLossModel.from_model(super().build_model(args))


def main(cmd: Sequence[str] | None = None) -> None:
    """ESPnet's ``enh_s2t_train`` entry point with the gradient method options.

    Under an external launcher (``torchrun``) ESPnet leaves its process group open; it is closed here,
    so no rank is torn down at exit with the group's threads still running.
    """
    try:
        GradientMethodEnhS2TTask.main(cmd=cmd)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
