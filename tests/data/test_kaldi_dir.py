"""Reading and writing Kaldi/ESPnet data directories."""

from __future__ import annotations

import os

import pytest

from gradremedy.cli import main as cli_main
from gradremedy.data.audio import load_audio
from gradremedy.data.kaldi_dir import Utterance, parse_data_dir, read_data_dir, write_data_dir
from gradremedy.errors import DataError

from .helpers import make_dir, tone, write_table, write_wav


def test_reads_every_file(tmp_path):
    root = make_dir(tmp_path / "d", [0.5, 0.7, 0.3])
    (root / "feats.scp").write_text("whatever\n")  # unknown files are ignored
    data = read_data_dir(root)
    assert data.ids == ["spk0_utt000", "spk0_utt002", "spk1_utt001"]
    utt = data["spk1_utt001"]
    assert utt.text == "charlie delta echo" and utt.speaker == "spk1"
    assert utt.condition == "white" and utt.snr == 5.0
    assert utt.clean is not None and utt.clean.endswith("clean/spk1_utt001.wav")
    assert utt.segment is None and utt.noisy_spec == utt.wav
    assert data.durations()["spk1_utt001"] == pytest.approx(0.7)


def test_partial_spk1_means_no_clean_reference(tmp_path):
    root = make_dir(tmp_path / "d", [0.5, 0.5])
    lines = (root / "spk1.scp").read_text().splitlines()
    write_table(root / "spk1.scp", lines[:1])  # the second utterance is "real": ASR loss only
    data = read_data_dir(root)
    assert [u.clean is not None for u in data] == [True, False]
    assert parse_data_dir(root)[1] == []


def test_segments_and_recording_keyed_clean(tmp_path):
    root = tmp_path / "d"
    noisy = write_wav(tmp_path / "audio" / "rec.wav", tone(2.0))
    clean = write_wav(tmp_path / "audio" / "rec_clean.wav", tone(2.0) * 0.5)
    write_table(root / "wav.scp", [f"rec {noisy}"])
    write_table(root / "spk1.scp", [f"rec {clean}"])
    write_table(root / "segments", ["rec_a rec 0.00 0.50", "rec_b rec 1.00 1.75"])
    write_table(root / "text", ["rec_a one", "rec_b two"])
    write_table(root / "utt2spk", ["rec_a s", "rec_b s"])
    data = read_data_dir(root)
    b = data["rec_b"]
    assert b.segment == (1.0, 1.75) and b.recording == "rec"
    assert b.noisy_spec == (str(noisy), 1.0, 1.75)
    assert b.clean_spec == (str(clean), 1.0, 1.75)
    assert data.durations() == {"rec_a": pytest.approx(0.5), "rec_b": pytest.approx(0.75)}


def test_relative_paths_resolve_from_cwd_then_ancestors(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    write_wav(corpus / "wav" / "u1.wav", tone(0.2))
    root = corpus / "data" / "train"
    write_table(root / "wav.scp", ["u1 wav/u1.wav"])  # relative to corpus/, two levels up
    write_table(root / "text", ["u1 hello"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert read_data_dir(root)["u1"].wav == str(corpus / "wav" / "u1.wav")
    # the current directory wins when the path exists there
    write_wav(elsewhere / "wav" / "u1.wav", tone(0.2))
    assert read_data_dir(root)["u1"].wav == str(elsewhere / "wav" / "u1.wav")


def test_pipe_entries_keep_their_spaces(tmp_path):
    root = tmp_path / "d"
    write_table(root / "wav.scp", ["u1 sox  in.flac -t wav - |"])
    write_table(root / "text", ["u1   hello   world"])
    utt = read_data_dir(root)["u1"]
    assert utt.wav == "sox  in.flac -t wav - |"
    assert utt.text == "hello   world"


@pytest.mark.parametrize(
    ("name", "rows", "message"),
    [
        ("segments", ["u1 rec 0.5"], r"segments:1: malformed line: expected 4 fields, got 3"),
        ("segments", ["u1 rec 1.0 0.5"], r"segments:1: segment end 0.5 <= start 1"),
        ("segments", ["u1 rec a b"], r"segments:1: bad segment times"),
        ("utt2spk", ["u1 s extra"], r"utt2spk:1: malformed line"),
        ("text", ["u1 hi", "u1 again"], r"text:2: duplicate id \(first on line 1\)"),
        ("utt2cond", ["u1 white loud"], r"utt2cond:1: bad SNR"),
    ],
)
def test_malformed_files_raise_with_file_and_line(tmp_path, name, rows, message):
    root = tmp_path / "d"
    write_table(root / "wav.scp", ["rec a.wav", "u1 a.wav"])
    write_table(root / "text", ["u1 hi"])
    write_table(root / name, rows)
    with pytest.raises(DataError, match=message):
        read_data_dir(root)


def test_missing_directory_and_missing_wav_scp(tmp_path):
    with pytest.raises(DataError, match="data directory not found"):
        read_data_dir(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        read_data_dir(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"wav.scp: missing"):
        read_data_dir(tmp_path / "empty")


def test_write_then_read_round_trip(tmp_path):
    utts = [
        Utterance("b", "/x/rec1.wav", None, "two words", "s1", "bus_real", None, (0.5, 1.25), "rec1"),
        Utterance("a", "/x/rec1.wav", "/x/clean1.wav", "one", "s1", "bus_simu", 5.0, (0.0, 0.5), "rec1"),
        Utterance(
            "c", "/x/rec2.wav", "/x/rec2c.wav", "three", "s2", None, None, (1.0, 2.0), "rec2", (1.0, 2.0)
        ),
    ]
    write_data_dir(tmp_path / "out", utts)
    assert (tmp_path / "out" / "spk2utt").read_text() == "s1 a b\ns2 c\n"
    assert not list((tmp_path / "out").glob(".*.tmp"))
    back = read_data_dir(tmp_path / "out")
    assert [u.utt_id for u in back] == ["a", "b", "c"]
    for original in utts:
        assert back[original.utt_id] == original


def test_written_paths_are_readable_from_another_cwd(tmp_path, monkeypatch):
    root = make_dir(tmp_path / "d", [0.2])
    monkeypatch.chdir(tmp_path)
    data = read_data_dir(os.path.relpath(root))
    assert os.path.isabs(data.utterances[0].wav)


def _piped_dir(tmp_path):
    """A directory whose second wav.scp line is a pipe that would leave a marker file if it ran."""
    root = make_dir(tmp_path / "d", [0.5, 0.5])
    marker = tmp_path / "pipe-ran"
    lines = (root / "wav.scp").read_text().splitlines()
    utt, path = lines[1].split(" ", 1)
    lines[1] = f"{utt} touch {marker} && cat {path} |"
    write_table(root / "wav.scp", lines)
    return root, utt, marker


def test_with_pipes_off_a_pipe_entry_is_refused_naming_file_line_and_utterance(tmp_path, monkeypatch):
    root, utt, marker = _piped_dir(tmp_path)
    assert read_data_dir(root, allow_pipes=True)[utt].wav.endswith("|")  # the Kaldi default: allowed
    with pytest.raises(DataError, match=rf"^{utt}: .*wav\.scp:2: a shell pipe \('touch .*\), refused"):
        read_data_dir(root, allow_pipes=False)
    monkeypatch.setenv("GRADREMEDY_NO_PIPES", "1")  # the process-wide switch (gradremedy --no-pipes)
    with pytest.raises(DataError, match=r"wav\.scp:2: a shell pipe"):
        read_data_dir(root)
    _, problems = parse_data_dir(root)
    assert [p.structural for p in problems] == [True]
    with pytest.raises(DataError, match="refused"):
        load_audio(read_data_dir(root, allow_pipes=True)[utt].wav, 16000)  # never run, even when asked
    assert not marker.exists()


def test_cli_no_pipes_reports_the_pipe_and_runs_nothing(tmp_path, capsys):
    root, utt, marker = _piped_dir(tmp_path)
    assert cli_main(["--no-pipes", "data", "check", str(root)]) == 1
    listed = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{utt}: {root / 'wav.scp'}:2: a shell pipe") for line in listed)
    assert not marker.exists() and "GRADREMEDY_NO_PIPES" not in os.environ  # switch ends with the command
    assert cli_main(["data", "check", str(root)]) == 0  # without the switch the pipe runs (the convention)
    assert marker.exists()
