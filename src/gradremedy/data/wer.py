"""Word and character error counts: the one scoring rule of the package (jiwer on normalised text).

Both sides are normalised with :func:`gradremedy.data.tokenizer.normalize_text` (NFKC, lower case,
punctuation and symbols removed except word-internal apostrophes, white space collapsed). An utterance
whose normalised reference is empty counts every hypothesis unit as an insertion (jiwer refuses empty
references); an empty hypothesis counts every reference unit as a deletion. Rates are corpus level: errors
summed over utterances, divided by the summed reference length (as sclite does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer

from gradremedy.data.tokenizer import normalize_text

UNITS = ("word", "char")


@dataclass
class ErrorCounts:
    """Edit operations of hypotheses against references, and the number of reference units."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float | None:
        """Percent errors per reference unit; None without any reference unit (undefined)."""
        if self.reference_length == 0:
            return None
        return 100.0 * self.errors / self.reference_length


def _units(text: str, unit: str) -> int:
    return len(text.split()) if unit == "word" else len(text)


def utterance_error_counts(
    references: Sequence[str], hypotheses: Sequence[str], unit: str = "word"
) -> list[ErrorCounts]:
    """Edit counts of each (reference, hypothesis) pair after normalisation; ``unit`` is word or char.

    Characters include the single spaces between words (as ``jiwer.cer``), so a merged or split word
    costs one character error. One jiwer call aligns all pairs.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize_text(r) for r in references]
    hyps = [normalize_text(h) for h in hypotheses]
    counts = [ErrorCounts(insertions=_units(h, unit)) for h in hyps]  # the rule for empty references
    scored = [k for k, ref in enumerate(refs) if ref]
    if not scored:
        return counts
    process = jiwer.process_words if unit == "word" else jiwer.process_characters
    output = process([refs[k] for k in scored], [hyps[k] for k in scored])
    for k, chunks in zip(scored, output.alignments):
        c = ErrorCounts()
        for chunk in chunks:
            ref_span = chunk.ref_end_idx - chunk.ref_start_idx
            if chunk.type == "insert":
                c.insertions += chunk.hyp_end_idx - chunk.hyp_start_idx
            elif chunk.type == "substitute":
                c.substitutions += ref_span
            elif chunk.type == "delete":
                c.deletions += ref_span
            c.reference_length += ref_span
        counts[k] = c
    return counts


def error_counts(reference: str, hypothesis: str, unit: str = "word") -> ErrorCounts:
    """Edit counts of one utterance after normalisation (see :func:`utterance_error_counts`)."""
    return utterance_error_counts([reference], [hypothesis], unit)[0]


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level WER as a fraction (as ``jiwer.wer``), NaN when no reference has a word."""
    total = sum(utterance_error_counts(references, hypotheses, "word"), ErrorCounts())
    return total.errors / total.reference_length if total.reference_length else math.nan
