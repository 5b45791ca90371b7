"""RATS preparation on a tiny fake tree with the LDC layout (FLAC audio, 12-column .tab files)."""

from __future__ import annotations

import numpy as np
import pytest

from gradremedy.cli import main
from gradremedy.data.audio import load_audio
from gradremedy.data.check import check_directory
from gradremedy.data.kaldi_dir import read_data_dir
from gradremedy.data.prepare.rats import prepare_rats
from gradremedy.errors import DataError

from ..helpers import write_wav

RATE = 16000


def tab_row(partition, file_id, start, end, label, transcript="", speaker=""):
    return "\t".join(
        [
            partition,
            file_id,
            f"{start:.3f}",
            f"{end:.3f}",
            label,
            "manual",
            speaker,
            "",
            "alv",
            "original",
            transcript,
            "manual" if transcript else "",
        ]
    )


def build_tree(root, offset=0.25):
    """One training session: src + channels A and G; the channels lag the source by ``offset`` s."""
    rng = np.random.default_rng(0)
    source = (0.1 * rng.standard_normal(4 * RATE)).astype(np.float32)
    part = root / "data" / "train"
    write_wav(part / "audio" / "alv" / "src" / "10001_alv_src.flac", source)
    lagged = np.concatenate([np.zeros(int(offset * RATE), np.float32), source])
    for channel in ("A", "G"):
        write_wav(part / "audio" / "alv" / channel / f"10001_20001_alv_{channel}.flac", lagged * 0.8)
    src_rows = [
        tab_row("train", "10001_alv_src", 0.0, 0.5, "NS"),
        tab_row("train", "10001_alv_src", 0.5, 1.5, "S", "marhaba ya sadiq", "spk7"),
        tab_row("train", "10001_alv_src", 2.0, 3.0, "S", "kifak", "spk7"),
    ]
    (part / "kws" / "alv" / "src").mkdir(parents=True)
    (part / "kws" / "alv" / "src" / "10001_alv_src.tab").write_text("\n".join(src_rows) + "\n")
    for channel in ("A", "G"):
        rows = [
            tab_row(
                "train",
                f"10001_20001_alv_{channel}",
                0.5 + offset,
                1.5 + offset,
                "S",
                "Marhaba, ya sadiq!",
                "spk7",
            ),
            tab_row("train", f"10001_20001_alv_{channel}", 1.8 + offset, 2.0 + offset, "NT"),
            tab_row("train", f"10001_20001_alv_{channel}", 2.0 + offset, 3.0 + offset, "S", "kifak", "spk7"),
            tab_row(
                "train", f"10001_20001_alv_{channel}", 3.1 + offset, 3.5 + offset, "S", "", ""
            ),  # SAD only
        ]
        folder = part / "kws" / "alv" / channel
        folder.mkdir(parents=True)
        (folder / f"10001_20001_alv_{channel}.tab").write_text("\n".join(rows) + "\n")
    # dev-1: a channel-A file without a src file: ASR only
    dev = root / "data" / "dev-1"
    write_wav(dev / "audio" / "A" / "10002_20002_alv_A.flac", source[: 2 * RATE])
    (dev / "kws" / "A").mkdir(parents=True)
    (dev / "kws" / "A" / "10002_20002_alv_A.tab").write_text(
        tab_row("dev-1", "10002_20002_alv_A", 0.2, 1.2, "S", "shukran") + "\n"
    )
    return source


def test_prepare_channel_a(tmp_path):
    source = build_tree(tmp_path / "rats")
    counts = prepare_rats(tmp_path / "rats", tmp_path / "out")
    assert counts == {"train": 2, "valid": 1, "test": 0}
    train = read_data_dir(tmp_path / "out" / "train")
    assert train.ids == ["10001_20001_alv_A_00000750", "10001_20001_alv_A_00002250"]
    first = train["10001_20001_alv_A_00000750"]
    assert first.text == "marhaba ya sadiq" and first.speaker == "spk7" and first.condition == "A"
    assert first.segment == (0.75, 1.75) and first.recording == "10001_20001_alv_A"
    assert first.wav.endswith("audio/alv/A/10001_20001_alv_A.flac")
    # the clean reference is the matching src segment, cut by a sox pipe to the noisy length
    clean = load_audio(first.clean_spec, RATE)
    noisy = load_audio(first.noisy_spec, RATE)
    assert len(clean) == len(noisy) == RATE
    np.testing.assert_allclose(clean, source[int(0.5 * RATE) : int(1.5 * RATE)], atol=1e-4)
    np.testing.assert_allclose(noisy, 0.8 * clean, atol=1e-4)  # aligned: the fake channel is the lagged src
    valid = read_data_dir(tmp_path / "out" / "valid")
    assert [u.clean for u in valid] == [None]
    assert check_directory(tmp_path / "out" / "train") == []
    assert check_directory(tmp_path / "out" / "valid") == []


def test_other_channel_and_cli(tmp_path):
    build_tree(tmp_path / "rats")
    prepare_rats(tmp_path / "rats", tmp_path / "out", channel="G")
    assert all(u.recording.endswith("_G") for u in read_data_dir(tmp_path / "out" / "train"))
    assert (
        main(["data", "prepare", "rats", "--root", str(tmp_path / "rats"), "--out", str(tmp_path / "o2")])
        == 0
    )
    assert (tmp_path / "o2" / "train" / "segments").is_file()


def test_bad_input(tmp_path):
    with pytest.raises(DataError, match="no data/ folder"):
        prepare_rats(tmp_path, tmp_path / "out")
    with pytest.raises(DataError, match="channel must be one of"):
        prepare_rats(tmp_path, tmp_path / "out", channel="Z")
    build_tree(tmp_path / "rats")
    bad = tmp_path / "rats" / "data" / "train" / "kws" / "alv" / "A" / "10001_20001_alv_A.tab"
    bad.write_text(tab_row("train", "x", 0, 1, "S", "a").replace("0.000", "zero") + "\n")
    with pytest.raises(DataError, match=r"10001_20001_alv_A.tab:1: bad times"):
        prepare_rats(tmp_path / "rats", tmp_path / "out")
