"""flite in this process, and espeak-ng through its fork-per-utterance server, give the very samples of
the ``flite`` and ``espeak-ng`` programs, utterance after utterance."""

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


@pytest.fixture(scope="module")
def espeak_voices() -> list[tuple[str, str | None]]:
    if not shutil.which("espeak-ng") or native.espeak("en-us", 175, 50, "a") is None:
        pytest.skip("espeak-ng or its library is not installed")
    inventory = engines.discover_engines()
    variants = [None, *inventory.espeak_variants]
    return [(voice, variants[i % len(variants)]) for i, voice in enumerate(inventory.espeak_dialects)]


def test_espeak_through_the_server_equals_the_program_sample_for_sample(espeak_voices):
    # Voices, variants, pitches and tempos in turn, and the first request again at the end: a server that
    # let one utterance's state reach the next would fail here (espeak-ng's library alone does).
    picks = [espeak_voices[0], espeak_voices[-1], espeak_voices[len(espeak_voices) // 2]]
    requests = [
        SynthRequest(Speaker(f"s{i}", "espeak", voice, variant=variant, pitch=pitch, rate=rate), text)
        for i, ((voice, variant), pitch, rate, text) in enumerate(
            zip(
                picks,
                (1.0, 1.3, 0.7),
                (1.0, 0.8, 1.4),
                ("alpha bravo two over", "roger, niner five", "say again"),
            )
        )
    ]
    requests.append(requests[0])
    for request in requests:
        ours, rate = engines.synth_espeak(request)
        program, program_rate = engines.synth_espeak(request, in_process=False)
        assert rate == program_rate, request.speaker.describe()
        assert ours.dtype == program.dtype == np.float32
        np.testing.assert_array_equal(ours, program, err_msg=request.speaker.describe())


def test_a_language_name_is_accepted_like_the_program_does(espeak_voices):
    # "en-gb" is no voice file's name: the program falls back to a voice for that language.
    request = SynthRequest(Speaker("s", "espeak", "en-gb", variant="f2"), "alpha")
    ours, _ = engines.synth_espeak(request)
    program, _ = engines.synth_espeak(request, in_process=False)
    np.testing.assert_array_equal(ours, program)


def _espeak_wave(request: SynthRequest) -> np.ndarray:
    return engines.synth_espeak(request)[0]


def test_a_forked_worker_gets_its_own_server(espeak_voices):
    # The corpus's workers are forked from a process that may have a server already: sharing its pipes
    # would mix up the two processes' answers.
    import multiprocessing

    request = SynthRequest(Speaker("s", "espeak", espeak_voices[0][0]), "alpha bravo")
    expected, _ = engines.synth_espeak(request, in_process=False)
    np.testing.assert_array_equal(_espeak_wave(request), expected)  # this process's server is running
    with multiprocessing.get_context("fork").Pool(2) as pool:
        waves = pool.map(_espeak_wave, [request] * 4)
    for wave in waves:
        np.testing.assert_array_equal(wave, expected)
    np.testing.assert_array_equal(_espeak_wave(request), expected)


def test_if_the_server_fails_the_program_is_used(espeak_voices, monkeypatch):
    request = SynthRequest(Speaker("s", "espeak", espeak_voices[0][0]), "alpha")
    expected, _ = engines.synth_espeak(request, in_process=False)

    def broken(*args):
        raise RuntimeError("espeak-ng: the synthesis server stopped")

    monkeypatch.setattr(native, "espeak", broken)
    wave, _ = engines.synth_espeak(request)
    np.testing.assert_array_equal(wave, expected)


def test_an_unknown_espeak_voice_is_an_error(espeak_voices):
    with pytest.raises(RuntimeError, match="nosuchvoice"):
        native.espeak("nosuchvoice", 175, 50, "alpha")
