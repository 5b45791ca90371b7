"""Noises of the corpus: spectra, SNR scaling, babble, sound effects and the radio channel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.data.synth import noise

SR = 16000


def _speech_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise bursts under a syllable-rate envelope: enough for power and spectrum checks."""
    t = np.arange(n) / SR
    return rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 0.1


def _band_power(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
def test_colored_noise_has_unit_power_and_its_slope(kind):
    x = noise.colored_noise(kind, 4 * SR, np.random.default_rng(0))
    assert np.isfinite(x).all()
    assert np.mean(x**2) == pytest.approx(1.0, rel=1e-6)
    # Power per octave: flat for white (x2 per octave up), equal for pink, falling for brown.
    low, high = _band_power(x, 500, 1000), _band_power(x, 4000, 8000)
    ratio_db = 10 * np.log10(high / low)  # three octaves apart
    expected = {"white": 10 * np.log10(8), "pink": 0.0, "brown": -10 * np.log10(8)}[kind]
    assert ratio_db == pytest.approx(expected, abs=1.5)


@settings(max_examples=40, deadline=None)
@given(
    snr_db=st.floats(-10, 30),
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["white", "pink", "brown"]),
)
def test_scale_to_snr_reaches_the_target(snr_db, seed, kind):
    rng = np.random.default_rng(seed)
    speech = _speech_like(SR, rng)
    added = noise.scale_to_snr(speech, noise.colored_noise(kind, SR, rng), snr_db)
    assert noise.measured_snr(speech, speech + added) == pytest.approx(snr_db, abs=1e-4)


def test_babble_mixes_pool_speech_at_unit_power():
    rng = np.random.default_rng(1)
    pool = [_speech_like(n, rng) for n in (8000, 20000, 12345)]
    x = noise.babble(pool, 3 * SR, np.random.default_rng(2))
    assert x.shape == (3 * SR,) and np.isfinite(x).all()
    assert np.mean(x**2) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError):
        noise.babble([], 100, rng)


def test_sound_effects_cover_the_utterance_and_have_unit_power():
    rng = np.random.default_rng(3)
    clips = [_speech_like(n, rng) for n in (3000, 9000)]
    x = noise.sound_effects(clips, 5 * SR, np.random.default_rng(4))
    assert x.shape == (5 * SR,) and np.isfinite(x).all()
    assert np.mean(x**2) == pytest.approx(1.0, rel=1e-6)
    assert np.mean(np.abs(x) > 0) > 0.5  # clips laid end to end, not one short blip


def test_radio_channel_is_band_limited_clipped_and_bounded():
    rng = np.random.default_rng(5)
    speech = _speech_like(3 * SR, rng)
    out = noise.radio_channel(speech, 5.0, np.random.default_rng(6), SR)
    assert out.shape == speech.shape and np.isfinite(out).all()
    in_band = _band_power(out, 400, 2500)
    assert _band_power(out, 5000, 8000) < 0.05 * in_band  # band-pass ~300-3000 Hz
    peak = np.max(np.abs(out))
    assert np.mean(np.abs(out) >= 0.999 * peak) > 1e-4  # hard-clipped plateau


def test_make_noise_refuses_the_radio_channel():
    with pytest.raises(ValueError):
        noise.make_noise("radio", 100, np.random.default_rng(0))
