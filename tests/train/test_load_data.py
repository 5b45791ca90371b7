"""``load_data``: one parse of each directory for the check and the reading, and a data check made once
for several runs (what ``gradremedy compare`` hands its runs) that the runs do not repeat."""

from __future__ import annotations

import pytest

from gradremedy.config import load_config
from gradremedy.data import check as check_module
from gradremedy.data import kaldi_dir
from gradremedy.errors import DataError
from gradremedy.train.setup import check_training_data, load_data

from .helpers import make_tone_corpus, write_config


@pytest.fixture
def corpus(tmp_path):
    return make_tone_corpus(tmp_path / "corpus")


def _config(tmp_path, **data):
    return load_config(write_config(tmp_path / "c.yaml", data={"batch_size": 4, "num_buckets": 1, **data}))


def _count(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def counting(path, *args, **kwargs):
        calls.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def _break_one_training_file(corpus):
    wav = sorted((corpus / "train" / "wav").glob("*utt001.wav"))[0]
    wav.write_bytes(b"")  # unreadable audio
    return wav


def test_each_directory_is_parsed_once(tmp_path, corpus, monkeypatch):
    parses = _count(monkeypatch, check_module, "parse_data_dir")
    parses_by_reader = _count(monkeypatch, kaldi_dir, "parse_data_dir")
    data = load_data(corpus, _config(tmp_path))
    assert len(parses) == 2 and parses_by_reader == []  # train/ and valid/, by the check only
    assert data.train_dir.ids == kaldi_dir.read_data_dir(corpus / "train").ids
    assert data.data_check.left_out == (
        (str(corpus / "train"), "error", frozenset()),
        (str(corpus / "valid"), "error", frozenset()),
    )


def test_a_data_check_made_before_is_not_made_again(tmp_path, corpus, monkeypatch):
    cfg = _config(tmp_path)
    data_check = check_training_data(corpus, cfg)
    checks = _count(monkeypatch, check_module, "check_and_parse")
    data = load_data(corpus, cfg, data_check)
    assert checks == [] and len(data.train_dir) == 8 and len(data.valid_dir) == 4
    # Made with other data settings (another untranscribed policy, skip_bad): checked again.
    load_data(corpus, _config(tmp_path, untranscribed="se_only"), data_check)
    assert checks == [corpus / "train"]
    load_data(corpus, _config(tmp_path, skip_bad=True), data_check)
    assert checks == [corpus / "train", corpus / "train", corpus / "valid"]


def test_skip_bad_leaves_out_the_same_utterances_without_checking_again(
    tmp_path, corpus, monkeypatch, capsys
):
    _break_one_training_file(corpus)
    with pytest.raises(
        DataError, match=r"train: 1 problem\(s\) in the data check; fix them or use --skip-bad"
    ):
        check_training_data(corpus, _config(tmp_path))
    cfg = _config(tmp_path, skip_bad=True)
    first = load_data(corpus, cfg)
    bad = {u for u in kaldi_dir.read_data_dir(corpus / "train").ids if u.endswith("utt001")}
    assert len(bad) == 1 and first.skipped_utterances == 1
    assert first.data_check.left_out_of(corpus / "train", "error", True) == bad
    checks = _count(monkeypatch, check_module, "check_and_parse")
    capsys.readouterr()
    second = load_data(corpus, cfg, first.data_check)
    assert checks == [] and second.skipped_utterances == 1
    assert second.train_dir.ids == first.train_dir.ids and not bad & set(second.train_dir.ids)
    assert "train: skipping 1 bad utterance(s) (--skip-bad)" in capsys.readouterr().err
