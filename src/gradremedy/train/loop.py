"""``gradremedy train``: the training loop, read top to bottom.

:func:`train` is the table of contents: resolve the config, prepare (or resume) the experiment directory,
check the data, build tokenizer, model, optimizer, schedule and gradient engine (the set-up:
:mod:`gradremedy.train.setup`), then run epochs of micro-batches (the step: :mod:`gradremedy.train.step`).
This module holds the loop itself, validation, checkpoints and the run record. A batch travels:
:func:`model_losses` -> named losses ->
``engine.backward(main, aux, backward=<the GradScaler's>)`` -> (every ``train.accum_grad`` micro-batches)
``engine.combine()`` -> clip -> optimizer step -> ``optimizer.zero_grad()`` -> logging -> checkpoint.
The engine is the library's (``gradremedy.surgery``), used exactly as any user would: its steps before
the combination (all-reduce over ranks, per-task clipping) are the library's objects, composed in
:func:`build_engine`. The loop never touches a gradient tensor itself except for the global norm clip.

Exact resume: ``checkpoints/last.pt`` holds model, optimizer, schedule, scaler, engine state, every RNG
state, the logging accumulators and the loader position (epoch, micro-batch index within the epoch).
The batch order of an epoch depends only on (seed, epoch), so a resumed run skips the batches it had
already consumed and continues bit-exactly on CPU.

Distributed (``torchrun``): :mod:`gradremedy.train.distributed` joins the process group; the batch size is
the global one, each rank weights its losses by its share, and the engine's ``AllReduceTasks(op="sum")``
sums each task's gradient over the ranks before the combination. Only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gradremedy.atomic import atomic_write_text
from gradremedy.config import Config, config_to_dict
from gradremedy.provenance import git_commit
from gradremedy.train.checkpoint import (
    CHECKPOINT_DIR,
    LAST,
    capture_rng_state,
    restore_rng_state,
    save_checkpoint,
    write_best_and_average,
)
from gradremedy.train.distributed import (
    average_over_ranks,
    barrier,
    gather_over_ranks,
    gather_rng_states,
    main_process_first,
    rng_state_for_rank,
    sum_over_ranks,
)
from gradremedy.train.distributed import setup as setup_distributed
from gradremedy.train.logging import TrainingLogger
from gradremedy.train.setup import (
    EXP_ENTRIES,
    EXTENDABLE_KEYS,
    DataCheck,
    Progress,
    TrainingData,
    TrainingRun,
    build_engine,
    build_model,
    build_run,
    config_differences,
    config_mismatch,
    load_data,
    make_deterministic,
    prepare_experiment_dir,
    prepare_tokenizer,
    resolve_config,
    resolve_device,
)
from gradremedy.train.step import DIAGNOSTIC_COLUMNS, forward_backward, model_losses, optimizer_step

# The training entry points in one place: the set-up and step functions are importable from here too.
__all__ = [
    "DIAGNOSTIC_COLUMNS",
    "EXP_ENTRIES",
    "EXTENDABLE_KEYS",
    "Progress",
    "TrainingData",
    "TrainingRun",
    "build_engine",
    "build_model",
    "build_run",
    "config_differences",
    "config_mismatch",
    "forward_backward",
    "load_data",
    "make_deterministic",
    "model_losses",
    "optimizer_step",
    "prepare_experiment_dir",
    "prepare_tokenizer",
    "resolve_config",
    "resolve_device",
    "train",
]


def train(
    *,
    config_path: str | os.PathLike | None,
    data_dir: str | os.PathLike,
    exp_dir: str | os.PathLike,
    method: str | None = None,
    seed: int | None = None,
    max_steps: int | None = None,
    device: str = "cpu",
    overrides: list[str] | None = None,
    overwrite: bool = False,
    skip_bad: bool = False,
    data_check: DataCheck | None = None,
) -> dict[str, Any]:
    """Train (or resume, or report complete) one experiment; returns the contents of ``run.json``.

    ``data_check``: the outcome of a data check already made of these data directories with the same
    data settings (:func:`gradremedy.train.setup.check_training_data`, made once by a comparison for
    all its runs); the run then leaves out the utterances it found bad instead of checking again.
    """
    wall_start = time.monotonic()
    cfg = resolve_config(
        config_path, overrides, method=method, seed=seed, max_steps=max_steps, skip_bad=skip_bad
    )
    context = setup_distributed(resolve_device(device))  # torchrun's ranks; cuda:LOCAL_RANK on CUDA
    rank, world_size, device_ = context.rank, context.world_size, context.device
    exp = Path(exp_dir)
    with main_process_first(context):  # rank 0 prepares the directory, the others then read it
        resume = prepare_experiment_dir(exp, cfg, overwrite=overwrite, write=rank == 0)
    if resume is not None and resume["progress"]["finished"] and training_done(resume["progress"], cfg):
        step = resume["progress"]["step"]
        print(f"{exp}: already complete (step {step}); nothing to do")
        return _read_run_json(exp)

    make_deterministic(cfg.train.seed, device_, cfg.train.num_threads)
    data = load_data(Path(data_dir), cfg, data_check)
    with main_process_first(context):
        tokenizer = prepare_tokenizer(exp, data.train_texts, cfg, write=rank == 0)
    run = build_run(cfg, tokenizer, device_, rank=rank, world_size=world_size)
    if resume is not None:
        restore_run(run, resume)
        print(f"{exp}: resuming at step {run.progress.step} (epoch {run.progress.epoch + 1})")
    logger = TrainingLogger(exp / "logs", resume_step=run.progress.step, enabled=rank == 0)
    try:
        final_valid = run_training(run, data, exp, logger)
    finally:
        logger.close()
    summary = write_run_json(exp, run, data, final_valid, device_, time.monotonic() - wall_start, rank == 0)
    barrier(world_size)
    if rank == 0:
        print(_summary_line(exp, summary))
    return summary


# ----------------------------------------------------------------------------------------------------
# The loop


def training_done(progress: dict[str, Any] | Progress, cfg: Config) -> bool:
    p = asdict(progress) if isinstance(progress, Progress) else progress
    return p["epoch"] >= cfg.train.epochs or (cfg.train.max_steps > 0 and p["step"] >= cfg.train.max_steps)


def run_training(run: TrainingRun, data: TrainingData, exp: Path, logger: TrainingLogger) -> dict[str, float]:
    """Epochs until ``train.epochs`` or ``train.max_steps``; returns the last validation's metrics."""
    cfg, progress = run.cfg, run.progress
    train_loader, sampler = make_loader_for(data.train_dir, run, train=True)
    valid_loader, _ = make_loader_for(data.valid_dir, run, train=False)
    data.skipped_utterances += sampler.dropped_long
    final_valid: dict[str, float] = {}
    total_steps = planned_steps(len(sampler.global_batches(0)), cfg)
    bar = tqdm(total=total_steps, initial=min(progress.step, total_steps), unit="step", disable=run.rank != 0)
    while not training_done(progress, cfg):
        epoch_started = time.monotonic()
        sampler.set_epoch(progress.epoch, start_batch=progress.batch_in_epoch)
        completed = run_epoch(run, train_loader, len(sampler.global_batches()), exp, logger, bar)
        progress.train_seconds += time.monotonic() - epoch_started
        if completed:
            progress.epoch += 1
            progress.batch_in_epoch = 0
        final_valid = validate(run, valid_loader, data.valid_refs)
        logger.log_valid({"step": progress.step, "epoch": progress.epoch, **final_valid})
        bar.write(_valid_line(progress, final_valid))
        keep_snapshot(run, exp, final_valid)
        progress.finished = training_done(progress, cfg)
        save_last(run, exp)
        write_run_json(exp, run, data, final_valid, run.device, None, run.rank == 0)
    bar.close()
    if not final_valid:  # nothing left to train (max_steps lowered below the resumed step)
        final_valid = validate(run, valid_loader, data.valid_refs)
    return final_valid


def run_epoch(
    run: TrainingRun, loader: Any, num_batches: int, exp: Path, logger: TrainingLogger, bar: tqdm
) -> bool:
    """The rest of an epoch, from micro-batch ``progress.batch_in_epoch``; False if stopped by max_steps.

    An optimizer step takes ``train.accum_grad`` micro-batches (fewer for the last one of an epoch).
    """
    cfg, progress = run.cfg, run.progress
    accum = cfg.train.accum_grad
    run.model.train()
    micro = 0
    for batch in rng_neutral_iter(loader):
        forward_backward(run, batch.to(run.device), accum)
        micro += 1
        progress.batch_in_epoch += 1
        if micro < accum and progress.batch_in_epoch < num_batches:
            continue
        micro = 0
        optimizer_step(run)
        bar.update(1)
        if progress.step % cfg.train.log_every == 0:
            log_step(run, logger, bar)
        if cfg.train.checkpoint_every > 0 and progress.step % cfg.train.checkpoint_every == 0:
            save_last(run, exp)
        if cfg.train.max_steps > 0 and progress.step >= cfg.train.max_steps:
            return progress.batch_in_epoch >= num_batches
    return True


def rng_neutral_iter(loader: Any) -> Iterator[Any]:
    """The loader's batches, fetched without any effect on torch's global generator.

    A DataLoader draws a base seed from the global generator when its iterator starts (at the first
    batch). A run resumed mid-epoch starts its iterator after restoring the generators, an uninterrupted
    run did so at the start of the epoch: that one extra draw would change every later dropout mask.
    """
    iterator = iter(loader)
    while True:
        state = torch.get_rng_state()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        finally:
            torch.set_rng_state(state)
        yield batch


def log_step(run: TrainingRun, logger: TrainingLogger, bar: tqdm) -> None:
    """Fetch the on-device means since the last row and write one row."""
    average_over_ranks(run.accumulator.sums, run.world_size, run.device)
    means = run.accumulator.fetch()
    progress = run.progress
    row = {
        "step": progress.step,
        "epoch": progress.epoch + 1,
        "lr": run.scheduler.get_last_lr()[0],
        "skipped_steps": progress.skipped_steps,
        **means,
    }
    logger.log_train(row)
    bar.set_postfix(
        loss=f"{means.get('loss', float('nan')):.3g}", acc=f"{means.get('acc', float('nan')):.3f}"
    )


def validate(run: TrainingRun, loader: Any, refs: dict[str, str]) -> dict[str, float]:
    """Validation loss, token accuracy (weighted by tokens) and greedy CTC WER (jiwer, normalised text).

    Leaves every random generator as it found it: validating (or not, when a run stops and resumes
    mid-epoch) never changes what training does next.
    """
    rng = capture_rng_state()
    try:
        return _validate(run, loader, refs)
    finally:
        restore_rng_state(rng)


@torch.no_grad()
def _validate(run: TrainingRun, loader: Any, refs: dict[str, str]) -> dict[str, float]:
    from gradremedy.data.wer import word_error_rate
    from gradremedy.decode.greedy import greedy_ctc

    run.model.eval()
    totals = {"loss": 0.0, "se": 0.0, "ctc": 0.0, "att": 0.0}
    correct_weight = 0.0
    tokens = 0
    utts = 0
    hyps: list[str] = []
    targets: list[str] = []
    for batch in rng_neutral_iter(loader):
        batch = batch.to(run.device)
        losses = model_losses(run.model, batch, return_ctc_log_probs=True)
        size = len(batch.ids)
        for name in totals:
            totals[name] += float(losses[name]) * size
        batch_tokens = int((batch.token_lens + 1).sum())  # the tokens "acc" counts: each target ends in eos
        correct_weight += float(losses["acc"]) * batch_tokens
        tokens += batch_tokens
        utts += size
        for utt, ids in zip(batch.ids, greedy_ctc(losses["ctc_log_probs"], losses["enc_lens"])):
            hyps.append(run.tokenizer.decode(ids))
            targets.append(refs[utt])
    run.model.train()
    # Each rank validated its share: add up the sums, gather the transcripts (no-ops for one process).
    sums = sum_over_ranks([*totals.values(), correct_weight, tokens, utts], run.world_size, run.device)
    totals = dict(zip(totals, sums[: len(totals)]))
    correct_weight, tokens, utts = sums[-3], sums[-2], int(sums[-1])
    hyps, targets = gather_over_ranks(hyps, run.world_size), gather_over_ranks(targets, run.world_size)
    metrics = {name: value / max(utts, 1) for name, value in totals.items()}
    metrics["acc"] = correct_weight / max(tokens, 1)
    metrics["wer"] = word_error_rate(targets, hyps)
    metrics["utts"] = utts
    return metrics


def make_loader_for(data_dir: Any, run: TrainingRun, *, train: bool) -> tuple[Any, Any]:
    """Batches of ``data_dir`` and their sampler; the training order depends only on (seed, epoch)."""
    from gradremedy.data.batching import make_loader

    cfg = run.cfg
    return make_loader(
        data_dir,
        run.tokenizer,
        cfg.data,
        cfg.model.sample_rate,
        seed=cfg.train.seed,
        shuffle=train,
        train=train,
        rank=run.rank,
        world_size=run.world_size,
    )


def planned_steps(batches_per_epoch: int, cfg: Config) -> int:
    """Optimizer steps of the whole run (for the progress bar's ETA)."""
    total = math.ceil(batches_per_epoch / cfg.train.accum_grad) * cfg.train.epochs
    return min(total, cfg.train.max_steps) if cfg.train.max_steps > 0 else total


# ----------------------------------------------------------------------------------------------------
# Checkpoints and the run record


def model_payload(run: TrainingRun) -> dict[str, Any]:
    """What every checkpoint file carries: enough to rebuild and use the model."""
    return {
        "model": run.model.state_dict(),
        "config": config_to_dict(run.cfg),
        "vocab_size": run.tokenizer.vocab_size,
        "use_enhancer": run.use_enhancer,
        "step": run.progress.step,
        "epoch": run.progress.epoch,
    }


def save_last(run: TrainingRun, exp: Path) -> None:
    """``checkpoints/last.pt``: the model plus everything an exact resume needs (written by rank 0)."""
    rng = gather_rng_states(capture_rng_state(), run.world_size)  # every rank's random streams
    if run.rank == 0:
        payload = model_payload(run)
        payload.update(
            optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(),
            scaler=run.scaler.state_dict(),
            engine=run.engine.state_dict(),
            rng=rng,
            progress=asdict(run.progress),
            best=run.best.state_dict(),
            accumulator={"sums": dict(run.accumulator.sums), "counts": dict(run.accumulator.counts)},
        )
        save_checkpoint(exp / CHECKPOINT_DIR / LAST, payload)
    barrier(run.world_size)  # the others wait until last.pt is complete


def restore_run(run: TrainingRun, payload: dict[str, Any]) -> None:
    """Put a freshly built run into the state saved in ``payload`` (a ``last.pt``)."""
    run.model.load_state_dict(payload["model"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    run.scaler.load_state_dict(payload["scaler"])
    run.engine.load_state_dict(payload["engine"])
    run.progress = Progress(**payload["progress"])
    run.progress.finished = False
    run.best.load_state_dict(payload["best"])
    run.accumulator.sums = {k: v.to(run.device) for k, v in payload["accumulator"]["sums"].items()}
    run.accumulator.counts = dict(payload["accumulator"]["counts"])
    restore_rng_state(rng_state_for_rank(payload["rng"], run.rank, run.world_size))


def keep_snapshot(run: TrainingRun, exp: Path, valid: dict[str, float]) -> None:
    """Save the model as a ranked snapshot, drop those out of the N best, rewrite best.pt and average.pt."""
    if run.rank != 0:
        return
    checkpoint_dir = exp / CHECKPOINT_DIR
    file = f"step{run.progress.step:07d}.pt"
    payload = model_payload(run)
    payload["valid"] = valid
    save_checkpoint(checkpoint_dir / file, payload)
    dropped = run.best.add(file, run.progress.step, run.progress.epoch, valid["acc"])
    write_best_and_average(checkpoint_dir, run.best)
    kept = set(run.best.files())
    for path in checkpoint_dir.glob("step*.pt"):
        if path.name in dropped or path.name not in kept:
            path.unlink(missing_ok=True)


def write_run_json(
    exp: Path,
    run: TrainingRun,
    data: TrainingData,
    valid: dict[str, float],
    device: torch.device,
    wall_seconds: float | None,
    write: bool,
) -> dict[str, Any]:
    """``run.json``: how the run was made and how it ended."""
    previous = _read_run_json(exp)
    summary = {
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "git_commit": git_commit() or "unknown",
        "seed": run.cfg.train.seed,
        "method": run.cfg.surgery.method,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "device": str(device),
        "precision": run.precision,
        "wall_seconds": wall_seconds if wall_seconds is not None else previous.get("wall_seconds"),
        "train_seconds": run.progress.train_seconds,
        "steps": run.progress.step,
        "epochs": run.progress.epoch,
        "finished": run.progress.finished,
        "skipped_steps": run.progress.skipped_steps,
        "skipped_utterances": data.skipped_utterances,
        "final_valid": valid,
        "best": run.best.best,
    }
    if write:
        atomic_write_text(exp / "run.json", json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def _read_run_json(exp: Path) -> dict[str, Any]:
    try:
        return json.loads((exp / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _valid_line(progress: Progress, valid: dict[str, float]) -> str:
    return (
        f"valid @ step {progress.step} (epoch {progress.epoch}): loss {valid['loss']:.3f} "
        f"acc {valid['acc']:.3f} WER {100 * valid['wer']:.1f}%"
    )


def _summary_line(exp: Path, summary: dict[str, Any]) -> str:
    valid = summary.get("final_valid") or {}
    wer = valid.get("wer")
    wer_text = f", valid WER {100 * wer:.1f}%" if isinstance(wer, float) and not math.isnan(wer) else ""
    return f"{exp}: {summary['method']} trained {summary['steps']} steps{wer_text}"
