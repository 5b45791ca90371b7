"""The one WER rule: counts after normalisation, empty references and hypotheses, corpus-level rates,
and the same numbers from every caller (training validation, evaluation, significance)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradremedy.data.wer import ErrorCounts, error_counts, utterance_error_counts, word_error_rate
from gradremedy.experiments.significance import utterance_errors


def test_word_errors_after_normalisation() -> None:
    # case and punctuation do not count; "the" -> deleted, "brown" -> "crown" substituted, "jumps" inserted
    counts = error_counts("The quick, BROWN fox!", "quick crown fox jumps", "word")
    assert counts == ErrorCounts(substitutions=1, deletions=1, insertions=1, reference_length=4)
    assert counts.rate == pytest.approx(75.0)
    assert error_counts("Don't stop.", "don't stop", "word").errors == 0


def test_character_errors_count_the_spaces_between_words() -> None:
    counts = error_counts("ab cd", "abcd", "char")  # one space deleted
    assert counts == ErrorCounts(substitutions=0, deletions=1, insertions=0, reference_length=5)
    assert error_counts("ab", "xb", "char") == ErrorCounts(1, 0, 0, 2)


def test_empty_reference_counts_insertions_and_has_no_rate() -> None:
    counts = error_counts("  ...  ", "a b", "word")
    assert counts == ErrorCounts(insertions=2)
    assert counts.rate is None
    total = counts + error_counts("a", "a", "word")
    assert total.rate == pytest.approx(200.0)


def test_empty_hypothesis_counts_every_reference_word_as_deleted() -> None:
    assert error_counts("alpha bravo charlie", " ?! ", "word") == ErrorCounts(deletions=3, reference_length=3)
    assert error_counts("ab", "", "char") == ErrorCounts(deletions=2, reference_length=2)


def test_word_error_rate_is_corpus_level_and_nan_without_reference_words() -> None:
    refs, hyps = ["a b c d", "", "e"], ["a b c d", "x y", ""]
    assert word_error_rate(refs, hyps) == pytest.approx((2 + 1) / 5)  # 2 insertions, 1 deletion, 5 words
    assert math.isnan(word_error_rate(["", "..."], ["a", ""]))
    assert math.isnan(word_error_rate([], []))


def test_unknown_unit_and_mismatched_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        error_counts("a", "a", "phone")
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        utterance_error_counts(["a", "b"], ["a"])


words = st.lists(st.sampled_from(["alpha", "bravo", "Charlie,", "", "don't", "ECHO!"]), max_size=6)


@given(st.lists(st.tuples(words, words), max_size=5))
def test_every_caller_counts_alike(pairs) -> None:
    refs = [" ".join(r) for r, _ in pairs]
    hyps = [" ".join(h) for _, h in pairs]
    counts = utterance_error_counts(refs, hyps)
    assert counts == [error_counts(r, h) for r, h in zip(refs, hyps)]  # batched == one by one
    per_utt = utterance_errors(dict(enumerate(refs)), dict(enumerate(hyps)))  # significance
    assert [(e.errors, e.words) for e in per_utt.values()] == [(c.errors, c.reference_length) for c in counts]
    total = sum(counts, ErrorCounts())
    wer = word_error_rate(refs, hyps)  # training validation
    if total.reference_length:
        assert wer == pytest.approx(total.rate / 100)
    else:
        assert math.isnan(wer)
