"""The real-speech SE set (``gradremedy data real-speech``): a small fake Asterisk tree, and the installed
Debian packages when they are there."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from gradremedy.cli import main
from gradremedy.data.check import check_directory
from gradremedy.data.kaldi_dir import read_data_dir
from gradremedy.data.real_speech import (
    DURATION_RANGE,
    SOUNDS_ROOT,
    build_real_speech,
    find_language,
    recording_files,
)
from gradremedy.errors import UserError

NOISES = ("white", "pink", "babble", "radio")  # no sound effects: the tests do not depend on openttd-opensfx


def _prompt(path, seconds: float, freq: float, rate: int = 8000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    samples = np.concatenate([np.zeros(rate // 5), 0.3 * np.sin(2 * np.pi * freq * t), np.zeros(rate // 4)])
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples.astype(np.float32), rate, subtype="PCM_16")


@pytest.fixture
def sounds(tmp_path):
    """Two fake languages laid out like Debian's (``<lang>`` a link to the speaker's folder), a Spanish
    folder that is Allison Smith's, prompts of 0.4-1.2 s, a silence file and a beep."""
    root = tmp_path / "sounds"
    for k, (lang, speaker) in enumerate(
        (("fr", "fr_CA_f_June"), ("it", "it_IT_m_Carlo"), ("es", "es_MX_f_Allison"))
    ):
        for n in range(6):
            _prompt(
                root / speaker / ("digits" if n % 2 else "") / f"p{n}.wav", 0.4 + 0.16 * n, 200 + 50 * n + k
            )
        _prompt(root / speaker / "beep.wav", 0.5, 1000)
        (root / speaker / "silence").mkdir()
        soundfile.write(root / speaker / "silence" / "1.wav", np.zeros(8000, np.float32), 8000)
        (root / lang).symlink_to(root / speaker)
    return root


def test_builds_an_untranscribed_kaldi_dir_with_references(tmp_path, sounds):
    out = tmp_path / "rs"
    summary = build_real_speech(
        out, languages=["fr", "it"], num_utts=10, seed=3, sounds_root=sounds, noise_types=NOISES
    )
    assert summary.written == 10
    data = read_data_dir(out, untranscribed="se_only")
    assert len(data) == 10 and not (out / "text").exists()
    assert check_directory(out, untranscribed="se_only") == []
    assert check_directory(out) != []  # without the opt-in, the missing transcripts are problems
    speakers = [u.speaker for u in data]
    assert speakers.count("fr_CA_f_June") == speakers.count("it_IT_m_Carlo") == 5
    for utt in data:
        assert utt.text is None and utt.clean != utt.wav and utt.condition in NOISES
        assert -5.0 <= utt.snr <= 20.0
        noisy, clean = soundfile.info(utt.wav), soundfile.info(utt.clean)
        assert noisy.samplerate == clean.samplerate == 8000 and noisy.frames == clean.frames
        assert 0.4 + 2 * 0.1 <= noisy.duration <= DURATION_RANGE[1] + 0.01  # one prompt and pads; <= 4 s
        x, _ = soundfile.read(utt.clean)
        assert 0 < np.max(np.abs(x)) < 1.0
    spec = json.loads((out / "audio" / "done" / f"{data.ids[0]}.json").read_text())
    assert spec["files"] and all("beep" not in f and "silence" not in f for f in spec["files"])
    manifest = json.loads((out / "real_speech.json").read_text())
    assert manifest["settings"]["languages"] == ["fr", "it"] and "se_only" in manifest["use"]


def test_the_build_is_deterministic_and_resumes(tmp_path, sounds):
    options = dict(languages=["fr"], num_utts=4, seed=5, sounds_root=sounds, noise_types=NOISES)
    first, second = tmp_path / "a", tmp_path / "b"
    build_real_speech(first, **options)
    build_real_speech(second, **options)
    for name in sorted(p.name for p in (first / "audio" / "noisy").iterdir()):
        a, _ = soundfile.read(first / "audio" / "noisy" / name)
        b, _ = soundfile.read(second / "audio" / "noisy" / name)
        assert np.array_equal(a, b)
    (first / "audio" / "done" / "fr_CA_f_June-00002.json").unlink()
    assert build_real_speech(first, **options).written == 1
    assert build_real_speech(first, **{**options, "seed": 6}).written == 4


def test_missing_languages_and_the_test_voice_are_one_line_errors(tmp_path, sounds):
    with pytest.raises(
        UserError, match="no 'ru' recordings; install the Debian package 'asterisk-core-sounds-ru-wav'"
    ):
        find_language("ru", sounds)
    with pytest.raises(UserError, match="es_MX_f_Allison: the 'es' recordings are Allison Smith's"):
        build_real_speech(
            tmp_path / "x", languages=["es"], num_utts=2, sounds_root=sounds, noise_types=NOISES
        )
    with pytest.raises(UserError, match="--languages de: need some of es, fr, it, ru"):
        build_real_speech(tmp_path / "x", languages=["de"], num_utts=2, sounds_root=sounds)
    assert find_language("fr", sounds).name == "fr_CA_f_June"
    assert all("beep" not in p.name and p.parent.name != "silence" for p in recording_files(sounds / "fr"))


def test_the_command_line_builds_the_set(tmp_path, sounds, monkeypatch):
    import gradremedy.data.real_speech as real_speech

    monkeypatch.setattr(real_speech, "corpus_noises", lambda types: (NOISES, None))
    out = tmp_path / "cli"
    args = [
        "data",
        "real-speech",
        "--out",
        str(out),
        "--languages",
        "it",
        "--num-utts",
        "3",
        "--sounds",
        str(sounds),
    ]
    assert main(args) == 0
    assert len(read_data_dir(out, untranscribed="se_only")) == 3
    assert main([*args[:4], "--languages", "es", "--num-utts", "3", "--sounds", str(sounds)]) != 0


@pytest.mark.skipif(
    not all((SOUNDS_ROOT / lang).is_dir() for lang in ("fr", "it", "ru")),
    reason="needs asterisk-core-sounds-{fr,it,ru}-wav",
)
def test_the_installed_packages_give_a_set(tmp_path):
    out = tmp_path / "installed"
    build_real_speech(out, num_utts=6, seed=1, noise_types=NOISES)
    data = read_data_dir(out, untranscribed="se_only")
    assert len(data) == 6 and len({u.speaker for u in data}) == 3
    assert all("allison" not in u.speaker.lower() for u in data)
    assert check_directory(out, untranscribed="se_only") == []
