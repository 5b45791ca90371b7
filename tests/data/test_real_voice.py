"""The real-voice test set built from a small fake Asterisk tree (tones laid out like the package's files)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile

from gradremedy.cli import main
from gradremedy.data.check import check_directory
from gradremedy.data.kaldi_dir import read_data_dir
from gradremedy.data.real_voice import (
    DEBIAN_PACKAGE,
    WORD_FILES,
    build_real_voice,
    real_voice_ready,
    real_voice_sentence,
    trim_silence,
)
from gradremedy.data.synth.text import tiny_vocabulary
from gradremedy.errors import UserError

NOISES = ("white", "pink", "babble", "radio")  # no sound effects: the tests do not depend on openttd-opensfx


@pytest.fixture
def sounds(asterisk_sounds):
    return asterisk_sounds


def test_every_word_is_in_the_tiny_vocabulary_and_every_sentence_uses_them():
    vocabulary = set(tiny_vocabulary())
    assert set(WORD_FILES) <= vocabulary
    rng = np.random.default_rng(0)
    for _ in range(300):
        words = real_voice_sentence(rng).split()
        assert 3 <= len(words) <= 7 and set(words) <= set(WORD_FILES)


def test_trim_silence_keeps_the_word_and_a_margin():
    rate = 16000
    word = np.ones(rate // 2)
    x = np.concatenate([np.zeros(rate), word, np.zeros(rate)])
    trimmed = trim_silence(x, rate, margin=0.03)
    assert len(trimmed) == len(word) + 2 * int(0.03 * rate)
    assert np.array_equal(trim_silence(np.zeros(100), rate), np.zeros(100))


def test_builds_clean_and_noisy_kaldi_dirs(tmp_path, sounds):
    out = tmp_path / "rv"
    summary = build_real_voice(
        out, sample_rate=8000, seed=3, num_utts=12, sounds_dir=sounds, noise_types=NOISES
    )
    assert summary.written == 12 and real_voice_ready(out, 8000, seed=3, num_utts=12)
    assert not real_voice_ready(out, 16000, seed=3, num_utts=12)
    clean, noisy = read_data_dir(out / "clean"), read_data_dir(out / "noisy")
    assert clean.ids == noisy.ids and len(clean) == 12
    assert check_directory(out / "clean") == [] and check_directory(out / "noisy") == []
    for c, n in zip(clean, noisy):
        assert c.text == n.text and set(c.text.split()) <= set(WORD_FILES)
        assert c.wav == c.clean == n.clean != n.wav  # the clean file is both input and reference
        assert c.speaker == "allison" and n.condition in NOISES and -5.0 <= n.snr <= 20.0
        info_clean, info_noisy = soundfile.info(c.wav), soundfile.info(n.wav)
        assert info_clean.samplerate == info_noisy.samplerate == 8000
        assert info_clean.frames == info_noisy.frames
        words = len(c.text.split())
        assert info_clean.duration > words * 0.4 + 0.2  # each word's tone, gaps and padding
        x, _ = soundfile.read(c.wav)
        assert 0 < np.max(np.abs(x)) < 1.0
    assert json.loads((out / "real_voice.json").read_text())["use"].startswith("testing only")


def test_noisy_is_mixed_at_its_snr(tmp_path, sounds):
    out = tmp_path / "rv"
    build_real_voice(out, sample_rate=16000, num_utts=8, sounds_dir=sounds, noise_types=("white",))
    for utt in read_data_dir(out / "noisy"):
        clean, _ = soundfile.read(utt.clean)
        noisy, _ = soundfile.read(utt.wav)
        snr = 10 * math.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
        assert snr == pytest.approx(utt.snr, abs=0.5)  # 16-bit rounding and one common gain


def test_deterministic_by_seed_and_resumable(tmp_path, sounds):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 1), (b, 1), (c, 2)):
        build_real_voice(out, num_utts=6, seed=seed, sounds_dir=sounds, noise_types=NOISES)
    for name in ("clean", "noisy"):
        assert (a / name / "text").read_text() == (b / name / "text").read_text()
        assert (a / name / "utt2cond").read_text() == (b / name / "utt2cond").read_text()
    for wav in sorted((a / "audio").glob("*/*.wav")):
        assert wav.read_bytes() == (b / wav.relative_to(a)).read_bytes()
    assert (a / "noisy" / "text").read_text() != (c / "noisy" / "text").read_text()

    victim = a / "audio" / "noisy" / "allison-00002.wav"
    victim.unlink()
    (a / "audio" / "noisy" / ".allison-00003.wav.x.tmp").write_bytes(b"half")
    stamp = (a / "audio" / "clean" / "allison-00001.wav").stat().st_mtime_ns
    summary = build_real_voice(a, num_utts=6, seed=1, sounds_dir=sounds, noise_types=NOISES)
    assert summary.written == 1 and victim.read_bytes() == (b / victim.relative_to(a)).read_bytes()
    assert (a / "audio" / "clean" / "allison-00001.wav").stat().st_mtime_ns == stamp
    assert not list((a / "audio").glob("*/.*.tmp"))


def test_missing_package_is_one_line_naming_it(tmp_path, capsys):
    with pytest.raises(UserError, match=DEBIAN_PACKAGE):
        build_real_voice(tmp_path / "rv", sounds_dir=tmp_path / "nowhere")
    assert (
        main(["data", "real-voice", "--out", str(tmp_path / "rv"), "--sounds", str(tmp_path / "nowhere")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and DEBIAN_PACKAGE in err and "nowhere" in err


def test_a_missing_word_file_is_named(tmp_path, sounds):
    (sounds / "phonetic" / "q_p.wav").unlink()
    with pytest.raises(UserError, match=r"q_p\.wav.*'quebec'"):
        build_real_voice(tmp_path / "rv", sounds_dir=sounds)


def test_cli_builds_the_set(tmp_path, sounds, capsys):
    out = tmp_path / "rv"
    argv = [
        "data",
        "real-voice",
        "--out",
        str(out),
        "--sounds",
        str(sounds),
        "--num-utts",
        "3",
        "--seed",
        "2",
    ]
    assert main(argv) == 0
    assert len(read_data_dir(out / "noisy")) == 3 and real_voice_ready(out, 8000, seed=2, num_utts=3)
    assert "3 utterances" in capsys.readouterr().out
