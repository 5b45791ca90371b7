"""Audio loading: paths, pipes, segments, resampling and downmixing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly

from gradremedy.data.audio import audio_info, load_audio, resample, resampled_length, to_mono
from gradremedy.errors import DataError

from .helpers import tone, write_wav


def test_plain_path_round_trip(tmp_path):
    samples = tone(0.5)
    path = write_wav(tmp_path / "a.wav", samples, subtype="FLOAT")
    loaded = load_audio(str(path), 16000)
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    np.testing.assert_array_equal(loaded, samples)


def test_segment_reads_only_its_samples(tmp_path):
    samples = np.arange(16000, dtype=np.float32) / 16000
    path = write_wav(tmp_path / "ramp.wav", samples, subtype="FLOAT")
    loaded = load_audio((str(path), 0.25, 0.5), 16000)
    np.testing.assert_array_equal(loaded, samples[4000:8000])
    assert audio_info((str(path), 0.25, 0.5)).frames == 4000


def test_segment_past_the_end_is_a_data_error(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(0.5))
    with pytest.raises(DataError, match="past the recording's end"):
        load_audio((str(path), 0.2, 2.0), 16000)


def test_pipe_runs_the_command_and_reads_wav_from_stdout(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(0.3), subtype="PCM_16")
    direct = load_audio(str(path), 16000)
    piped = load_audio(f"cat {path} |", 16000)
    np.testing.assert_array_equal(piped, direct)
    # sox writes a WAV header without a length to a pipe: the info must still know the length
    sox_info = audio_info(f"sox {path} -t wav - |")
    assert sox_info.frames == len(direct) and sox_info.sample_rate == 16000


def test_failing_pipe_names_the_command(tmp_path):
    with pytest.raises(DataError, match="command failed"):
        load_audio(f"cat {tmp_path}/missing.wav |", 16000)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_audio(str(tmp_path / "nope.wav"), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(DataError, match="unreadable"):
        load_audio(str(bad), 16000)


def test_stereo_8k_is_downmixed_and_resampled(tmp_path):
    stereo = tone(1.0, rate=8000, freq=200, channels=2)  # channel 2 is twice channel 1
    path = write_wav(tmp_path / "s.wav", stereo, rate=8000, subtype="FLOAT")
    loaded = load_audio(str(path), 16000)
    assert len(loaded) == 16000
    # a 200 Hz tone at 8 kHz, upsampled, is the same tone at 16 kHz with the mean amplitude
    expected = tone(1.0, rate=16000, freq=200) * 1.5 / 2
    inner = slice(500, -500)  # away from the filter's edge effects
    np.testing.assert_allclose(loaded[inner], expected[inner], atol=2e-3)


def test_to_mono_averages_channels():
    x = np.array([[1.0, 3.0], [2.0, 4.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_mono(x), [2.0, 3.0])
    np.testing.assert_array_equal(to_mono(x[:, :1]), [1.0, 2.0])


@settings(max_examples=30, deadline=None)
@given(
    frames=st.integers(min_value=1, max_value=4000),
    rates=st.sampled_from([(8000, 16000), (16000, 8000), (44100, 16000), (22050, 16000), (16000, 16000)]),
)
def test_resampled_length_matches_resample(frames, rates):
    from_rate, to_rate = rates
    x = np.random.default_rng(frames).standard_normal(frames).astype(np.float32)
    out = resample(x, from_rate, to_rate)
    assert len(out) == resampled_length(frames, from_rate, to_rate)
    assert out.dtype == np.float32


def test_resample_keeps_a_low_tone():
    x = tone(0.5, rate=44100, freq=300)
    y = resample(x, 44100, 16000)
    expected = tone(0.5, rate=16000, freq=300)
    np.testing.assert_allclose(y[200:-200], expected[200 : len(y) - 200], atol=2e-3)


@given(
    frames=st.integers(min_value=1, max_value=4000),
    rates=st.sampled_from([(8000, 16000), (16000, 8000), (44100, 16000), (48000, 16000)]),
)
def test_resample_is_resample_poly_with_its_default_filter(frames, rates):
    from_rate, to_rate = rates
    x = np.random.default_rng(frames).standard_normal(frames).astype(np.float32)
    common = math.gcd(from_rate, to_rate)
    expected = resample_poly(x, to_rate // common, from_rate // common)
    np.testing.assert_allclose(resample(x, from_rate, to_rate), expected, rtol=0, atol=1e-5)
