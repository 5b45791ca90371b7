"""LibriSpeech and Common Voice preparation on small fake trees, mixed with noise or as they are."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from gradremedy.cli import main
from gradremedy.data.audio import load_audio
from gradremedy.data.check import check_directory
from gradremedy.data.kaldi_dir import read_data_dir
from gradremedy.data.prepare import commonvoice, librispeech
from gradremedy.data.prepare.mixing import SNR_RANGE
from gradremedy.errors import DataError

from ..helpers import write_wav

RATE = 16000


def speechlike(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * rng.uniform(150, 300) * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


def build_librispeech(root, subsets=("train-clean-100", "dev-clean", "test-clean")):
    """Two speakers per subset, one chapter each, two utterances each; one line without its FLAC file."""
    k = 0
    for subset in subsets:
        for speaker in (19 + k, 26 + k):
            chapter = root / "LibriSpeech" / subset / str(speaker) / "198"
            lines = []
            for n in range(2):
                utt = f"{speaker}-198-{n:04d}"
                write_wav(chapter / f"{utt}.flac", speechlike(0.6 + 0.1 * n, speaker + n))
                lines.append(f"{utt} HE DIDN'T SAY, MISTER {subset.upper()}")
            lines.append(f"{speaker}-198-0009 NO AUDIO FOR THIS ONE")
            (chapter / f"{speaker}-198.trans.txt").write_text("\n".join(lines) + "\n")
        k += 100
    return root


def test_librispeech_mixed(tmp_path, caplog):
    root, out = build_librispeech(tmp_path / "corpus"), tmp_path / "out"
    counts = librispeech.prepare(root, out, seed=2, jobs=1)
    assert counts == {"train": 4, "valid": 4, "valid_clean": 4, "test": 4, "test_clean": 4}
    assert "without their FLAC file" in caplog.text
    for split in ("train", "valid", "test", "valid_clean", "test_clean"):
        assert check_directory(out / split) == [], split
    train = read_data_dir(out / "train")
    assert train.ids[0] == "119-198-0000" or train.ids[0].count("-") == 2
    for utt in train:
        assert utt.text.startswith("he didn't say mister train clean 100")
        assert utt.speaker == utt.utt_id.split("-")[0]
        assert utt.clean.endswith(f"{utt.utt_id}.flac") and "LibriSpeech" in utt.clean
        assert utt.wav.endswith(".flac") and str(out / "audio" / "train") in utt.wav
        assert SNR_RANGE[0] <= utt.snr <= SNR_RANGE[1] and utt.condition
        clean, noisy = load_audio(utt.clean, RATE), load_audio(utt.wav, RATE)
        assert len(clean) == len(noisy) and not np.allclose(clean, noisy, atol=1e-3)
    clean_test = read_data_dir(out / "test_clean")
    assert all(u.clean is None and "LibriSpeech" in u.wav for u in clean_test)
    assert json.loads((out / "prepare.json").read_text())["seed"] == 2


def test_librispeech_mix_is_deterministic_resumes_and_refuses_another_seed(tmp_path):
    root = build_librispeech(tmp_path / "corpus", subsets=("dev-clean",))
    a, b = tmp_path / "a", tmp_path / "b"
    librispeech.prepare(root / "LibriSpeech" / "dev-clean", a, seed=1, jobs=1)  # a subset folder as root
    librispeech.prepare(root, b, seed=1, jobs=2)
    for flac in sorted((a / "audio").rglob("*.flac")):
        assert flac.read_bytes() == (b / flac.relative_to(a)).read_bytes()
    assert (a / "valid" / "utt2cond").read_text() == (b / "valid" / "utt2cond").read_text()
    victim = next((a / "audio" / "valid").glob("*.flac"))
    victim.unlink()
    librispeech.prepare(root, a, seed=1, jobs=1)
    assert victim.read_bytes() == (b / victim.relative_to(a)).read_bytes()
    with pytest.raises(DataError, match="seed 1"):
        librispeech.prepare(root, a, seed=5, jobs=1)


def test_librispeech_without_noise_is_asr_only(tmp_path):
    root, out = build_librispeech(tmp_path / "corpus"), tmp_path / "out"
    assert main(["data", "prepare", "librispeech", str(root), "--out", str(out), "--noise", "none"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["test", "train", "valid"]
    utts = list(read_data_dir(out / "valid"))
    assert len(utts) == 4 and all(u.clean is None and u.wav.endswith(".flac") for u in utts)
    assert not (out / "audio").exists()


def test_prepare_takes_the_folder_as_path_or_root(tmp_path, capsys):
    root = build_librispeech(tmp_path / "corpus", subsets=("dev-clean",))
    out = tmp_path / "out"
    assert (
        main(["data", "prepare", "librispeech", "--root", str(root), "--out", str(out), "--noise", "none"])
        == 0
    )
    assert len(read_data_dir(out / "valid")) == 4
    assert main(["data", "prepare", "librispeech", "--out", str(out)]) == 2
    assert "give the corpus folder (PATH)" in capsys.readouterr().err


def test_librispeech_bad_trees(tmp_path):
    with pytest.raises(DataError, match="not a LibriSpeech folder"):
        librispeech.prepare(tmp_path, tmp_path / "out")
    root = build_librispeech(tmp_path / "c", subsets=("dev-clean",))
    trans = next(root.rglob("*.trans.txt"))
    trans.write_text("garbage\n")
    with pytest.raises(DataError, match=rf"{trans.name}:1"):
        librispeech.prepare(root, tmp_path / "out")


# ----------------------------------------------------------------------------------------- Common Voice


HEADER = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\tlocale"


def build_commonvoice(root, rate=48000):
    lang = root / "cv-corpus-17.0" / "en"
    rows = {"train": [], "dev": [], "test": []}
    for k, split in enumerate(["train", "train", "train", "dev", "test", "test"]):
        name = f"common_voice_en_{100 + k}.mp3"
        (lang / "clips").mkdir(parents=True, exist_ok=True)
        soundfile.write(lang / "clips" / name, speechlike(0.8, k, rate), rate, format="MP3")
        client = f"{k % 2:x}" * 40
        rows[split].append(f'{client}\t{name}\ts{k}\t"Hello," she said — it\'s {k}!\t\t2\t0\t\t\ten')
    rows["train"].append(f"{'f' * 40}\tcommon_voice_en_999.mp3\tsx\tmissing clip\t\t2\t0\t\t\ten")
    rows["dev"].append(f"{'e' * 40}\tcommon_voice_en_100.mp3\tsy\t?!\t\t2\t0\t\t\ten")
    for split, lines in rows.items():
        (lang / f"{split}.tsv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return root / "cv-corpus-17.0"


@pytest.mark.skipif("MP3" not in soundfile.available_formats(), reason="this libsndfile cannot write MP3")
def test_commonvoice_mixed_reads_the_mp3_clips(tmp_path, caplog):
    root, out = build_commonvoice(tmp_path), tmp_path / "out"
    assert main(["data", "prepare", "commonvoice", str(root), "--out", str(out), "--seed", "3"]) == 0
    assert "1 row(s) without their clip" in caplog.text and "1 with an empty sentence" in caplog.text
    train = read_data_dir(out / "train")
    assert (
        len(train) == 3 and len(read_data_dir(out / "valid")) == 1 and len(read_data_dir(out / "test")) == 2
    )
    for utt in train:
        assert utt.text.startswith("hello she said it's ")
        assert utt.utt_id.split("-")[1].startswith("common_voice_en_") and len(utt.speaker) == 12
        assert utt.clean.endswith(".flac") and str(out / "audio" / "train" / "clean") in utt.clean
        assert soundfile.info(utt.wav).samplerate == soundfile.info(utt.clean).samplerate == RATE
        assert len(load_audio(utt.clean, RATE)) == len(load_audio(utt.wav, RATE))
    for split in ("train", "valid", "test", "test_clean"):
        assert check_directory(out / split) == [], split
    assert all(u.wav.endswith(".mp3") for u in read_data_dir(out / "test_clean"))


def test_commonvoice_without_mp3_support_uses_ffmpeg_or_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(commonvoice.soundfile, "available_formats", lambda: {"WAV": "wav"})
    monkeypatch.setattr(commonvoice.shutil, "which", lambda name: "/usr/bin/ffmpeg")
    entry = commonvoice.mp3_entry(tmp_path / "a b.mp3")
    assert entry.startswith("ffmpeg ") and entry.endswith(" |") and "'" in entry
    monkeypatch.setattr(commonvoice.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="cannot read MP3.*ffmpeg"):
        commonvoice.mp3_entry(tmp_path / "a.mp3")


def test_commonvoice_bad_trees(tmp_path):
    with pytest.raises(DataError, match="no clips/ folder"):
        commonvoice.prepare(tmp_path, tmp_path / "out")
    lang = tmp_path / "en"
    (lang / "clips").mkdir(parents=True)
    (lang / "train.tsv").write_text("path\tsentence\nx.mp3\thello\n")
    with pytest.raises(DataError, match=r"train\.tsv:1: header lacks column\(s\) client_id"):
        commonvoice.prepare(lang, tmp_path / "out")
