"""``gradremedy data check``: one test per kind of problem, each on a small broken directory."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from gradremedy.cli import main
from gradremedy.data.check import bad_utterances, blocking_problems, check_directory
from gradremedy.data.tokenizer import Tokenizer
from gradremedy.errors import DataError

from .helpers import make_dir, tone, write_table, write_wav

UTT0, UTT1, UTT2 = "spk0_utt000", "spk1_utt001", "spk0_utt002"


@pytest.fixture
def good(tmp_path):
    return make_dir(tmp_path / "d", [0.3, 0.4, 0.5])


def only(problems, utt_id=None):
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert problem.utt_id == utt_id
    text = str(problem)
    assert "\n" not in text and (utt_id is None or text.startswith(f"{utt_id}: "))
    return text


def test_clean_directory_has_no_problems(good, capsys):
    assert check_directory(good) == []
    assert main(["data", "check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out


def test_missing_audio_file(good):
    (good / "wav" / f"{UTT1}.wav").unlink()
    assert "audio file not found" in only(check_directory(good), UTT1)


def test_corrupt_audio_file(good):
    (good / "clean" / f"{UTT2}.wav").write_bytes(b"RIFF1234WAVEjunkjunkjunk")
    text = only(check_directory(good), UTT2)
    assert "unreadable audio" in text and f"clean/{UTT2}.wav" in text


def test_zero_length_audio(good):
    write_wav(good / "wav" / f"{UTT0}.wav", np.zeros(0, dtype=np.float32))
    write_wav(good / "clean" / f"{UTT0}.wav", np.zeros(0, dtype=np.float32))
    problems = check_directory(good)
    assert len(problems) == 2 and all("empty audio" in str(p) for p in problems)
    assert bad_utterances(problems) == {UTT0}


def test_nan_and_inf_samples(good):
    samples = tone(0.3)
    samples[100], samples[200] = np.nan, np.inf
    write_wav(good / "wav" / f"{UTT0}.wav", samples, subtype="FLOAT")
    assert "2 NaN or infinite sample(s)" in only(check_directory(good), UTT0)


def test_float_clipping_above_full_scale(good):
    samples = tone(0.4) * 5  # peak 1.5
    write_wav(good / "wav" / f"{UTT1}.wav", samples, subtype="FLOAT")
    assert "beyond full scale (max |x| = 1.5)" in only(check_directory(good), UTT1)


def test_integer_full_scale_is_not_clipping(good):
    write_wav(good / "wav" / f"{UTT1}.wav", np.clip(tone(0.4) * 5, -1, 1), subtype="PCM_16")
    assert check_directory(good) == []


def test_noisy_clean_length_mismatch(good):
    write_wav(good / "clean" / f"{UTT2}.wav", tone(0.45))
    assert "clean length 0.4500 s (7200 samples) differs from noisy 0.5000 s" in only(
        check_directory(good), UTT2
    )


def test_sample_rate_other_than_majority(good):
    write_wav(good / "wav" / f"{UTT0}.wav", tone(0.3, rate=8000), rate=8000)
    write_wav(good / "clean" / f"{UTT0}.wav", tone(0.3, rate=8000), rate=8000)
    problems = check_directory(good)
    assert {p.utt_id for p in problems} == {UTT0} and len(problems) == 2
    assert all(
        "sample rate 8000 Hz differs from the directory's majority 16000 Hz" in str(p) for p in problems
    )


def test_empty_transcript(good):
    write_table(good / "text", [f"{UTT0} alpha", f"{UTT1}", f"{UTT2} ?!"])
    problems = check_directory(good)
    assert {p.utt_id for p in problems} == {UTT1, UTT2}
    assert all("empty transcript" in str(p) for p in problems)


def test_characters_outside_the_tokenizer(good, tmp_path):
    Tokenizer.train(["alpha bravo charlie delta echo foxtrot"], "char", 0, tmp_path / "tok")
    write_table(good / "text", [f"{UTT0} alpha", f"{UTT1} zulu", f"{UTT2} echo"])
    text = only(check_directory(good, tokenizer_path=tmp_path / "tok"), UTT1)
    assert "characters not in the tokenizer: 'u' 'z'" in text


def test_duplicate_ids(good):
    lines = (good / "utt2spk").read_text().splitlines()
    write_table(good / "utt2spk", [*lines, lines[0]])
    problems = check_directory(good)
    text = only(problems, UTT0)
    assert "utt2spk:4: duplicate id (first on line 1)" in text
    assert blocking_problems(problems) == problems


def test_ids_missing_from_another_file(good):
    write_table(good / "text", [f"{UTT0} alpha", f"{UTT2} bravo", "ghost charlie"])
    problems = check_directory(good)
    assert sorted(str(p).split(": ")[0] for p in problems) == ["ghost", UTT1]
    assert any("text: missing (the id is in wav.scp)" in str(p) for p in problems)
    assert any("text:3: id not in wav.scp" in str(p) for p in problems)


@pytest.mark.parametrize(
    ("name", "row", "reason"),
    [
        ("wav.scp", "lonely", "malformed line: expected at least 2 fields, got 1"),
        ("utt2cond", f"{UTT0} white 5 extra", "malformed line: expected 2 to 3 fields, got 4"),
        ("segments", f"{UTT0} rec 1.0 1.0", "segment end 1 <= start 1"),
        ("segments", f"{UTT0} rec one two", "bad segment times 'one two'"),
    ],
)
def test_malformed_lines(good, name, row, reason):
    if name == "segments":
        write_table(good / "wav.scp", [f"rec {good / 'wav' / (UTT0 + '.wav')}"])
        write_table(good / "spk1.scp", [])
        write_table(good / "text", [f"{UTT0} alpha"])
        write_table(good / "utt2spk", [f"{UTT0} s"])
        write_table(good / "utt2cond", [f"{UTT0} white 5"])
        write_table(good / "segments", [row])
    else:
        with open(good / name, "a") as f:
            f.write(row + "\n")
    problems = check_directory(good)
    assert any(reason in str(p) and p.structural for p in problems), [str(p) for p in problems]


def test_segment_past_the_end_of_its_recording(tmp_path):
    root = tmp_path / "d"
    rec = write_wav(tmp_path / "rec.wav", tone(1.0))
    write_table(root / "wav.scp", [f"rec {rec}"])
    write_table(root / "segments", ["a rec 0.0 0.5", "b rec 0.5 3.0"])
    write_table(root / "text", ["a one", "b two"])
    write_table(root / "utt2spk", ["a s", "b s"])
    assert "segment ends past the recording's end (1 s)" in only(check_directory(root), "b")


def test_missing_or_non_directory_is_a_data_error(tmp_path, capsys):
    with pytest.raises(DataError, match="data directory not found"):
        check_directory(tmp_path / "nope")
    (tmp_path / "f").write_text("")
    with pytest.raises(DataError, match="not a directory"):
        check_directory(tmp_path / "f")
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_prints_one_line_per_problem_and_exits_1(good, capsys):
    (good / "wav" / f"{UTT1}.wav").unlink()
    write_table(good / "text", [f"{UTT0} alpha", f"{UTT1} bravo", f"{UTT2} "])
    assert main(["data", "check", str(good)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and {line.split(":")[0] for line in out} == {UTT1, UTT2}


def _count_reads(monkeypatch):
    """The sources the check decodes (read_audio calls) and the files whose header alone it reads."""
    import gradremedy.data.check as check_module

    reads, headers = [], []
    read_audio, header_info = check_module.read_audio, check_module._header_info

    def counting_read(spec):
        reads.append(spec)
        return read_audio(spec)

    def counting_header(source):
        info = header_info(source)
        if info is not None:
            headers.append(source)
        return info

    monkeypatch.setattr(check_module, "read_audio", counting_read)
    monkeypatch.setattr(check_module, "_header_info", counting_header)
    return reads, headers


def test_each_audio_file_is_opened_once_and_pcm_is_not_decoded(good, monkeypatch):
    reads, headers = _count_reads(monkeypatch)
    assert check_directory(good) == []
    assert reads == [] and len(headers) == len(set(headers)) == 6  # 3 noisy + 3 clean, 16-bit PCM


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype"),
    [
        ("wav", "WAV", "PCM_24"),
        ("wav", "WAV", "PCM_U8"),
        ("wav", "WAV", "ULAW"),
        ("aiff", "AIFF", "PCM_S8"),
        ("wav", "WAVEX", "PCM_32"),
    ],
)
def test_integer_pcm_containers_are_checked_from_the_header(tmp_path, monkeypatch, suffix, fmt, subtype):
    root = tmp_path / "d"
    rec = tmp_path / f"rec.{suffix}"
    soundfile.write(rec, tone(0.5, 8000), 8000, format=fmt, subtype=subtype)
    empty = tmp_path / f"empty.{suffix}"
    soundfile.write(empty, np.zeros(0, np.float32), 8000, format=fmt, subtype=subtype)
    write_table(root / "wav.scp", [f"rec {rec}", f"e {empty}"])
    write_table(root / "segments", ["a rec 0.0 0.25", "b rec 0.25 0.9", "e e 0.0 0.1"])
    write_table(root / "text", ["a one", "b two", "e three"])
    write_table(root / "utt2spk", ["a s", "b s", "e s"])
    reads, headers = _count_reads(monkeypatch)
    problems = check_directory(root)
    assert reads == [] and sorted(headers) == sorted([str(rec), str(empty)])
    assert [str(p).split(": ")[0] for p in problems] == ["b", "e"]
    assert "segment ends past the recording's end (0.5 s)" in str(problems[0])
    assert "segment ends past the recording's end (0 s)" in str(problems[1])


def test_float_files_are_decoded(good, monkeypatch):
    samples = tone(0.3)
    samples[7] = np.nan
    write_wav(good / "wav" / f"{UTT0}.wav", samples, subtype="FLOAT")
    write_wav(good / "clean" / f"{UTT1}.wav", tone(0.4) * 5, subtype="DOUBLE")
    reads, headers = _count_reads(monkeypatch)
    problems = check_directory(good)
    assert sorted(reads) == sorted([str(good / "wav" / f"{UTT0}.wav"), str(good / "clean" / f"{UTT1}.wav")])
    assert len(headers) == 4
    assert [p.utt_id for p in problems] == [UTT0, UTT1]
    assert "1 NaN or infinite sample(s)" in str(problems[0])
    assert "beyond full scale (max |x| = 1.5)" in str(problems[1])


def test_flac_is_decoded_and_a_truncated_flac_is_unreadable(good, monkeypatch):
    flac = good / "clean" / f"{UTT2}.flac"
    soundfile.write(flac, tone(0.5) * 0.5, 16000, format="FLAC")
    write_table(
        good / "spk1.scp",
        [
            f"{UTT0} {good / 'clean' / f'{UTT0}.wav'}",
            f"{UTT1} {good / 'clean' / f'{UTT1}.wav'}",
            f"{UTT2} {flac}",
        ],
    )
    reads, _ = _count_reads(monkeypatch)
    assert check_directory(good) == [] and reads == [str(flac)]
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 2])  # the header still says 0.5 s; decoding fails
    assert soundfile.info(flac).frames == 8000
    text = only(check_directory(good), UTT2)
    assert "unreadable audio" in text and str(flac) in text


@pytest.mark.parametrize("cut", [1, 3, 1001])
def test_truncated_pcm_wav_is_caught_as_by_a_full_read(good, monkeypatch, cut):
    """libsndfile counts the frames a truncated PCM file holds: the header check finds the length
    mismatch (and a segment past the new end) exactly as decoding every sample does."""
    import gradremedy.data.check as check_module

    clean = good / "clean" / f"{UTT2}.wav"
    data = clean.read_bytes()
    clean.write_bytes(data[: len(data) - cut])
    frames = (len(data) - cut - 44) // 2
    header_problems = check_directory(good)
    assert "differs from noisy 0.5000 s (8000 samples)" in only(header_problems, UTT2)
    assert f"({frames} samples)" in str(header_problems[0])
    monkeypatch.setattr(check_module, "_header_info", lambda source: None)  # decode everything
    assert check_directory(good) == header_problems
    assert len(soundfile.read(clean)[0]) == frames


def test_truncated_recording_puts_its_segments_past_the_end(tmp_path, monkeypatch):
    import gradremedy.data.check as check_module

    root = tmp_path / "d"
    rec = write_wav(tmp_path / "rec.wav", tone(1.0))
    data = rec.read_bytes()
    rec.write_bytes(data[: 44 + 2 * 12000])  # 0.75 s left of 1 s
    write_table(root / "wav.scp", [f"rec {rec}"])
    write_table(root / "segments", ["a rec 0.0 0.5", "b rec 0.5 1.0"])
    write_table(root / "text", ["a one", "b two"])
    write_table(root / "utt2spk", ["a s", "b s"])
    problems = check_directory(root)
    assert "segment ends past the recording's end (0.75 s)" in only(problems, "b")
    monkeypatch.setattr(check_module, "_header_info", lambda source: None)
    assert check_directory(root) == problems


def test_check_and_parse_returns_the_directory_read_data_dir_reads(good):
    from gradremedy.data.check import check_and_parse
    from gradremedy.data.kaldi_dir import read_data_dir

    (good / "wav" / f"{UTT1}.wav").unlink()
    data, problems = check_and_parse(good)
    assert problems == check_directory(good) and "audio file not found" in only(problems, UTT1)
    assert list(data) == list(read_data_dir(good))
