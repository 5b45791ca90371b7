"""Corpus audio and loaded audio stay bit-identical: sha256 of files rendered from a fixed signal and seed.

The hashes were taken before the corpus synthesiser and the file loader were moved onto one resampler
(``gradremedy.data.audio.resample_by``); any change to resampling, rendering or encoding that alters a
single sample fails here. They hold for the pinned numpy/scipy (FFT convolution and filter design may
round differently in other releases): after an intended change or an upgrade, re-pin them.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from gradremedy.data.audio import load_audio
from gradremedy.data.synth import corpus
from gradremedy.data.synth.engines import Speaker

ENGINE_RATE = 22050
CASES = [
    {"noise": "white", "snr_db": 5.0, "speed": "11/10", "vtlp": "21/20"},
    {"noise": "pink", "snr_db": 0.0, "speed": "9/10", "vtlp": "9/10", "rt60": 0.4, "codec": "mulaw8k",
     "sample_rate": 8000},
    {"noise": "brown", "snr_db": 10.0, "vtlp": "19/20", "codec": "gsm", "bandlimit": True,
     "sample_rate": 8000},
    {"noise": "radio", "snr_db": 3.0, "speed": "11/10", "sample_rate": 22050},
]  # fmt: skip
PINNED = {
    "c0.wav": "f7e51f670e73708423bb658c13fe2d6b321889d1afd15fd8a1a16ff57f63091b",
    "c1.wav": "5303eb40f64ab208ce0474ffd883c76ba5616a86aad5d0fc01ee23714b8c9e5a",
    "c2.wav": "b7f50d635d28e07e1f0fcfd3bc9d408ede773b9d98865c1eb1888062b677e71e",
    "c3.wav": "9f621e700bf11f46e5c24ebf83f903b1d7aa040e75832a63f85fd311292943cc",
    "n0.wav": "0bb3d2aef3ea0c6ac9b6a2a973ac7113e225b2219f92d7ad34d4292bbe59f0ab",
    "n1.wav": "fce3d89075cbe4c727c0629411eb556adb4598dd5b56ea329e14c393f397bd65",
    "n2.wav": "a36f1c7e968bbb7ba4840cfd821b9cdfe0b6c3a462a48c3e4204187ee9851b84",
    "n3.wav": "33bfca12adeef6a8d8322fbac797687158827ce448465b352c68d28d5e219588",
}
LOADED_N1 = {
    16000: "19adec074c66d011e388a9ec19a3989ab10b32868814bf6b9501e7ab576325e4",
    44100: "92a861b09f3fc329008895c5fac5074bb16b60b11215b73e36a920b282a8c322",
}


def _engine_wave() -> np.ndarray:
    """A stand-in for a TTS engine's output: a 180 Hz tone with seeded noise, float32 at 22.05 kHz."""
    t = np.arange(int(1.2 * ENGINE_RATE)) / ENGINE_RATE
    noise = np.random.default_rng(3).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * noise).astype(np.float32)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("pinned")
    base = corpus.UtteranceSpec("sp000-00000", 0, "train", Speaker("sp000", "espeak", "en"), "alpha one")
    for k, changes in enumerate(CASES):
        spec = dataclasses.replace(base, **changes)
        speech = corpus.speech_from_engine(spec, _engine_wave(), ENGINE_RATE)
        noisy, clean = corpus.render(spec, speech, np.random.default_rng(k), [], [])
        corpus.write_wav(out / f"n{k}.wav", noisy, spec.sample_rate)
        corpus.write_wav(out / f"c{k}.wav", clean, spec.sample_rate)
    return out


def test_rendered_corpus_files_are_bit_identical(rendered):
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(rendered.glob("*.wav"))}
    assert hashes == PINNED


@pytest.mark.parametrize("rate", sorted(LOADED_N1))
def test_loaded_and_resampled_audio_is_bit_identical(rendered, rate):
    samples = load_audio(str(rendered / "n1.wav"), rate)  # written at 8 kHz
    assert samples.dtype == np.float32
    assert hashlib.sha256(samples.tobytes()).hexdigest() == LOADED_N1[rate]
