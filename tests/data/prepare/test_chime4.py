"""CHiME-4 preparation on a tiny fake tree with the official layout."""

from __future__ import annotations

import json
import logging

import pytest

from gradremedy.data.check import check_directory
from gradremedy.data.kaldi_dir import read_data_dir
from gradremedy.data.prepare.chime4 import clean_wsj_transcript, prepare_chime4
from gradremedy.errors import DataError

from ..helpers import tone, write_wav


def build_tree(root, *, with_ext=True, json_annotations=True):
    data = root / "CHiME3" / "data"
    isolated = data / "audio" / "16kHz" / "isolated"
    rows = {}

    def add(split, env, kind, speaker, wsj, text, seconds=0.3):
        base = f"{speaker}_{wsj}_{env.upper()}"
        for ch in (1, 5):
            write_wav(isolated / f"{split}_{env}_{kind}" / f"{base}.CH{ch}.wav", tone(seconds, freq=200 + ch))
        if kind == "simu" and with_ext:
            ext = isolated.parent / "isolated_ext" / f"{split}_{env}_simu" / f"{base}.CH5.Clean.wav"
            write_wav(ext, tone(seconds) * 0.5)
        rows.setdefault(f"{split}_{kind}", []).append(
            {"speaker": speaker, "wsj_name": wsj, "environment": env.upper(), "dot": text, "prompt": text}
        )

    add("tr05", "bus", "real", "F01", "22GC010A", "The [door_slam] market *rallied*.")
    add("tr05", "caf", "simu", "011", "01AC020B", "Prices rose sharply")
    add("dt05", "ped", "real", "F03", "050C0101", "<Stocks> fell")
    add("dt05", "ped", "simu", "F03", "050C0101", "<Stocks> fell")
    add("et05", "str", "simu", "M05", "440C0201", "Bonds~ held steady")
    write_wav(isolated / "tr05_org" / "011_01AC020B_ORG.wav", tone(0.3))
    write_wav(isolated / "dt05_bth" / "F03_050C0101_BTH.CH0.wav", tone(0.3))
    write_wav(isolated / "dt05_bus_real" / "F09_NOTEXT00_BUS.CH5.wav", tone(0.2))  # no transcript
    if json_annotations:
        for name, items in rows.items():
            (data / "annotations").mkdir(parents=True, exist_ok=True)
            (data / "annotations" / f"{name}.json").write_text(json.dumps(items))
    else:
        for name, items in rows.items():
            (data / "transcriptions").mkdir(parents=True, exist_ok=True)
            lines = [f"{i['dot']} ({i['speaker']}_{i['wsj_name']}_{i['environment']})" for i in items]
            (data / "transcriptions" / f"{name}.dot_all").write_text("\n".join(lines) + "\n")
    return root


def test_prepare_writes_train_valid_test(tmp_path, caplog):
    build_tree(tmp_path / "corpus")
    with caplog.at_level(logging.WARNING):
        counts = prepare_chime4(tmp_path / "corpus", tmp_path / "out")
    assert counts == {"train": 2, "valid": 2, "test": 1}
    assert "skipped 1 utterance(s) without a transcript" in caplog.text
    train = read_data_dir(tmp_path / "out" / "train")
    assert train.ids == ["011_01AC020B_CAF_SIMU", "F01_22GC010A_BUS_REAL"]
    real, simu = train["F01_22GC010A_BUS_REAL"], train["011_01AC020B_CAF_SIMU"]
    assert real.wav.endswith("tr05_bus_real/F01_22GC010A_BUS.CH5.wav") and real.clean is None
    assert simu.clean.endswith("isolated_ext/tr05_caf_simu/011_01AC020B_CAF.CH5.Clean.wav")
    assert real.text == "the market rallied" and real.speaker == "F01"
    assert (real.condition, simu.condition) == ("bus_real", "caf_simu")
    assert {u.text for u in read_data_dir(tmp_path / "out" / "valid")} == {"stocks fell"}
    for split in ("train", "valid", "test"):
        assert check_directory(tmp_path / "out" / split) == []
        assert (tmp_path / "out" / split / "spk2utt").is_file()


def test_fallback_clean_and_transcription_files(tmp_path, caplog):
    build_tree(tmp_path / "corpus", with_ext=False, json_annotations=False)
    with caplog.at_level(logging.WARNING):
        prepare_chime4(tmp_path / "corpus" / "CHiME3", tmp_path / "out")
    train, valid = read_data_dir(tmp_path / "out" / "train"), read_data_dir(tmp_path / "out" / "valid")
    assert train["011_01AC020B_CAF_SIMU"].clean.endswith("tr05_org/011_01AC020B_ORG.wav")
    assert valid["F03_050C0101_PED_SIMU"].clean.endswith("dt05_bth/F03_050C0101_BTH.CH0.wav")
    assert train["F01_22GC010A_BUS_REAL"].text == "the market rallied"
    assert "1 simulated utterance(s) without a clean reference" in caplog.text  # et05 has no booth file


def test_other_channel(tmp_path):
    build_tree(tmp_path / "corpus")
    prepare_chime4(tmp_path / "corpus", tmp_path / "out", channel=1)
    assert read_data_dir(tmp_path / "out" / "train")["F01_22GC010A_BUS_REAL"].wav.endswith(".CH1.wav")


def test_not_a_chime_tree(tmp_path):
    with pytest.raises(DataError, match="not a CHiME-4 distribution"):
        prepare_chime4(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("The [door_slam] market *rallied*.", "the market rallied"),
        ("<Stocks> fell~ \\ now:", "stocks fell now"),
    ],
)
def test_wsj_markup(raw, clean):
    assert clean_wsj_transcript(raw) == clean
