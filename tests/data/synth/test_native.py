"""flite in this process gives the very samples of the ``flite`` program, utterance after utterance."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from gradremedy.data.synth import engines, native
from gradremedy.data.synth.engines import Speaker, SynthRequest


@pytest.fixture(scope="module")
def flite_voices() -> list[str]:
    if not shutil.which("flite") or native.flite("kal", 100.0, 1.0, "a") is None:
        pytest.skip("flite or its library is not installed")
    return engines.discover_engines().flite_voices


def test_in_process_flite_equals_the_program_sample_for_sample(flite_voices):
    # Several voices, pitches and tempos in one process, and the first request again at the end: a
    # library that carried state from one utterance to the next would fail here.
    requests = [
        SynthRequest(Speaker(f"s{i}", "flite", voice, pitch=pitch, rate=rate), text)
        for i, (voice, pitch, rate, text) in enumerate(
            [
                (flite_voices[0], 1.0, 1.0, "alpha bravo two over"),
                (flite_voices[-1], 1.3, 0.8, "roger that, niner five"),
                (flite_voices[len(flite_voices) // 2], 0.7, 1.4, "say again"),
            ]
        )
    ]
    requests.append(requests[0])
    for request in requests:
        ours, rate = engines.synth_flite(request)
        program, program_rate = engines.synth_flite(request, in_process=False)
        assert rate == program_rate, request.speaker.describe()
        assert ours.dtype == program.dtype == np.float32
        np.testing.assert_array_equal(ours, program, err_msg=request.speaker.describe())


def test_without_the_library_the_program_is_used(flite_voices, monkeypatch):
    request = SynthRequest(Speaker("s", "flite", flite_voices[0]), "alpha")
    expected, _ = engines.synth_flite(request, in_process=False)
    monkeypatch.setattr(native, "_engine", lambda: None)
    wave, _ = engines.synth_flite(request)
    np.testing.assert_array_equal(wave, expected)


def test_an_unknown_voice_is_an_error_naming_it(flite_voices):
    with pytest.raises(RuntimeError, match="nosuchvoice"):
        native.flite("nosuchvoice", 100.0, 1.0, "alpha")
