"""Small audio files and data directories built on the fly for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile


def tone(seconds: float, rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A quiet sine, (T,) or (T, C) float32."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


def write_table(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")


def make_dir(
    root: Path,
    seconds: list[float],
    *,
    with_clean: bool = True,
    rate: int = 16000,
    texts: list[str] | None = None,
) -> Path:
    """A clean data directory of tones: wav/, clean/, wav.scp, spk1.scp, text, utt2spk, utt2cond."""
    root.mkdir(parents=True, exist_ok=True)
    wav, clean, text, utt2spk, utt2cond = [], [], [], [], []
    for i, length in enumerate(seconds):
        utt = f"spk{i % 2}_utt{i:03d}"
        noisy_path = write_wav(root / "wav" / f"{utt}.wav", tone(length, rate, 300 + 10 * i), rate)
        wav.append(f"{utt} {noisy_path}")
        if with_clean:
            clean_path = write_wav(
                root / "clean" / f"{utt}.wav", tone(length, rate, 300 + 10 * i) * 0.5, rate
            )
            clean.append(f"{utt} {clean_path}")
        words = texts[i] if texts else ["alpha bravo", "charlie delta echo", "foxtrot"][i % 3]
        text.append(f"{utt} {words}")
        utt2spk.append(f"{utt} spk{i % 2}")
        utt2cond.append(f"{utt} white {5 * (i % 3)}")
    write_table(root / "wav.scp", wav)
    if with_clean:
        write_table(root / "spk1.scp", clean)
    write_table(root / "text", text)
    write_table(root / "utt2spk", utt2spk)
    write_table(root / "utt2cond", utt2cond)
    return root
