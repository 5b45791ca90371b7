"""Tokenizer: id layout contract, BPE capping, char units, save/load, normalisation."""

from __future__ import annotations

import logging
import random
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.data.tokenizer import Tokenizer, normalize_text
from gradremedy.errors import UserError

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu zero one two three four five six "
    "seven eight nine ten eleven twelve hundred thousand north south east west up down left right stop go "
    "wait repeat confirm negative affirmative over out roger copy"
).split()


def sentences(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) for _ in range(n)]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    return Tokenizer.train(sentences(), "bpe", 1000, tmp_path_factory.mktemp("bpe"))


def assert_contract(tokenizer: Tokenizer, texts: list[str]) -> None:
    assert tokenizer.blank_id == 0
    assert tokenizer.sos_id == tokenizer.eos_id == tokenizer.vocab_size - 1
    for text in texts:
        ids = tokenizer.encode(text)
        assert ids and all(1 <= i <= tokenizer.vocab_size - 2 for i in ids)
        assert tokenizer.decode(ids) == normalize_text(text)


def test_bpe_contract_and_whole_words_on_a_small_vocabulary(bpe, caplog):
    assert_contract(bpe, sentences(20, seed=1))
    # capped: ~60 words allow far fewer than 1000 pieces, and every word becomes one unit
    assert bpe.vocab_size < 1000
    assert all(bpe.pieces(word) == ["▁" + word] for word in WORDS)


def test_bpe_cap_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="gradremedy.data.tokenizer"):
        Tokenizer.train(sentences(50), "bpe", 5000, tmp_path)
    assert "capped" in caplog.text


def test_bpe_small_size_gives_subwords(tmp_path):
    tokenizer = Tokenizer.train(sentences(), "bpe", 40, tmp_path)
    assert tokenizer.vocab_size == 42
    assert_contract(tokenizer, ["november", "whiskey tango"])
    assert len(tokenizer.encode("november")) > 1


def test_bpe_training_is_deterministic(tmp_path):
    a = Tokenizer.train(sentences(), "bpe", 100, tmp_path / "a")
    b = Tokenizer.train(list(sentences()), "bpe", 100, tmp_path / "b")
    assert (tmp_path / "a" / "bpe.model").read_bytes() == (tmp_path / "b" / "bpe.model").read_bytes()
    assert a.units == b.units


def test_save_load_round_trip(bpe, tmp_path):
    bpe.save(tmp_path / "tok")
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.vocab_size == bpe.vocab_size and loaded.units == bpe.units
    text = "roger copy over and out"
    assert loaded.encode(text) == bpe.encode(text)
    assert Tokenizer.load(tmp_path / "tok" / "tokenizer.json").units == bpe.units  # a file inside works too


def test_char_contract(tmp_path):
    tokenizer = Tokenizer.train(["Hello, World!", "don't stop"], "char", 0, tmp_path)
    assert_contract(tokenizer, ["hello world", "don't"])
    assert tokenizer.units[0] == "<unk>"
    assert tokenizer.vocab_size == len(set("helowrdn'tsp")) + 1 + 1 + 2  # chars, space, unk, blank+sos
    loaded = Tokenizer.load(tmp_path)
    assert loaded.encode("hello") == tokenizer.encode("hello")
    assert tokenizer.encode("hex")[-1] == tokenizer.unk_id


def test_decode_ignores_specials(bpe):
    ids = bpe.encode("alpha bravo")
    noisy = [bpe.blank_id, bpe.sos_id, *ids[:1], 0, *ids[1:], bpe.eos_id, 10**6, -3]
    assert bpe.decode(noisy) == "alpha bravo"


def test_unknown_characters(bpe, tmp_path):
    assert bpe.unknown_characters("Alpha, BRAVO!") == set()
    assert bpe.unknown_characters("alpha ñ 7") == {"ñ", "7"}
    char = Tokenizer.train(["abc"], "char", 0, tmp_path)
    assert char.unknown_characters("abd e") == {"d", "e"}


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no tokenizer here"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="not a valid tokenizer"):
        Tokenizer.load(tmp_path)


def test_empty_text_and_bad_kind(tmp_path):
    with pytest.raises(UserError, match="empty"):
        Tokenizer.train(["", " ,. "], "bpe", 10, tmp_path)
    with pytest.raises(UserError, match="'bpe' or 'char'"):
        Tokenizer.train(["a"], "word", 10, tmp_path)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Hello,   World!", "hello world"),
        ("Don't STOP", "don't stop"),
        ("don\u2019t", "don't"),
        ("'quoted' words", "quoted words"),
        ("x-ray  U.S.A.", "x ray u s a"),
        ("\tline\nbreak ", "line break"),
        ("50% off", "50 off"),
    ],
)
def test_normalize_text_examples(raw, normal):
    assert normalize_text(raw) == normal


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_normalize_text_is_idempotent_and_tidy(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert once == once.strip() and "  " not in once
    for i, char in enumerate(once):
        if char == "'":
            assert once[i - 1].isalnum() and once[i + 1].isalnum()
        elif char != " ":
            assert unicodedata.category(char)[0] not in "PSCZ", repr(char)
