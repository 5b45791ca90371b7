"""Set-up of a training run: the config, the experiment directory, the data, the tokenizer, and the things
that train (model, optimizer, schedule, loss scaler and the library's gradient engine), nothing that runs
per batch. :func:`gradremedy.train.loop.train` calls these in order; the per-batch step is in
:mod:`gradremedy.train.step`.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from gradremedy.config import ASR_ONLY, Config, config_from_dict, config_to_dict, load_config, save_config
from gradremedy.errors import DataError, UserError
from gradremedy.models import JointModel
from gradremedy.onednn_cache import enlarge_onednn_cache
from gradremedy.surgery import (
    AllReduceTasks,
    ClipPerTask,
    GradientEngine,
    groups_from_modules,
    kinds_from_modules,
)
from gradremedy.train.checkpoint import (
    CHECKPOINT_DIR,
    LAST,
    BestCheckpoints,
    load_checkpoint,
)
from gradremedy.train.distributed import (
    broadcast_state,
    decorrelate_random_streams,
)
from gradremedy.train.logging import DeviceAccumulator
from gradremedy.train.schedule import WarmupLR

EXTENDABLE_KEYS = ("train.max_steps", "train.epochs")  # may change between a run and its resumption
EXP_ENTRIES = ("config.yaml", "tokenizer", CHECKPOINT_DIR, "logs", "run.json")


# ----------------------------------------------------------------------------------------------------
# Set-up


def resolve_config(
    config_path: str | os.PathLike | None,
    overrides: list[str] | None,
    *,
    method: str | None,
    seed: int | None,
    max_steps: int | None,
    skip_bad: bool,
) -> Config:
    """The config file plus ``--set`` overrides plus the dedicated flags (checked by the config module)."""
    extra = list(overrides or [])
    if method is not None:
        extra.append(f"surgery.method={method}")
    if seed is not None:
        extra.append(f"train.seed={seed}")
    if max_steps is not None:
        extra.append(f"train.max_steps={max_steps}")
    if skip_bad:
        extra.append("data.skip_bad=true")
    return load_config(config_path, extra)


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: unknown device '{name}' (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return device


def make_deterministic(seed: int, device: torch.device, num_threads: int = 0) -> None:
    """Seed every generator; on CPU also ask torch for deterministic kernels and a fixed thread count."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


def prepare_experiment_dir(exp: Path, cfg: Config, *, overwrite: bool, write: bool) -> dict[str, Any] | None:
    """Make ``exp`` ready; returns the last checkpoint to resume from, or None to start afresh.

    An existing experiment made with another config is refused; ``overwrite`` removes what a previous
    run wrote (only the entries a run writes, never other files).
    """
    config_file = exp / "config.yaml"
    if exp.exists() and not exp.is_dir():
        raise UserError(f"{exp}: exists and is not a directory")
    if overwrite and write:
        for name in EXP_ENTRIES:
            path = exp / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif config_file.is_file():
        shown = config_mismatch(exp, cfg)
        if shown:
            raise UserError(
                f"{exp}: experiment was made with a different config ({shown}); "
                "use --overwrite to start over or choose another --out"
            )
    elif exp.is_dir() and any(exp.iterdir()):
        raise UserError(
            f"{exp}: not empty and not an experiment directory (no config.yaml); choose another --out"
        )
    if write:
        exp.mkdir(parents=True, exist_ok=True)
        save_config(cfg, config_file)
    last = exp / CHECKPOINT_DIR / LAST
    return load_checkpoint(last) if last.is_file() else None


def config_mismatch(exp: Path, cfg: Config) -> str:
    """'' when experiment ``exp`` has no config.yaml or was made with ``cfg``; else its first differences."""
    config_file = exp / "config.yaml"
    if not config_file.is_file():
        return ""
    differences = config_differences(_read_config_dict(config_file), config_to_dict(cfg))
    return "; ".join(differences[:3]) + (" ..." if len(differences) > 3 else "")


def _read_config_dict(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        return config_to_dict(config_from_dict(values, source=str(path)))
    except (yaml.YAMLError, UserError) as err:
        raise UserError(f"{path}: unreadable experiment config ({str(err).splitlines()[0]})") from None


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs, except the extendable ones."""
    differences = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_differences(a, b, f"{path}.")
        elif a != b and path not in EXTENDABLE_KEYS:
            differences.append(f"{path}: {a!r} -> {b!r}")
    return differences


@dataclass(frozen=True)
class DataCheck:
    """The outcome of the data check of a run's data directories (``train/``, every ``data.extra_train``
    directory, ``valid/``), made once by :func:`load_data` so that runs sharing the data need not check
    it again: for each directory checked, the ids of the utterances ``data.skip_bad`` leaves out."""

    skip_bad: bool
    left_out: tuple[tuple[str, str, frozenset[str]], ...]  # (directory, untranscribed policy, ids)

    def left_out_of(self, split_dir: Path, untranscribed: str, skip_bad: bool) -> frozenset[str] | None:
        """The ids left out of ``split_dir`` checked with these settings; None when it was not checked so."""
        if skip_bad != self.skip_bad:
            return None
        for path, policy, ids in self.left_out:
            if path == str(split_dir) and policy == untranscribed:
                return ids
        return None


@dataclass
class TrainingData:
    """What the loop needs from the data directories."""

    train_dir: Any
    valid_dir: Any
    train_texts: list[str]
    valid_refs: dict[str, str]  # utterance id -> normalised reference text
    skipped_utterances: int
    data_check: DataCheck  # what the data check of these directories found


def load_data(data_dir: Path, cfg: Config, data_check: DataCheck | None = None) -> TrainingData:
    """Read ``train/`` (plus ``data.extra_train``) and ``valid/``, run the data check first and refuse
    (or skip) bad utterances.

    The extra training directories are checked like ``train/`` and their utterances appended to it (an
    utterance id found in two of them is an error). Training utterances without a transcript are
    refused unless ``data.untranscribed`` is ``se_only``; validation needs every transcript. Each
    directory is parsed once, for the check and the reading. Given ``data_check`` (the ``data_check``
    of an earlier :func:`load_data` of the same directories with the same data settings), the
    directories it covers are not checked again: the utterances it found bad are left out.
    """
    from gradremedy.data.kaldi_dir import DataDir
    from gradremedy.data.tokenizer import normalize_text

    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data folder not found")
    for split in ("train", "valid"):
        if not (data_dir / split).is_dir():
            raise DataError(f"{data_dir / split}: missing (the data folder needs train/ and valid/)")
    extra = [Path(p) for p in cfg.data.extra_train]
    for path in extra:
        if not path.is_dir():
            raise DataError(f"{path}: data directory of data.extra_train not found")
    splits = [(split_dir, cfg.data.untranscribed) for split_dir in (data_dir / "train", *extra)]
    splits.append((data_dir / "valid", "error"))
    parts, left_out = [], []
    for split_dir, untranscribed in splits:
        known = data_check.left_out_of(split_dir, untranscribed, cfg.data.skip_bad) if data_check else None
        part, exclude = _checked_directory(split_dir, cfg, untranscribed, known)
        parts.append(part)
        left_out.append((str(split_dir), untranscribed, exclude))
    skipped = sum(len(ids) for _, _, ids in left_out)
    train_parts, valid = parts[:-1], parts[-1]
    train = train_parts[0]
    if extra:
        seen: dict[str, Path] = {}
        for part in train_parts:
            for utt_id in part.ids:
                if utt_id in seen:
                    raise DataError(f"{utt_id}: utterance id in both {seen[utt_id]} and {part.path}")
                seen[utt_id] = part.path
        train = DataDir(train.path, [u for part in train_parts for u in part])
    # The tokenizer learns the transcripts only (SE-only utterances have none).
    train_texts = [normalize_text(u.text) for u in train if u.text is not None]
    if not train_texts:
        raise DataError(f"{data_dir / 'train'}: no utterance with a transcript to train the ASR task on")
    valid_refs = {u.utt_id: normalize_text(u.text or "") for u in valid}
    return TrainingData(
        train, valid, train_texts, valid_refs, skipped, DataCheck(cfg.data.skip_bad, tuple(left_out))
    )


def check_training_data(data_dir: Path, cfg: Config) -> DataCheck:
    """The data check :func:`load_data` makes (the same problems printed, the same error raised), once
    for several runs that train on ``data_dir`` with ``cfg``'s data settings."""
    return load_data(data_dir, cfg).data_check


def _checked_directory(
    split_dir: Path, cfg: Config, untranscribed: str, known_bad: frozenset[str] | None
) -> tuple[Any, frozenset[str]]:
    """A data directory after its data check (its problems refused, or skipped with ``data.skip_bad``),
    and the ids of the utterances skipped. ``known_bad``: the directory was checked before and these
    utterances (possibly none) are left out without checking it again."""
    from gradremedy.data.check import bad_utterances, blocking_problems, check_and_parse
    from gradremedy.data.kaldi_dir import DataDir, read_data_dir

    if known_bad is None:
        data, problems = check_and_parse(split_dir, untranscribed=untranscribed)
        if problems and (not cfg.data.skip_bad or blocking_problems(problems)):
            for problem in problems:
                print(problem, file=sys.stderr)
            remedy = "fix them" if cfg.data.skip_bad else "fix them or use --skip-bad"
            raise DataError(f"{split_dir}: {len(problems)} problem(s) in the data check; {remedy}")
        # Without structural problems the parse is the directory read_data_dir reads.
        exclude = frozenset(bad_utterances(problems))
    else:
        data = read_data_dir(split_dir, untranscribed=untranscribed)
        exclude = known_bad
    if exclude:
        data = DataDir(data.path, [u for u in data if u.utt_id not in exclude])
        print(f"{split_dir}: skipping {len(exclude)} bad utterance(s) (--skip-bad)", file=sys.stderr)
    if len(data) == 0:
        raise DataError(f"{split_dir}: no usable utterances")
    return data, exclude


def prepare_tokenizer(exp: Path, texts: list[str], cfg: Config, *, write: bool) -> Any:
    """Train the tokenizer on the training text (or load the one a previous run of ``exp`` trained)."""
    from gradremedy.data.tokenizer import Tokenizer

    target = exp / "tokenizer"
    if not target.is_dir() and write:
        # Trained into a temporary folder and renamed: a crash never leaves a half-written tokenizer.
        tmp = exp / f".tokenizer.tmp{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        Tokenizer.train(texts, kind=cfg.tokenizer.kind, vocab_size=cfg.tokenizer.vocab_size, out_dir=tmp)
        os.replace(tmp, target)
    return Tokenizer.load(target)


# ----------------------------------------------------------------------------------------------------
# The things that train


@dataclass
class Progress:
    """Where training is; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # micro-batches of the current epoch consumed
    skipped_steps: int = 0  # non-finite steps skipped
    train_seconds: float = 0.0  # wall time spent in training, over every resumption
    finished: bool = False


@dataclass
class TrainingRun:
    cfg: Config
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: WarmupLR
    engine: GradientEngine
    scaler: torch.amp.GradScaler
    tokenizer: Any
    device: torch.device
    autocast_dtype: torch.dtype | None
    use_enhancer: bool
    progress: Progress
    best: BestCheckpoints
    accumulator: DeviceAccumulator
    rank: int
    world_size: int

    @property
    def precision(self) -> str:
        """The precision the steps compute in: "float32", or the autocast dtype ("bfloat16", "float16")."""
        return str(self.autocast_dtype or torch.float32).removeprefix("torch.")


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Adam, fused where this torch has a fused kernel for the parameters' device: on the CPU it takes
    1.3 ms a step against 4.5 ms for the tiny model (1.3 M parameters, one thread), the same update up to
    rounding. Older torch versions have no fused CPU kernel and get the ordinary one."""
    settings = {"lr": cfg.train.lr, "weight_decay": cfg.train.weight_decay}
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **settings)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), **settings)


def build_run(
    cfg: Config, tokenizer: Any, device: torch.device, *, rank: int, world_size: int
) -> TrainingRun:
    """Model, optimizer, schedule, loss scaler and gradient engine for ``cfg``."""
    model = build_model(cfg, tokenizer.vocab_size, device, world_size)
    optimizer = build_optimizer(model, cfg)
    autocast_dtype = autocast_dtype_for(cfg, device)
    if device.type == "cpu":
        enlarge_onednn_cache()  # before the first step (gradremedy/onednn_cache.py)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    run = TrainingRun(
        cfg=cfg,
        model=model,
        optimizer=optimizer,
        scheduler=WarmupLR(
            optimizer,
            cfg.train.warmup_steps,
            schedule=cfg.train.schedule,
            total_steps=cfg.train.max_steps,
            final_lr_ratio=cfg.train.final_lr_ratio,
        ),
        engine=build_engine(cfg, model, scaler),
        scaler=scaler,
        tokenizer=tokenizer,
        device=device,
        autocast_dtype=autocast_dtype,
        use_enhancer=cfg.surgery.method != ASR_ONLY,
        progress=Progress(),
        best=BestCheckpoints(cfg.train.keep_best),
        accumulator=DeviceAccumulator(),
        rank=rank,
        world_size=world_size,
    )
    decorrelate_random_streams(cfg.train.seed, rank, world_size)  # own dropout masks per rank
    return run


def build_model(cfg: Config, vocab_size: int, device: torch.device, world_size: int) -> torch.nn.Module:
    """The joint model (without SE front end for asr_only), rank 0's weights on every rank."""
    model = JointModel(cfg.model, vocab_size, use_enhancer=cfg.surgery.method != ASR_ONLY).to(device)
    broadcast_state(model, world_size)  # every rank starts from rank 0's weights
    if cfg.train.compile:
        import torch._functorch.config as functorch_config

        # The engine's first backward keeps the graph for the second: compiled backwards must not
        # donate (free) their saved buffers.
        functorch_config.donated_buffer = False
        # The Conformer and the decoder only, in place (parameter names and state_dict keys stay as they
        # are). The enhancer and the log-mel front end stay eager: they are STFTs (complex tensors, which
        # inductor does not generate code for), a cuDNN LSTM (already one fused kernel) and, under
        # autocast, a gather whose compiled backward fails in PyTorch 2.11 ("Unexpected floating
        # ScalarType in at::autocast::prioritize", seen on an H100).
        model.encoder.compile()
        model.decoder.compile()
    return model


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX). Without them oneDNN emulates bf16,
    and bf16 autocast makes a step slower instead of faster."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the getattr
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_dtype_for(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` asks for where it applies; None (float32) otherwise.

    bf16 and fp16 on CUDA; bf16 also on a CPU with bf16 instructions, where a tiny-config step costs
    9-25 % less CPU than in float32 (benchmarks/amp_speed.py). Elsewhere float32, said in one line."""
    amp = cfg.train.amp
    if amp == "none":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type == "cpu" and amp == "bf16":
        if cpu_has_native_bf16():
            return torch.bfloat16
        message = "train.amp=bf16: no bf16 instructions (AVX512-BF16 or AMX) on this CPU; float32"
        print(message, file=sys.stderr)
        return None
    print(f"train.amp={amp} applies on CUDA only; float32 on {device}", file=sys.stderr)
    return None


def build_engine(cfg: Config, model: torch.nn.Module, scaler: torch.amp.GradScaler) -> GradientEngine:
    """The library's engine for ``surgery``, set up exactly as any user of gradremedy.surgery would.

    Before the combination: the all-reduce of each task's gradient over the ranks (summed: the losses are
    weighted by each rank's share of the global batch, see :func:`loss_weights`; a no-op for one
    process), then with ``train.clip_mode=per_task`` each task's gradient clipped to ``train.grad_clip``
    (so that neither a dominant SE gradient nor GR's stretch of the ASR gradient is undone by one global
    clip of the sum).
    """
    shared = model.shared_parameters()
    steps: list[Any] = [AllReduceTasks(op="sum")]
    if cfg.train.clip_mode == "per_task" and cfg.train.grad_clip > 0:
        steps.append(ClipPerTask(cfg.train.grad_clip, scaler=scaler))
    granularity = cfg.surgery.granularity
    # With one micro-batch per step the two policies are the same; "accumulated" also admits ClipPerTask.
    accumulation = cfg.surgery.accumulation if cfg.train.accum_grad > 1 else "accumulated"
    return GradientEngine(
        model.parameters(),
        shared,
        cfg.surgery.build_method(),
        accumulation,
        before_combination=steps,
        groups=groups_from_modules(model, shared) if granularity == "layer" else None,
        kinds=kinds_from_modules(model, shared),
    )
