"""One training step as the loop runs it: the model's losses on a micro-batch, the engine's two backward
passes, and (every ``train.accum_grad`` micro-batches) the combination, the clip and the optimizer step.
The gradient engine is the library's, used through its public API only.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from gradremedy.train.distributed import loss_weights
from gradremedy.train.setup import TrainingRun


def model_losses(model: torch.nn.Module, batch: Any, **options: Any) -> dict[str, torch.Tensor]:
    """The model's named losses on a batch (the one place the model is called with a batch); ``options``
    go to the model's forward (``return_ctc_log_probs``)."""
    return model(
        batch.noisy,
        batch.noisy_lens,
        batch.tokens,
        batch.token_lens,
        clean=batch.clean,
        has_clean=batch.has_clean,
        has_text=batch.has_text,
        **options,
    )


def autocast_context(run: TrainingRun) -> AbstractContextManager:
    """Autocast to the run's ``autocast_dtype`` on its device; a no-op context in float32."""
    if run.autocast_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=run.device.type, dtype=run.autocast_dtype)


def forward_backward(run: TrainingRun, batch: Any, accum: int) -> None:
    """One micro-batch: named losses, then the engine's two backward passes (scaled by 1/accum).

    The task gradients are asked for only on the steps that ``train.log_every`` logs: the plain sum takes
    one backward pass on the others (the engine's ``task_gradients``), and its logged gradient
    diagnostics are those of the logged step rather than a mean over the row's steps.
    """
    with autocast_context(run):
        losses = model_losses(run.model, batch)
    # This rank's share of the global batch (1.0 for a single process); see train/distributed.py.
    main_weight, aux_weight = loss_weights(batch.has_text, batch.has_clean, run.world_size)
    run.engine.backward(
        losses["main"] * main_weight / accum,
        losses["aux"] * aux_weight / accum,
        backward=lambda loss, retain_graph: run.scaler.scale(loss).backward(retain_graph=retain_graph),
        task_gradients=(run.progress.step + 1) % run.cfg.train.log_every == 0,
    )
    run.accumulator.add_all({name: losses[name] for name in ("loss", "se", "ctc", "att", "acc")})


def optimizer_step(run: TrainingRun) -> dict[str, torch.Tensor]:
    """Combine the task gradients, clip, and step, skipping (and counting) a non-finite step.

    Returns the engine's diagnostics of this step (0-d tensors).
    """
    cfg, progress = run.cfg, run.progress
    diagnostics = run.engine.combine()
    run.scaler.unscale_(run.optimizer)
    global_clip = cfg.train.clip_mode == "global" and cfg.train.grad_clip > 0
    max_norm = cfg.train.grad_clip if global_clip else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm, foreach=True)
    finite = bool(torch.isfinite(grad_norm))  # the one host sync of a step
    if finite:
        run.scaler.step(run.optimizer)
        run.accumulator.add("grad_norm", grad_norm)
        if global_clip:
            run.accumulator.add("clip_frac", (grad_norm > max_norm).float())
        elif "clipped" in diagnostics:  # ClipPerTask's
            run.accumulator.add("clip_frac", diagnostics["clipped"].float())
    else:
        progress.skipped_steps += 1
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    progress.step += 1
    if run.use_enhancer:  # asr_only has no shared parameters: nothing to compare
        run.accumulator.add_all({k: v for k, v in diagnostics.items() if k in DIAGNOSTIC_COLUMNS})
    return diagnostics


# The engine's diagnostics that metrics.csv logs, under the engine's own names (see surgery/diagnostics.py).
DIAGNOSTIC_COLUMNS = (
    "aux_norm",
    "main_norm",
    "conflict_rate",
    "cos_mean",
    "norm_ratio_median",
    "rescale_rate",
)
