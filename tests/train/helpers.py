"""A tiny tone corpus and a tiny config for training tests.

Each word of a four-word vocabulary is a tone of its own pitch (with two harmonics); an utterance is
two to four words with short pauses, in white noise at 10 dB SNR, 8 kHz. The clean reference is the
tones alone. Small enough to train in seconds, distinct enough that a tiny model transcribes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import yaml

SAMPLE_RATE = 8000
WORDS = {"alpha": 300.0, "bravo": 550.0, "charlie": 900.0, "delta": 1400.0}


def _tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * k * frequency * t) / k for k in (1, 2, 3))
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # 20 ms fade in and out
    return 0.3 * wave * ramp


def write_split(folder: Path, sentences: list[list[str]], seed: int) -> None:
    """A Kaldi directory (wav.scp, spk1.scp, text, utt2spk) of the given word sequences."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    wav_dir = folder / "wav"
    wav_dir.mkdir(exist_ok=True)
    wav, spk1, text, utt2spk = [], [], [], []
    for index, words in enumerate(sentences):
        utt = f"spk{index % 2}-utt{index:03d}"
        pause = np.zeros(int(0.1 * SAMPLE_RATE))
        clean = np.concatenate([pause] + [np.concatenate([_tone(WORDS[w], 0.3), pause]) for w in words])
        noise = rng.standard_normal(clean.shape)
        noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10.0)  # 10 dB SNR
        soundfile.write(
            wav_dir / f"{utt}.wav", (clean + noise).astype(np.float32), SAMPLE_RATE, subtype="PCM_16"
        )
        soundfile.write(wav_dir / f"{utt}_clean.wav", clean.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        wav.append(f"{utt} {wav_dir / f'{utt}.wav'}")
        spk1.append(f"{utt} {wav_dir / f'{utt}_clean.wav'}")
        text.append(f"{utt} {' '.join(words).upper()}")
        utt2spk.append(f"{utt} spk{index % 2}")
    for name, lines in (("wav.scp", wav), ("spk1.scp", spk1), ("text", text), ("utt2spk", utt2spk)):
        (folder / name).write_text("\n".join(lines) + "\n")


def make_tone_corpus(root: Path, num_train: int = 8, num_valid: int = 4, seed: int = 0) -> Path:
    """``root/train`` and ``root/valid`` of random two-to-four-word sentences."""
    rng = np.random.default_rng(seed)
    names = list(WORDS)

    def sentences(count: int) -> list[list[str]]:
        return [list(rng.choice(names, size=int(rng.integers(2, 5)))) for _ in range(count)]

    write_split(root / "train", sentences(num_train), seed)
    write_split(root / "valid", sentences(num_valid), seed + 1)
    return root


TINY_CONFIG = {
    "model": {
        "sample_rate": SAMPLE_RATE,
        "enhancer": {"n_fft": 128, "hop_length": 64, "lstm_layers": 1, "lstm_units": 16, "dropout": 0.1},
        "frontend": {"n_mels": 20, "n_fft": 200, "hop_length": 80, "f_max": 4000.0},
        "encoder": {
            "d_model": 32,
            "heads": 2,
            "ffn_dim": 64,
            "blocks": 1,
            "conv_kernel": 7,
            "dropout": 0.1,
            "subsampling_channels": 8,
        },
        "decoder": {"blocks": 1, "heads": 2, "ffn_dim": 64, "dropout": 0.1},
        "ctc_weight": 0.3,
        "label_smoothing": 0.1,
        "se_weight": 0.3,
    },
    "tokenizer": {"kind": "bpe", "vocab_size": 30},
    "data": {"batch_size": 4, "num_buckets": 1},
    "surgery": {"method": "gr"},
    "train": {
        "lr": 0.005,
        "warmup_steps": 0,
        "grad_clip": 5.0,
        "accum_grad": 1,
        "epochs": 100,
        "max_steps": 6,
        "keep_best": 2,
        "log_every": 1,
        "checkpoint_every": 0,
        "seed": 1,
        "num_threads": 1,
    },
}


def write_config(path: Path, **sections: dict) -> Path:
    """The tiny config with some keys replaced: ``write_config(p, train={"max_steps": 3})``."""
    config = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config))
    return path
