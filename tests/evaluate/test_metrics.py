"""Scores of enhanced speech: SI-SNR against its definition and known values, PESQ and
STOI sanity, SNR buckets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.evaluate.metrics import (
    pesq_rate,
    pesq_score,
    si_snr,
    snr_bucket,
    stoi_score,
)

from .helpers import tone


def orthogonal_pair(n: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n) / n
    return np.sin(2 * np.pi * 50 * t), np.cos(2 * np.pi * 50 * t)  # zero mean, orthogonal, equal energy


@pytest.mark.parametrize("noise_gain_db", [0.0, 10.0, -6.0, 20.0])
def test_si_snr_known_values(noise_gain_db: float) -> None:
    """reference + orthogonal noise at -g dB relative energy has SI-SNR g dB, whatever the scale."""
    reference, noise = orthogonal_pair()
    estimate = reference + noise * 10 ** (-noise_gain_db / 20)
    assert si_snr(estimate, reference) == pytest.approx(noise_gain_db, abs=1e-6)
    assert si_snr(-3.0 * estimate + 0.7, reference) == pytest.approx(noise_gain_db, abs=1e-6)


def test_si_snr_of_a_perfect_estimate_is_very_high() -> None:
    reference, _ = orthogonal_pair()
    assert si_snr(0.5 * reference, reference) > 100


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(1e-3, 1e3), st.integers(8, 400))
def test_si_snr_matches_the_definition(seed: int, scale: float, length: int) -> None:
    rng = np.random.default_rng(seed)
    reference, estimate = rng.standard_normal(length), rng.standard_normal(length)
    s = reference - reference.mean()
    e = estimate - estimate.mean()
    target = (e @ s) / (s @ s) * s
    floor = 1e-15 * (e @ e)  # the documented floor on both energies (matters only near -150 dB)
    want = 10 * math.log10((target @ target + floor) / ((e - target) @ (e - target) + floor))
    assert si_snr(scale * estimate, reference) == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_pesq_rate_is_the_nearest_pesq_mode() -> None:
    assert [pesq_rate(r) for r in (8000, 11025, 12000, 16000, 22050, 48000)] == [8000] * 2 + [16000] * 4


@pytest.mark.parametrize("rate", [8000, 16000, 22050])
def test_pesq_and_stoi_rank_a_clean_copy_above_a_noisy_one(rate: int) -> None:
    clean = tone(2.0, rate)
    noisy = clean + 0.1 * np.random.default_rng(1).standard_normal(len(clean)).astype(np.float32)
    identical = pesq_score(clean, clean, rate)
    assert 4.0 < identical <= 4.65
    assert 1.0 <= pesq_score(clean, noisy, rate) < identical - 1.0
    assert stoi_score(clean, clean, rate) == pytest.approx(1.0, abs=1e-6)
    assert stoi_score(clean, noisy, rate) < 0.95


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_pesq_on_silence_raises_for_the_caller_to_report() -> None:
    with pytest.raises(Exception, match="[Nn]o utterances"):
        pesq_score(np.zeros(16000, np.float32), np.zeros(16000, np.float32), 16000)


def test_snr_buckets() -> None:
    labels = [snr_bucket(s) for s in (-7.0, -5.0, -0.1, 0.0, 4.99, 12.0, 19.9, 20.0, 20.5)]
    assert labels == ["<-5", "[-5,0)", "[-5,0)", "[0,5)", "[0,5)", "[10,15)", "[15,20]", "[15,20]", ">20"]
    assert snr_bucket(None) is None and snr_bucket(float("nan")) is None


def test_si_snr_of_a_silent_reference_is_undefined() -> None:
    assert math.isnan(si_snr(np.ones(100), np.zeros(100)))
