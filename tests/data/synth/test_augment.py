"""Augmentations: resampling, image-method RIRs, band limits, codecs, level, and their names."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from gradremedy.data.synth import augment
from gradremedy.errors import UserError

SR = 16000


def _tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)


def _dominant_frequency(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spectrum)])


@pytest.mark.parametrize("factor", [Fraction(9, 10), Fraction(11, 10), Fraction(320, 441)])
def test_resample_scales_length_and_frequency(factor):
    x = _tone(1000.0)
    y = augment.resample(x, 1 / factor)  # played back at SR: frequencies scale by ``factor``
    assert len(y) == pytest.approx(len(x) / float(factor), abs=2)
    assert _dominant_frequency(y) == pytest.approx(1000.0 * float(factor), rel=0.01)


def test_image_method_rir_direct_path_first_and_decay_follows_rt60():
    room, source, mic = np.array([5.3, 4.1, 2.9]), np.array([1.13, 1.71, 1.27]), np.array([3.62, 2.44, 1.58])
    short = augment.image_method_rir(room, source, mic, 0.2, SR, 0.35)
    long = augment.image_method_rir(room, source, mic, 0.7, SR, 0.35)
    for rir in (short, long):
        assert np.isfinite(rir).all() and np.argmax(np.abs(rir)) == 0 and rir[0] == pytest.approx(1.0)
    tail = slice(int(0.1 * SR), None)
    late_short = np.sum(short[tail] ** 2) / np.sum(short**2)
    late_long = np.sum(long[tail] ** 2) / np.sum(long**2)
    assert late_long > 3 * late_short  # a more reverberant room keeps more late energy

    # Energy decays exponentially, faster in the drier room. (The image method with one absorption for
    # all walls decays somewhat slower than Sabine's nominal RT60 in a non-cubic room: not checked.)
    def decay_db_per_s(rir):
        windows = [np.sum(rir[int(t * SR) : int((t + 0.05) * SR)] ** 2) for t in (0.1, 0.15, 0.2, 0.25, 0.3)]
        return np.polyfit([0.1, 0.15, 0.2, 0.25, 0.3], 10 * np.log10(windows), 1)[0]

    assert decay_db_per_s(short) < 2 * decay_db_per_s(long) < 0


def test_reverberate_keeps_length_and_power():
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(SR) * 0.1
    rir, rt60 = augment.random_rir(rng, SR)
    wet = augment.reverberate(speech, rir)
    assert 0.15 <= rt60 <= 0.7
    assert wet.shape == speech.shape and np.isfinite(wet).all()
    assert np.mean(wet**2) == pytest.approx(np.mean(speech**2), rel=1e-6)


@pytest.mark.parametrize("channel", ["bandlimit", "mulaw8k", "gsm"])
def test_channels_remove_high_frequencies_and_stay_finite(channel):
    rng = np.random.default_rng(1)
    x = _tone(1000.0) + _tone(7500.0)
    if channel == "bandlimit":
        y = augment.bandlimit(x, rng, SR)
    elif channel == "mulaw8k":
        y = augment.mulaw_8k(x, SR)
    else:
        y = augment.gsm_like(x, SR)
    assert y.shape == x.shape and np.isfinite(y).all()
    spectrum = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    assert spectrum[np.argmin(np.abs(freqs - 7500))] < 0.05 * spectrum[np.argmin(np.abs(freqs - 1000))]


def test_mulaw_quantisation_is_audible_but_small():
    x = _tone(440.0)
    y = augment.mulaw_8k(x, SR)
    error = y - x
    snr = 10 * np.log10(np.mean(x**2) / np.mean(error[100:-100] ** 2))
    assert 20 < snr < 60


def test_codec_returns_its_name():
    names = {augment.codec(_tone(500.0), np.random.default_rng(s), SR)[1] for s in range(20)}
    assert names == {"mulaw8k", "gsm"}


@pytest.mark.parametrize("rms_dbfs", [-40.0, -25.0, -15.0, 0.0])
def test_set_level_reaches_the_level_or_stops_at_the_peak_limit(rms_dbfs):
    rng = np.random.default_rng(2)
    clean = rng.standard_normal(SR) * 0.01
    noisy = clean + rng.standard_normal(SR) * 0.01
    gain = augment.set_level(noisy, clean, rms_dbfs)
    assert max(np.max(np.abs(noisy * gain)), np.max(np.abs(clean * gain))) <= 0.99 + 1e-12
    level = 20 * np.log10(np.sqrt(np.mean((noisy * gain) ** 2)))
    if rms_dbfs <= -15:
        assert level == pytest.approx(rms_dbfs, abs=1e-6)
    else:
        assert level < rms_dbfs  # peak limit wins


def test_resolve_disabled_names():
    assert augment.resolve_disabled(["reverb", "codec"]) == {"reverb", "codec"}
    assert augment.resolve_disabled(["all"]) == set(augment.AUGMENTATIONS)
    assert augment.resolve_disabled([]) == frozenset()
    with pytest.raises(UserError, match="unknown augmentation 'echo'"):
        augment.resolve_disabled(["echo"])


def test_image_method_rir_has_no_dc_gain():
    # Unfiltered, the sum of positive reflections put most of a reverberated utterance's energy below
    # 80 Hz; the high-passed response keeps well under 1 % of its energy there.
    rng = np.random.default_rng(3)
    for _ in range(3):
        rir, _ = augment.random_rir(rng, SR)
        power = np.abs(np.fft.rfft(rir, SR)) ** 2
        below = np.fft.rfftfreq(SR, 1 / SR) < 50.0
        assert power[below].sum() / power.sum() < 0.01
        assert abs(rir.sum()) < 0.05 * np.abs(rir).sum()
