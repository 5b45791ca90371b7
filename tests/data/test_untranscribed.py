"""Utterances without a transcript: refused by default, SE-only with ``data.untranscribed: se_only``."""

from __future__ import annotations

import pytest

from gradremedy.config import DataConfig, load_config
from gradremedy.data.batching import make_loader
from gradremedy.data.check import check_directory
from gradremedy.data.kaldi_dir import read_data_dir
from gradremedy.data.tokenizer import Tokenizer
from gradremedy.errors import DataError, UserError

from .helpers import make_dir, write_table


def _untranscribed(root, drop_clean_of: str | None = None):
    """Four tone utterances, the last two without a transcript; ``drop_clean_of``'s reference removed."""
    folder = make_dir(root, [0.5, 0.6, 0.7, 0.8])
    lines = (folder / "text").read_text().splitlines()
    write_table(folder / "text", lines[:2])
    if drop_clean_of is not None:
        kept = [
            line
            for line in (folder / "spk1.scp").read_text().splitlines()
            if not line.startswith(drop_clean_of)
        ]
        write_table(folder / "spk1.scp", kept)
    return folder


@pytest.fixture
def tokenizer(tmp_path):
    return Tokenizer.train(["alpha bravo", "charlie delta echo"], "char", 0, tmp_path / "tok")


def test_the_check_refuses_a_missing_transcript_unless_se_only(tmp_path):
    folder = _untranscribed(tmp_path / "d")
    problems = check_directory(folder)
    assert [p.utt_id for p in problems] == ["spk0_utt002", "spk1_utt003"]
    assert all("missing" in str(p) and "text" in str(p) for p in problems)
    assert check_directory(folder, untranscribed="se_only") == []


def test_se_only_names_an_utterance_with_neither_transcript_nor_reference(tmp_path):
    folder = _untranscribed(tmp_path / "d", drop_clean_of="spk1_utt003")
    problems = check_directory(folder, untranscribed="se_only")
    assert len(problems) == 1 and problems[0].utt_id == "spk1_utt003"
    assert "no transcript and no clean reference" in str(problems[0]) and "\n" not in str(problems[0])


def test_a_folder_without_any_text_file_is_an_se_only_set(tmp_path):
    folder = _untranscribed(tmp_path / "d")
    (folder / "text").unlink()
    assert check_directory(folder, untranscribed="se_only") == []
    assert any(p.utt_id is None for p in check_directory(folder))  # "text: missing (required)"


def test_a_training_loader_marks_se_only_utterances(tmp_path, tokenizer):
    folder = _untranscribed(tmp_path / "d")
    data = read_data_dir(folder, untranscribed="se_only")
    config = DataConfig(batch_size=4, num_buckets=1, untranscribed="se_only")
    loader, _ = make_loader(data, tokenizer, config, 16000, seed=0, shuffle=False, train=True)
    (batch,) = list(loader)
    assert batch.has_text.tolist() == [True, True, False, False]
    assert batch.token_lens.tolist()[2:] == [0, 0] and bool(batch.has_clean.all())


def test_loaders_refuse_untranscribed_utterances_unless_training_with_se_only(tmp_path, tokenizer):
    folder = _untranscribed(tmp_path / "d")
    data = read_data_dir(folder)
    for config, train in (
        (DataConfig(batch_size=4), True),
        (DataConfig(batch_size=4, untranscribed="se_only"), False),
    ):
        loader, _ = make_loader(data, tokenizer, config, 16000, seed=0, shuffle=False, train=train)
        with pytest.raises(DataError, match="spk0_utt002: .*text: no transcript"):
            list(loader)


def test_the_config_keys_are_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  untranscribed: maybe\n")
    with pytest.raises(UserError, match="'data.untranscribed' must be one of error, se_only, got 'maybe'"):
        load_config(path)
    path.write_text("data:\n  extra_train: some/dir\n")
    with pytest.raises(UserError, match="'data.extra_train' must be a list"):
        load_config(path)
    path.write_text("data:\n  extra_train: [a, b]\n  untranscribed: se_only\n")
    config = load_config(path)
    assert config.data.extra_train == ["a", "b"] and config.data.untranscribed == "se_only"
    assert load_config(None).data.extra_train == [] and load_config(None).data.untranscribed == "error"
