"""Typed configuration: YAML files mapped onto dataclasses.

A config file is a nested mapping whose keys are the fields of :class:`Config`. Unknown keys are an
error that names the key and the file; ``--set section.key=value`` overrides are parsed as YAML
scalars and checked the same way. Every run writes its resolved config next to its outputs with
:func:`save_config`, so that a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from gradremedy.atomic import atomic_write_text
from gradremedy.errors import UserError


class ConfigError(UserError):
    """A config file or override that cannot be mapped onto the dataclasses."""


@dataclass
class EnhancerConfig:
    """SE front end: ``kind`` names one of ``gradremedy.models.registry.ENHANCERS``, with its settings."""

    kind: str = "mask_blstm"  # mask_blstm (the authors' BLSTM mask) | mask_tcn (a light causal TCN mask)
    n_fft: int = 512
    hop_length: int = 256
    lstm_layers: int = 3  # mask_blstm
    lstm_units: int = 896  # mask_blstm, per direction
    dropout: float = 0.5
    # SE loss: per utterance, sum over frequency (and time) of squared magnitude error divided by the
    # number of frames ("sum", the authors' recipe) or mean over frequency ("mean").
    loss_reduction: str = "sum"
    tcn_channels: int = 64  # mask_tcn
    tcn_blocks: int = 4  # mask_tcn
    tcn_kernel: int = 3  # mask_tcn


@dataclass
class FrontendConfig:
    """Log-mel features computed from the enhanced waveform."""

    n_mels: int = 80
    n_fft: int = 512
    hop_length: int = 128
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    # Also divide by the utterance's standard deviation per mel bin (CMVN). The authors normalise the
    # mean only (the default); on the synthetic corpus the log-mel spread is ~7.5 around the mean.
    normalize_variance: bool = False
    specaugment: bool = False
    freq_masks: int = 2
    freq_mask_width: int = 27
    time_masks: int = 2
    time_mask_width: int = 40


@dataclass
class EncoderConfig:
    """Conformer encoder with conv2d 4x subsampling."""

    d_model: int = 256
    heads: int = 4
    ffn_dim: int = 2048
    blocks: int = 12
    conv_kernel: int = 15
    dropout: float = 0.1
    # Channels of the two subsampling Conv2d layers; 0: d_model (ESPnet's layout). Fewer channels make
    # small models much faster: this layer's cost grows with channels² and sees 4x more frames.
    subsampling_channels: int = 0


@dataclass
class DecoderConfig:
    """Transformer attention decoder."""

    blocks: int = 6
    heads: int = 4
    ffn_dim: int = 2048
    dropout: float = 0.1


@dataclass
class ModelConfig:
    """The joint SE + ASR model and its loss weights."""

    sample_rate: int = 16000
    enhancer: EnhancerConfig = field(default_factory=EnhancerConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    ctc_weight: float = 0.3  # c in L_asr = c * L_ctc + (1 - c) * L_att
    label_smoothing: float = 0.1
    se_weight: float = 0.3  # w in L = (1 - w) * L_asr + w * L_se


@dataclass
class TokenizerConfig:
    """Output units: sentencepiece BPE or characters, trained on the training text."""

    kind: str = "bpe"  # "bpe" | "char"
    vocab_size: int = 1000


@dataclass
class DataConfig:
    """Batching and loading."""

    max_frames_per_batch: int = 0  # 0: use batch_size utterances per batch
    batch_size: int = 16  # global batch (split over ranks)
    num_buckets: int = 10
    max_seconds: float = 30.0  # longer utterances are skipped (and counted)
    num_workers: int = 0
    # Decoded audio kept in memory, in MiB per dataset (training and validation each have their own;
    # with num_workers > 0, each worker process too): each file's samples as the loader uses them, int16
    # for 16-bit PCM at the model's rate, else float32, until the cap is reached; later files are read
    # from disk every time. Batches are the same with or without it (docs/data.md). 0: off.
    audio_cache_mb: int = 0
    skip_bad: bool = False
    # Dynamic mixing: per epoch, the probability that a training utterance with a clean reference gets
    # another training utterance's noise (noisy - clean of an additive mixture) at that one's SNR, in
    # place of its own (docs/data.md). 0: off, every epoch sees the same mixtures.
    dynamic_mixing: float = 0.0
    # A training utterance without a transcript: "error" (the data check refuses it) or "se_only" (it
    # needs a clean reference and trains the SE loss only; its ASR losses are masked out). Validation
    # and test sets always need transcripts.
    untranscribed: str = "error"
    # More Kaldi directories whose utterances join the training split (checked like train/), e.g. a
    # set of clean recordings without transcripts for the SE loss (with untranscribed: se_only).
    extra_train: list[str] = field(default_factory=list)


UNTRANSCRIBED_POLICIES = ("error", "se_only")
ASR_ONLY = "asr_only"  # a training mode (no SE front end), not a gradient method
# Flat keys of earlier configs -> where the setting lives now.
RENAMED_SURGERY_KEYS = {
    "K": "surgery.gr.K",
    "gr_max_stretch": "surgery.gr.max_stretch",
    "pcgrad_symmetric": "surgery.pcgrad.symmetric",
    "gradvac_beta": "surgery.gradvac.beta",
    "cagrad_c": "surgery.cagrad.c",
}


@dataclass
class SurgeryConfig:
    """How the SE (auxiliary) and ASR (main) gradients of the shared parameters are combined.

    In YAML each method's own settings sit in a section named after it, checked against the method's
    signature (``gradremedy.surgery.method_settings``)::

        surgery:
          method: gr                  # asr_only or any registered method
          granularity: tensor         # common to every method: tensor | layer | global
          accumulation: accumulated   # accumulated (once per optimizer step) | per_micro
          gr: {K: 5.0, max_stretch: 1000.0}
          pcgrad: {symmetric: false}

    A section may be given for any registered method (only ``method``'s is used); missing settings take
    the method's defaults.
    """

    method: str = "gr"
    granularity: str = "tensor"
    accumulation: str = "accumulated"
    # method -> its settings but granularity; filled in with the defaults of every registered method.
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from gradremedy.surgery import method_names, method_settings

        given = self.settings
        self.settings = {}
        for name in dict.fromkeys([*method_names(), *given]):
            defaults = {k: v for k, v in method_settings(name, required=False).items() if k != "granularity"}
            self.settings[name] = {**defaults, **given.get(name, {})}

    def method_settings(self, name: str | None = None) -> dict[str, Any]:
        """Every setting of method ``name`` (default: ``method``) but granularity, defaults included."""
        name = name or self.method
        return {} if name == ASR_ONLY else dict(self.settings[name])

    def build_method(self) -> Any:
        """The configured gradient method (``sum`` for asr_only, which has no shared parameters)."""
        from gradremedy.surgery import build_method

        name = "sum" if self.method == ASR_ONLY else self.method
        return build_method(name, granularity=self.granularity, **self.method_settings(name))


@dataclass
class TrainConfig:
    """Optimisation schedule."""

    lr: float = 0.002
    warmup_steps: int = 25000
    # Decay after the warm-up (train/schedule.py): inverse_sqrt (ESPnet's WarmupLR) | cosine | linear.
    # cosine and linear end at lr * final_lr_ratio at max_steps, so they need max_steps.
    schedule: str = "inverse_sqrt"
    final_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 5.0  # max global gradient norm; 0: no clipping
    # "global": clip the combined gradient (the authors' recipe); "per_task": clip the main and the
    # auxiliary gradient each to grad_clip before they are combined (GR's stretch is then not undone).
    clip_mode: str = "global"
    accum_grad: int = 4
    epochs: int = 50
    max_steps: int = 0  # 0: no limit beyond epochs
    keep_best: int = 10  # checkpoints kept and averaged, ranked by validation accuracy
    amp: str = "none"  # none | bf16 (CUDA, or a CPU with bf16 instructions) | fp16 (CUDA only)
    compile: bool = False
    log_every: int = 10
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0: once per epoch
    seed: int = 1
    num_threads: int = 0  # torch CPU threads; 0: torch's default (1 is often faster for tiny models)


@dataclass
class DecodeConfig:
    """Joint CTC/attention beam search."""

    beam_size: int = 10
    ctc_weight: float = 0.3
    length_penalty: float = 0.3
    lm_weight: float = 0.3
    max_length_ratio: float = 1.0  # max output tokens per encoder frame
    # Evaluation: PESQ, STOI and SI-SNR on at most this many test utterances with a clean reference,
    # evenly spaced in utterance-id order (0: all). They cost ~0.2 s of CPU per utterance, far more
    # than decoding a tiny model; WER/CER always use every utterance.
    se_max_utts: int = 0


@dataclass
class LMConfig:
    """LSTM language model over the ASR tokens, for shallow fusion (``gradremedy train-lm``)."""

    layers: int = 2
    units: int = 650  # hidden units per layer (also the embedding size)
    dropout: float = 0.2
    lr: float = 0.001  # Adam
    batch_size: int = 64  # sentences
    epochs: int = 20
    max_steps: int = 0  # 0: no limit beyond epochs
    grad_clip: float = 5.0
    valid_fraction: float = 0.05  # held-out sentences for picking the best epoch
    seed: int = 1


@dataclass
class Config:
    """Everything a run needs; one YAML file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    surgery: SurgeryConfig = field(default_factory=SurgeryConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    lm: LMConfig = field(default_factory=LMConfig)


def _build(cls: type, values: Any, where: str, source: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        kind = type(values).__name__
        raise ConfigError(f"{source}: '{where or 'top level'}' must be a mapping, got {kind}")
    if cls is SurgeryConfig:
        return _build_surgery(values, where, source)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in known:
            raise ConfigError(f"{source}: unknown config key '{path}' (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(hints[key], value, path, source)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str, source: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, source)
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if value is None:
            return []
        if isinstance(value, list):
            return [_coerce(item, v, f"{path}[{i}]", source) for i, v in enumerate(value)]
        raise ConfigError(f"{source}: '{path}' must be a list, got {value!r}")
    else:
        return value
    raise ConfigError(f"{source}: '{path}' must be {hint.__name__}, got {value!r}")


def _build_surgery(values: dict[str, Any], where: str, source: str) -> SurgeryConfig:
    """``surgery``: the common keys, plus one section per method checked against its signature."""
    from gradremedy.surgery import method_class, method_names, method_settings

    common = {"method": str, "granularity": str, "accumulation": str}
    kwargs: dict[str, Any] = {}
    settings: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        path = f"{where}.{key}"
        if key in common:
            kwargs[key] = _coerce(common[key], value, path, source)
        elif key in RENAMED_SURGERY_KEYS:
            raise ConfigError(f"{source}: '{path}' is now spelled '{RENAMED_SURGERY_KEYS[key]}'")
        elif key in method_names():
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{path}' must be a mapping of {key}'s settings")
            known = [k for k in method_settings(key) if k != "granularity"]
            hints = typing.get_type_hints(method_class(key).__init__)
            section = {}
            for name, setting in value.items():
                if name == "granularity":
                    raise ConfigError(
                        f"{source}: '{path}.granularity': granularity is common, set '{where}.granularity'"
                    )
                if name not in known:
                    listed = ", ".join(known) or "none"
                    raise ConfigError(
                        f"{source}: unknown config key '{path}.{name}' ({key}'s settings: {listed})"
                    )
                section[name] = _coerce(hints.get(name, Any), setting, f"{path}.{name}", source)
            settings[key] = section
        else:
            known = [*common, *method_names()]
            raise ConfigError(f"{source}: unknown config key '{path}' (known: {', '.join(known)})")
    return SurgeryConfig(**kwargs, settings=settings)


def validate_config(config: Config, source: str) -> None:
    """Check the values the dataclasses cannot: each error names the file and the key."""
    from gradremedy.surgery import (
        ACCUMULATION_POLICIES,
        GRANULARITIES,
        SurgeryError,
        build_method,
        method_names,
        method_settings,
    )
    from gradremedy.train.schedule import SCHEDULES

    surgery, train = config.surgery, config.train
    choices = {
        "surgery.method": (surgery.method, (ASR_ONLY, *method_names())),
        "surgery.granularity": (surgery.granularity, GRANULARITIES),
        "surgery.accumulation": (surgery.accumulation, ACCUMULATION_POLICIES),
        "train.amp": (train.amp, ("none", "bf16", "fp16")),
        "train.clip_mode": (train.clip_mode, ("global", "per_task")),
        "train.schedule": (train.schedule, SCHEDULES),
        "tokenizer.kind": (config.tokenizer.kind, ("bpe", "char")),
        "data.untranscribed": (config.data.untranscribed, UNTRANSCRIBED_POLICIES),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{source}: '{key}' must be one of {', '.join(allowed)}, got {value!r}")
    for name in method_names():  # every section, not only the chosen method's
        settings = surgery.method_settings(name)
        missing = set(method_settings(name)) - {"granularity", *settings}  # settings without a default
        if missing and name != surgery.method:
            continue  # a method from outside with required settings, not used by this config
        try:
            build_method(name, granularity=surgery.granularity, **settings)
        except SurgeryError as err:
            raise ConfigError(f"{source}: 'surgery.{name}': {err}") from None
    if train.clip_mode == "per_task" and surgery.accumulation == "per_micro" and train.accum_grad > 1:
        # Per-task clipping would clip every micro-batch while the other parameters' gradients accumulate.
        raise ConfigError(f"{source}: 'train.clip_mode' per_task needs surgery.accumulation=accumulated")
    if train.schedule != "inverse_sqrt" and train.max_steps <= train.warmup_steps:
        raise ConfigError(
            f"{source}: 'train.schedule' {train.schedule} decays to the end of the run: it needs "
            f"train.max_steps > train.warmup_steps, got max_steps {train.max_steps}"
        )
    mixing = config.data.dynamic_mixing
    if not 0.0 <= mixing <= 1.0:
        raise ConfigError(f"{source}: 'data.dynamic_mixing' must be a probability in [0, 1], got {mixing}")
    if config.data.audio_cache_mb < 0:
        raise ConfigError(f"{source}: 'data.audio_cache_mb' must be >= 0, got {config.data.audio_cache_mb}")
    if not 0.0 <= train.final_lr_ratio <= 1.0:
        raise ConfigError(f"{source}: 'train.final_lr_ratio' must be in [0, 1], got {train.final_lr_ratio}")
    for key in ("accum_grad", "log_every", "epochs"):
        if getattr(train, key) < 1:
            raise ConfigError(f"{source}: 'train.{key}' must be >= 1, got {getattr(train, key)}")


def config_from_dict(values: dict[str, Any], source: str = "<dict>") -> Config:
    """Build a :class:`Config` from a nested mapping, and check it (:func:`validate_config`)."""
    config = _build(Config, values, "", source)
    validate_config(config, source)
    return config


def apply_overrides(values: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a nested mapping."""
    values = yaml.safe_load(yaml.safe_dump(values)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: '{key}' does not name a config section")
        node[parts[-1]] = yaml.safe_load(raw)
    return values


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    source = str(path) if path is not None else "<defaults>"
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                values = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: not valid YAML ({str(err).splitlines()[0]})") from None
    if overrides:
        values = apply_overrides(values, overrides)
    return config_from_dict(values, source)


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as a plain nested dict (for YAML, JSON and checkpoints), in the YAML's own shape:
    every registered method's section written out in full (its defaults filled in)."""
    values = dataclasses.asdict(config)
    surgery = values["surgery"]
    surgery.update(surgery.pop("settings"))
    return values


def save_config(config: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
