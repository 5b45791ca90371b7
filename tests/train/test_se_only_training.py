"""Training with extra directories (``data.extra_train``) of SE-only utterances (``data.untranscribed``)."""

from __future__ import annotations

import csv
import math

import pytest

from gradremedy.config import load_config
from gradremedy.errors import DataError
from gradremedy.train import loop

from .helpers import make_tone_corpus, write_config, write_split


def _se_set(folder, prefix: str = "se-", keep_clean: bool = True):
    """Four tone utterances without a transcript (ids given ``prefix``), with or without references."""
    write_split(folder, [["alpha", "bravo"], ["charlie"], ["delta", "alpha"], ["bravo"]], seed=7)
    (folder / "text").unlink()
    if not keep_clean:
        (folder / "spk1.scp").unlink()
    for name in ("wav.scp", "spk1.scp", "utt2spk"):
        if (folder / name).is_file():
            lines = (folder / name).read_text().splitlines()
            (folder / name).write_text("".join(f"{prefix}{line}\n" for line in lines))
    return folder


def _config(tmp_path, **data):
    return load_config(write_config(tmp_path / "c.yaml", data={"batch_size": 4, "num_buckets": 1, **data}))


def test_extra_directories_join_the_training_split_and_the_tokenizer_sees_transcripts_only(tmp_path):
    corpus = make_tone_corpus(tmp_path / "corpus")
    extra = _se_set(tmp_path / "se")
    data = loop.load_data(corpus, _config(tmp_path, extra_train=[str(extra)], untranscribed="se_only"))
    assert len(data.train_dir) == 12 and len(data.valid_dir) == 4
    assert sum(u.text is None for u in data.train_dir) == 4 and len(data.train_texts) == 8
    assert all(u.clean is not None for u in data.train_dir)


def test_untranscribed_extra_utterances_are_refused_by_default(tmp_path, capsys):
    corpus = make_tone_corpus(tmp_path / "corpus")
    extra = _se_set(tmp_path / "se")
    with pytest.raises(DataError, match="se: .* problem"):
        loop.load_data(corpus, _config(tmp_path, extra_train=[str(extra)]))
    assert "text: missing (required)" in capsys.readouterr().err


def test_bad_extra_directories_are_one_line_errors(tmp_path, capsys):
    corpus = make_tone_corpus(tmp_path / "corpus")
    with pytest.raises(DataError, match="nowhere: data directory of data.extra_train not found"):
        loop.load_data(corpus, _config(tmp_path, extra_train=[str(tmp_path / "nowhere")]))
    clashing = _se_set(tmp_path / "clash", prefix="")
    with pytest.raises(DataError, match="spk0-utt000: utterance id in both .*train and .*clash"):
        loop.load_data(corpus, _config(tmp_path, extra_train=[str(clashing)], untranscribed="se_only"))
    bare = _se_set(tmp_path / "bare", keep_clean=False)
    with pytest.raises(DataError, match="bare: 4 problem"):
        loop.load_data(corpus, _config(tmp_path, extra_train=[str(bare)], untranscribed="se_only"))
    assert "se-spk0-utt000: " in capsys.readouterr().err


@pytest.mark.parametrize("method", ["sum", "gr"])
def test_training_with_an_se_only_set_runs_and_logs_finite_losses(tmp_path, method):
    corpus = make_tone_corpus(tmp_path / "corpus")
    extra = _se_set(tmp_path / "se")
    config = write_config(
        tmp_path / "c.yaml",
        data={"batch_size": 4, "num_buckets": 1, "extra_train": [str(extra)], "untranscribed": "se_only"},
        train={"max_steps": 3, "num_threads": 1},
    )
    exp = tmp_path / "exp"
    summary = loop.train(config_path=config, data_dir=corpus, exp_dir=exp, method=method)
    assert summary["steps"] == 3 and summary["skipped_steps"] == 0 and summary["final_valid"]["utts"] == 4
    with open(exp / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for row in rows:
        assert all(math.isfinite(float(row[k])) for k in ("loss", "se", "ctc", "att", "grad_norm"))
