"""Noises and the radio channel: white, pink, brown, babble, recorded sound effects, RATS-like radio.

Every function is pure numpy/scipy and draws its randomness from the generator it is given, so an
utterance's noise depends only on its own seed. Additive noises are mixed at a target SNR measured
over the whole utterance (mean power of the speech reference against mean power of the added noise).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

NOISE_TYPES = ("white", "pink", "brown", "babble", "sfx", "radio")
ADDITIVE_NOISE_TYPES = ("white", "pink", "brown", "babble", "sfx")
_EPS = 1e-12


def _unit_power(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x**2) + _EPS)


def colored_noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of unit power with a 1/f^beta power spectrum: white 0, pink 1, brown 2."""
    beta = {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind]
    if beta == 0.0:
        return _unit_power(rng.standard_normal(length))
    n_fft = sp_fft.next_fast_len(length, real=True)  # an utterance's length can be a large prime
    spectrum = sp_fft.rfft(rng.standard_normal(n_fft))
    freqs = sp_fft.rfftfreq(n_fft)
    freqs[0] = freqs[1] if n_fft > 1 else 1.0  # no infinite gain at DC
    shaped = sp_fft.irfft(spectrum / freqs ** (beta / 2.0), n=n_fft)[:length]
    return _unit_power(shaped - shaped.mean())


def _loop_segment(clip: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of ``clip`` from a random start, looping it as needed."""
    start = int(rng.integers(len(clip)))
    reps = -(-(start + length) // len(clip))
    return np.tile(clip, reps)[start : start + length]


def babble(pool: Sequence[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """3 to 7 talkers from ``pool`` (held-out speakers) speaking at once, each at a random level."""
    if not pool:
        raise ValueError("babble needs a non-empty pool of held-out speech")
    talkers = int(rng.integers(3, 8))
    mix = np.zeros(length)
    for _ in range(talkers):
        speech = pool[int(rng.integers(len(pool)))]
        gain_db = rng.uniform(-6.0, 0.0)
        mix += 10 ** (gain_db / 20) * _unit_power(_loop_segment(speech, length, rng))
    return _unit_power(mix)


def sound_effects(clips: Sequence[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """Recorded sound effects laid end to end (each from a random start, with 0-0.3 s gaps) and,
    half of the time, a second such layer on top: real, non-stationary background noise."""
    if not clips:
        raise ValueError("sound-effect noise needs at least one clip")
    layers = 1 + int(rng.random() < 0.5)
    mix = np.zeros(length)
    for _ in range(layers):
        layer = np.zeros(length)
        pos = -int(rng.integers(0, length // 2 + 1))
        while pos < length:
            clip = clips[int(rng.integers(len(clips)))]
            piece = clip[int(rng.integers(max(1, len(clip) // 2))) :]
            begin, end = max(pos, 0), min(pos + len(piece), length)
            if end > begin:
                layer[begin:end] += _unit_power(piece)[begin - pos : end - pos]
            pos += len(piece) + int(rng.integers(0, 4800))
        mix += layer
    if not np.any(mix):
        mix = colored_noise("pink", length, rng)
    return _unit_power(mix)


def scale_to_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that mean(speech^2) / mean(noise^2) = 10^(snr_db/10)."""
    speech_power = np.mean(speech**2)
    noise_power = np.mean(noise**2) + _EPS
    return noise * np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))


def measured_snr(speech: np.ndarray, noisy: np.ndarray) -> float:
    """SNR (dB) of ``noisy`` against its speech reference, over the whole signal."""
    noise = noisy - speech
    return float(10 * np.log10(np.mean(speech**2) / (np.mean(noise**2) + _EPS)))


def radio_channel(
    speech: np.ndarray, snr_db: float, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """A degraded radio link in the spirit of the RATS corpus.

    Additive part at ``snr_db`` (hiss, one to three drifting interference tones, crackle), then the
    channel: band-pass (about 300-3000 Hz), slow fading, and hard clipping.
    """
    n = len(speech)
    t = np.arange(n) / sample_rate
    hiss = colored_noise("white" if rng.random() < 0.5 else "pink", n, rng)
    tones = np.zeros(n)
    for _ in range(int(rng.integers(1, 4))):
        f0 = rng.uniform(300.0, 2800.0)
        drift = rng.uniform(-40.0, 40.0) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t)
        phase = 2 * np.pi * np.cumsum(f0 + drift) / sample_rate
        tones += rng.uniform(0.2, 1.0) * np.sin(phase + rng.uniform(0, 2 * np.pi))
    crackle = np.zeros(n)
    clicks = rng.random(n) < rng.uniform(5.0, 40.0) / sample_rate
    crackle[clicks] = rng.standard_normal(int(clicks.sum())) * 8.0
    crackle = signal.lfilter([1.0], [1.0, -0.6], crackle)
    interference = hiss + rng.uniform(0.1, 0.8) * _unit_power(tones) + rng.uniform(0.1, 0.6) * crackle
    received = speech + scale_to_snr(speech, interference, snr_db)

    low = rng.uniform(200.0, 400.0)
    high = rng.uniform(2600.0, 3400.0)
    sos = signal.butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    received = signal.sosfilt(sos, received)

    depth = rng.uniform(0.0, 0.7)
    fade_rate = rng.uniform(0.2, 2.0)
    fading = 1.0 - depth * (0.5 + 0.5 * np.sin(2 * np.pi * fade_rate * t + rng.uniform(0, 2 * np.pi)))
    received = received * fading

    peak = np.max(np.abs(received)) + _EPS
    clip_level = rng.uniform(0.3, 0.9) * peak
    return np.clip(received, -clip_level, clip_level)


def make_noise(
    kind: str,
    length: int,
    rng: np.random.Generator,
    babble_pool: Sequence[np.ndarray] = (),
    sfx_clips: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Unit-power additive noise of one of :data:`ADDITIVE_NOISE_TYPES`."""
    if kind in ("white", "pink", "brown"):
        return colored_noise(kind, length, rng)
    if kind == "babble":
        return babble(babble_pool, length, rng)
    if kind == "sfx":
        return sound_effects(sfx_clips, length, rng)
    raise ValueError(f"not an additive noise type: {kind!r}")
