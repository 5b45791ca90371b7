"""Sentences of the corpus: the radio-call grammar of ``tiny`` and the fortune sentences of ``read``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradremedy.data.synth import text
from gradremedy.data.tokenizer import normalize_text
from gradremedy.errors import UserError

REQUIRED_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "zero one two three four five six seven eight nine "
    "roger over out say again copy affirmative negative"
).split()


def test_tiny_vocabulary_has_nato_words_digits_and_procedure_words():
    vocabulary = set(text.tiny_vocabulary())
    missing = [w for w in REQUIRED_WORDS if w not in vocabulary]
    assert not missing


def test_tiny_sentences_are_short_and_use_only_the_vocabulary():
    vocabulary = set(text.tiny_vocabulary())
    rng = np.random.default_rng(3)
    sentences = [text.tiny_sentence(rng) for _ in range(2000)]
    lengths = [len(s.split()) for s in sentences]
    assert min(lengths) >= 3 and max(lengths) <= 7
    used = {w for s in sentences for w in s.split()}
    assert used <= vocabulary
    assert set(text.NATO_WORDS) <= used and set(text.DIGIT_WORDS) <= used  # every word is reachable
    assert any("say again" in s for s in sentences)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_a_share_of_tiny_sentences_are_free_word_strings_outside_the_calls(monkeypatch, fraction):
    monkeypatch.setattr(text, "FREE_FRACTION", fraction)
    rng = np.random.default_rng(4)
    grammar_rng = np.random.default_rng(5)
    calls = set()
    for _ in range(20000):  # the calls the templates alone produce (free strings switched off)
        while True:
            call = text._TEMPLATES[int(grammar_rng.integers(len(text._TEMPLATES)))](grammar_rng)
            if 3 <= len(call.split()) <= 7:
                break
        calls.add(" ".join(w for w in call.split() if w not in text.NATO_WORDS + text.DIGIT_WORDS))
    sentences = [text.tiny_sentence(rng) for _ in range(4000)]
    # A call reduced to its fixed words (NATO words and digits removed) is one of the templates'
    # frames; a free string almost never is.
    outside = [
        s
        for s in sentences
        if " ".join(w for w in s.split() if w not in text.NATO_WORDS + text.DIGIT_WORDS) not in calls
    ]
    assert abs(len(outside) / len(sentences) - fraction) < 0.05
    free = [text.free_sentence(rng) for _ in range(4000)]
    first_words = {s.split()[0] for s in free}
    assert first_words == set(text.tiny_vocabulary())  # any word can start, in any order


def test_tts_text_respells_only_for_the_engines():
    assert text.tts_text("xray juliett over") == "x-ray juliet over"
    assert text.tts_text("alpha two") == "alpha two"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Don't panic, it's only a test", "don't panic it's only a test"),
        ("A well-known fact", "a well known fact"),
        ("The NASA probe", None),  # acronym: read out as letters
        ("Call 911 now", None),
        ('He said "no"', None),
        ("rock 'n' roll", None),
        ("", None),
    ],
)
def test_normalise_sentence(raw, expected):
    assert text.normalise_sentence(raw) == expected


@given(st.text(alphabet="aAbBzZ ,;:'-", max_size=40))
def test_accepted_sentences_are_exactly_what_the_tokenizer_makes_of_them(raw):
    sentence = text.normalise_sentence(raw)
    if sentence is not None:
        assert sentence == normalize_text(raw)
        assert normalize_text(sentence) == sentence  # a transcript passes the tokenizer unchanged
        assert all(text._RAW_WORD.fullmatch(word) for word in sentence.split())


def test_tiny_grammar_sentences_pass_the_tokenizer_unchanged():
    rng = np.random.default_rng(5)
    for _ in range(500):
        sentence = text.tiny_sentence(rng)
        assert normalize_text(sentence) == sentence


def test_read_sentences_from_fortune_files(tmp_path):
    (tmp_path / "wisdom").write_text(
        "Time flies like an arrow. Fruit flies like a banana!\n%\n"
        "Q: Why is it so?\nA: Because it is not otherwise.\n%\n"
        "See page 42 of the FAQ.\n\t\t-- Someone Famous\n%\nToo short.\n%\n"
    )
    (tmp_path / "wisdom.dat").write_bytes(b"")
    (tmp_path / "notes").write_text("Not listed in a dat file so it is ignored here.\n%\n")
    sentences = text.read_sentences(tmp_path, min_words=3, max_words=12)
    assert sentences == sorted(
        [
            "time flies like an arrow",
            "fruit flies like a banana",
            "why is it so",
            "because it is not otherwise",
        ]
    )


def test_read_sentences_without_fortunes_names_the_package(tmp_path):
    with pytest.raises(UserError, match="fortunes"):
        text.read_sentences(tmp_path / "missing")


def test_installed_fortunes_give_many_clean_sentences():
    if not text.FORTUNES_DIR.is_dir():
        pytest.skip("fortunes is not installed")
    sentences = text.read_sentences()
    assert len(sentences) > 2000
    for sentence in sentences[:: max(1, len(sentences) // 200)]:
        assert sentence == sentence.lower() and 4 <= len(sentence.split()) <= 12
        assert all(w.replace("'", "").isalpha() for w in sentence.split())
