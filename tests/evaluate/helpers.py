"""A tiny (untrained) experiment directory and small data directories for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from gradremedy.config import config_from_dict, config_to_dict, save_config
from gradremedy.data.tokenizer import Tokenizer
from gradremedy.models import JointModel
from gradremedy.train.checkpoint import save_checkpoint

SENTENCES = ["alpha bravo", "charlie delta echo", "foxtrot golf", "hotel india juliett"]

TINY = {
    "model": {
        "sample_rate": 16000,
        "enhancer": {"n_fft": 256, "hop_length": 128, "lstm_layers": 1, "lstm_units": 16, "dropout": 0.0},
        "frontend": {"n_mels": 20, "n_fft": 400, "hop_length": 160},
        "encoder": {
            "d_model": 32,
            "heads": 2,
            "ffn_dim": 64,
            "blocks": 1,
            "conv_kernel": 5,
            "subsampling_channels": 8,
        },
        "decoder": {"blocks": 1, "heads": 2, "ffn_dim": 64},
    },
    "tokenizer": {"kind": "char"},
    "decode": {"beam_size": 3, "ctc_weight": 0.3, "length_penalty": 0.0, "max_length_ratio": 0.5},
}


def make_experiment(root: Path, use_enhancer: bool = True) -> Path:
    """An experiment directory as ``gradremedy train`` leaves it: config, tokenizer, checkpoints."""
    exp = root / ("exp" if use_enhancer else "exp_asr_only")
    config = config_from_dict(TINY)
    tokenizer = Tokenizer.train(SENTENCES, "char", 0, exp / "tokenizer")
    model = JointModel(config.model, tokenizer.vocab_size, use_enhancer=use_enhancer)
    save_config(config, exp / "config.yaml")
    payload = {
        "model": model.state_dict(),
        "config": config_to_dict(config),
        "vocab_size": tokenizer.vocab_size,
        "use_enhancer": use_enhancer,
    }
    for name in ("last", "best", "average"):
        save_checkpoint(exp / "checkpoints" / f"{name}.pt", payload)
    return exp


def tone(seconds: float, rate: int, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A voiced-speech-like test signal: a modulated harmonic complex with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    harmonics = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t)) * (t > 0.1) * (t < seconds - 0.1)
    return (0.3 * envelope * harmonics + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int, subtype: str | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype=subtype)
    return str(path)


def write_table(path: Path, rows: dict[str, str]) -> None:
    path.write_text("".join(f"{key} {value}\n" for key, value in sorted(rows.items())), encoding="utf-8")
