"""Augmentations that bring synthetic voices closer to real recordings, each switchable by name.

| name      | what it does                                                                  | default |
|-----------|-------------------------------------------------------------------------------|---------|
| speed     | Kaldi-style speed perturbation: resample by 0.9, 1.0 or 1.1 (tempo and pitch)  | on      |
| pitch     | per-utterance pitch shift of -2..+2 semitones, through the engine's own control | on      |
| vtlp      | vocal-tract-length (formant) warp alpha in 0.90..1.10: resample by alpha while | on      |
|           | the engine compensates pitch and tempo, so that only the formants move        |         |
| reverb    | image-method room impulse response (shoebox room, RT60 0.15-0.7 s), p = 0.5   | on      |
|           | (nominal Sabine RT60; the image method's tail decays somewhat slower)         |         |
| bandlimit | random microphone/line band: low-pass 3.4-7 kHz, high-pass 50-300 Hz, p = 0.2  | on      |
| codec     | telephone/radio codec on the mixture, p = 0.2: mu-law at 8 kHz, or a GSM-like  | on      |
|           | 300-3400 Hz band at 8 kHz with 13-bit samples                                 |         |
| level     | overall level drawn from -40..-15 dBFS RMS instead of a fixed -25 dBFS         | on      |

``speed``, ``pitch``, ``vtlp`` and ``reverb`` change the speech itself, so they are part of the SE
reference (``spk1.scp``): the reference is the (possibly reverberant) speech just before noise is
added. ``bandlimit`` and ``codec`` model the channel and act on the noisy mixture only. ``level``
scales noisy and reference together.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal

from gradremedy.data.audio import resample_by
from gradremedy.errors import UserError

AUGMENTATIONS: dict[str, str] = {
    "speed": "speed perturbation 0.9/1.0/1.1 (resampling: tempo and pitch together)",
    "pitch": "pitch shift -2..+2 semitones per utterance (engine pitch control)",
    "vtlp": "formant warp 0.90..1.10 (resample + engine pitch/tempo compensation)",
    "reverb": "image-method room impulse response, RT60 0.15-0.7 s, half of the utterances",
    "bandlimit": "random low-pass 3.4-7 kHz and high-pass 50-300 Hz on the mixture, p=0.2",
    "codec": "mu-law 8 kHz or GSM-like 300-3400 Hz 13-bit band on the mixture, p=0.2",
    "level": "random level -40..-15 dBFS RMS (else fixed -25 dBFS)",
}
SPEED_FACTORS = (Fraction(9, 10), Fraction(1), Fraction(11, 10))
VTLP_FACTORS = tuple(Fraction(k, 20) for k in range(18, 23))  # 0.90 .. 1.10
SPEED_OF_SOUND = 343.0
HIGHPASS_HZ = 80.0  # of the room impulse responses: removes their DC gain (image_method_rir)


def resolve_disabled(names: list[str] | tuple[str, ...]) -> frozenset[str]:
    """Validate ``--no-augment`` names ('all' switches every augmentation off)."""
    disabled = set()
    for name in names:
        if name == "all":
            disabled.update(AUGMENTATIONS)
        elif name in AUGMENTATIONS:
            disabled.add(name)
        else:
            raise UserError(f"unknown augmentation '{name}' (known: {', '.join(AUGMENTATIONS)}, all)")
    return frozenset(disabled)


def butterworth(order: int, cutoff: float | tuple[float, float], btype: str, sample_rate: int) -> np.ndarray:
    """A Butterworth filter as second-order sections, designed once per setting: the fixed filters would
    otherwise be designed again for every utterance, at about 1.5 ms each. A copy (``sosfilt`` wants
    a writable array)."""
    return _butterworth_design(order, cutoff, btype, sample_rate).copy()


@lru_cache(maxsize=16)
def _butterworth_design(
    order: int, cutoff: float | tuple[float, float], btype: str, sample_rate: int
) -> np.ndarray:
    return signal.butter(order, cutoff, btype=btype, fs=sample_rate, output="sos")


def resample(x: np.ndarray, factor: Fraction | float) -> np.ndarray:
    """Resample by ``factor`` (output length ~ len * factor) with the package's polyphase resampler.

    A :class:`Fraction` is used exactly (e.g. 320/441 for 22.05 -> 16 kHz); a float is rounded to a
    ratio of small integers so the filter stays short.
    """
    ratio = factor if isinstance(factor, Fraction) else Fraction(factor).limit_denominator(64)
    return resample_by(x, ratio.numerator, ratio.denominator)


def image_method_rir(
    room: np.ndarray, source: np.ndarray, mic: np.ndarray, rt60: float, sample_rate: int, max_seconds: float
) -> np.ndarray:
    """Room impulse response of a shoebox room by the image method (Allen & Berkley, 1979).

    All six walls share one reflection coefficient from Sabine's formula for ``rt60``. Each image
    source adds ``beta^reflections / (4 pi d)`` at delay ``d / c``, split linearly between the two
    nearest samples. The response is cut at ``max_seconds`` and shifted so the direct path is at 0.
    Written here rather than taken from pyroomacoustics: it is ~30 lines, and that package needs a
    C++ build that is slow to install.

    The sum of positive reflections has a large DC and sub-audio response (Allen & Berkley high-pass
    their responses for this reason): unfiltered, it carried a median 35 % of a reverberated tiny
    utterance's energy below 80 Hz, which the power and SNR scaling then counted as speech. So the
    response is high-passed at ``HIGHPASS_HZ`` (4th-order Butterworth) before it is normalised.
    """
    volume = float(np.prod(room))
    surface = 2.0 * (room[0] * room[1] + room[0] * room[2] + room[1] * room[2])
    absorption = min(0.161 * volume / (surface * rt60), 0.99)
    beta = math.sqrt(1.0 - absorption)
    direct = float(np.linalg.norm(source - mic))
    length = int(max_seconds * sample_rate)
    max_distance = direct + max_seconds * SPEED_OF_SOUND

    per_axis = []  # for each axis: (coordinate offset from the mic, reflection count) of every image
    for axis in range(3):
        order = int(math.ceil(max_distance / (2.0 * room[axis]))) + 1
        n = np.arange(-order, order + 1)
        coords, refl = [], []
        for p in (0, 1):
            coords.append((1 - 2 * p) * source[axis] + 2 * n * room[axis] - mic[axis])
            refl.append(np.abs(n - p) + np.abs(n))
        per_axis.append((np.concatenate(coords), np.concatenate(refl)))
    (dx, rx), (dy, ry), (dz, rz) = per_axis
    distance = np.sqrt(dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2)  # (X, Y, Z)
    reflections = rx[:, None, None] + ry[None, :, None] + rz[None, None, :]
    keep = distance < max_distance
    distance, reflections = distance[keep], reflections[keep]
    delay = (distance - direct) / SPEED_OF_SOUND * sample_rate
    # beta**k from a table of the few reflection counts: the same power, computed once per count.
    gain = (beta ** np.arange(int(reflections.max(initial=0)) + 1))[reflections] / (4 * np.pi * distance)
    first = np.floor(delay).astype(np.int64)
    frac = delay - first
    ok = first < length
    # Each image's two taps, accumulated in order (all left taps, then all right taps) by one bincount:
    # the additions of np.add.at in the same order, without its per-element overhead.
    taps = np.concatenate([first[ok], first[ok] + 1])
    weights = np.concatenate([gain[ok] * (1 - frac[ok]), gain[ok] * frac[ok]])
    rir = np.bincount(taps, weights, minlength=length + 1)[:length]
    rir = signal.sosfilt(butterworth(4, HIGHPASS_HZ, "highpass", sample_rate), rir)
    return rir / (np.max(np.abs(rir)) + 1e-12)


def random_rir(
    rng: np.random.Generator, sample_rate: int, rt60: float | None = None
) -> tuple[np.ndarray, float]:
    """A random room (3-8 x 3-8 x 2.4-3.5 m; RT60 0.15-0.7 s unless given), source and microphone at
    least 0.3 m from the walls. The response is cut at min(RT60, 0.35 s)."""
    room = np.array([rng.uniform(3, 8), rng.uniform(3, 8), rng.uniform(2.4, 3.5)])
    source = np.array([rng.uniform(0.3, d - 0.3) for d in room])
    mic = np.array([rng.uniform(0.3, d - 0.3) for d in room])
    if rt60 is None:
        rt60 = float(rng.uniform(0.15, 0.7))
    return image_method_rir(room, source, mic, rt60, sample_rate, max_seconds=min(rt60, 0.35)), rt60


def reverberate(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with the RIR, keep the original length, and keep the input's power."""
    wet = signal.fftconvolve(speech, rir)[: len(speech)]
    return wet * np.sqrt(np.mean(speech**2) / (np.mean(wet**2) + 1e-12))


def bandlimit(x: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A random microphone/line response: high-pass 50-300 Hz and low-pass 3.4-7 kHz."""
    low = rng.uniform(50.0, 300.0)
    high = min(rng.uniform(3400.0, 7000.0), 0.45 * sample_rate)
    sos = signal.butter(6, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, x)


def mulaw_8k(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """G.711-style mu-law telephone channel: down to 8 kHz, 8-bit mu-law, back up."""
    narrow = resample(x, Fraction(8000, sample_rate))
    peak = np.max(np.abs(narrow)) + 1e-12
    y = narrow / peak
    mu = 255.0
    coded = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
    coded = np.round(coded * 127.0) / 127.0  # 8 bits
    decoded = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu
    return _fit(resample(decoded * peak, Fraction(sample_rate, 8000)), len(x))


def gsm_like(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """A GSM-like band: 300-3400 Hz at 8 kHz with 13-bit samples (no speech codec model)."""
    narrow = resample(x, Fraction(8000, sample_rate))
    narrow = signal.sosfilt(butterworth(6, (300.0, 3400.0), "bandpass", 8000), narrow)
    peak = np.max(np.abs(narrow)) + 1e-12
    narrow = np.round(narrow / peak * 4095.0) / 4095.0 * peak
    return _fit(resample(narrow, Fraction(sample_rate, 8000)), len(x))


def codec(x: np.ndarray, rng: np.random.Generator, sample_rate: int) -> tuple[np.ndarray, str]:
    """One of the telephone/radio codecs, chosen at random; returns the signal and the codec's name."""
    if rng.random() < 0.5:
        return mulaw_8k(x, sample_rate), "mulaw8k"
    return gsm_like(x, sample_rate), "gsm"


def _fit(x: np.ndarray, length: int) -> np.ndarray:
    return x[:length] if len(x) >= length else np.pad(x, (0, length - len(x)))


def set_level(noisy: np.ndarray, clean: np.ndarray, rms_dbfs: float, peak: float = 0.99) -> float:
    """The gain that brings ``noisy`` to ``rms_dbfs``, lowered so neither signal exceeds ``peak``."""
    rms = math.sqrt(float(np.mean(noisy**2))) + 1e-12
    gain = 10 ** (rms_dbfs / 20) / rms
    top = max(float(np.max(np.abs(noisy))), float(np.max(np.abs(clean))), 1e-12)
    return min(gain, peak / top)
