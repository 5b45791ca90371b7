"""Sentences for the embedded corpus: a radio-call grammar (``tiny``) and read sentences (``read``).

The ``tiny`` grammar speaks NATO alphabet words, digits and radio procedure words in short calls of
3 to 7 words, so that a small model learns it in minutes. The ``read`` preset reads short, clean
sentences picked from Debian's ``fortunes`` package, normalised to lower-case words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from gradremedy.data.tokenizer import normalize_text
from gradremedy.errors import UserError

NATO_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
PROCEDURE_WORDS = (
    "roger over out say again copy affirmative negative wilco standby break this is radio check loud "
    "and clear how do you read go ahead request position report grid correction all after before i "
    "wait message received unit"
).split()

# Spellings the engines pronounce better; the transcript keeps the NATO spelling.
_TTS_SPELLING = {"xray": "x-ray", "juliett": "juliet"}

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Fortune files that are not prose (pictures, code, other languages).
_FORTUNE_SKIP = {"art", "ascii-art", "perl", "linux", "linuxcookie", "translate-me", "zippy"}


def _callsign(rng: np.random.Generator) -> str:
    digits = " ".join(rng.choice(DIGIT_WORDS, size=int(rng.integers(1, 3))))
    return f"{rng.choice(NATO_WORDS)} {digits}"


def _nato(rng: np.random.Generator) -> str:
    return str(rng.choice(NATO_WORDS))


def _digit(rng: np.random.Generator) -> str:
    return str(rng.choice(DIGIT_WORDS))


# Each template draws its slots from the generator; word counts are checked by the caller (3..7).
_TEMPLATES: tuple[Callable[[np.random.Generator], str], ...] = (
    lambda r: f"{_callsign(r)} this is {_callsign(r)} over",
    lambda r: f"{_callsign(r)} say again over",
    lambda r: f"roger {_callsign(r)} out",
    lambda r: f"copy {_digit(r)} {_digit(r)} {_digit(r)} over",
    lambda r: f"affirmative {_nato(r)} {_nato(r)} {_digit(r)}",
    lambda r: f"negative say again all after {_nato(r)}",
    lambda r: f"{_callsign(r)} radio check over",
    lambda r: f"loud and clear {_callsign(r)}",
    lambda r: f"how do you read {_callsign(r)}",
    lambda r: f"wilco {_callsign(r)} out",
    lambda r: f"standby {_callsign(r)}",
    lambda r: f"{_callsign(r)} go ahead",
    lambda r: f"request position {_callsign(r)} over",
    lambda r: f"grid {_digit(r)} {_digit(r)} {_digit(r)} {_digit(r)} over",
    lambda r: f"correction {_nato(r)} {_digit(r)} {_digit(r)} over",
    lambda r: f"{_nato(r)} {_nato(r)} {_nato(r)} {_digit(r)} {_digit(r)}",
    lambda r: f"break break {_callsign(r)} over",
    lambda r: f"i read you {_digit(r)} by {_digit(r)} out",
    lambda r: f"report position {_nato(r)} {_digit(r)} over",
    lambda r: f"message received {_callsign(r)} out",
    lambda r: f"wait out {_nato(r)} {_digit(r)}",
    lambda r: f"{_digit(r)} {_digit(r)} {_digit(r)} {_digit(r)} {_digit(r)} over",
    lambda r: f"copy all before {_nato(r)} {_nato(r)} over",
    lambda r: f"unit {_callsign(r)} check",
)

MIN_TINY_WORDS, MAX_TINY_WORDS = 3, 7


# Share of ``tiny`` sentences that are free strings of vocabulary words rather than radio calls (0: calls
# only, the default). Measured at 0.5 (results/recipe_probes_data/): the models then also recognise word
# strings outside the calls (continuous speech of two training voices saying the real-voice set's 100
# texts: 54-62 % WER against 84-88 %), but the free half of the test set is much harder without the
# calls' word order (52-55 % test WER against 35 % at 2,400 steps), and the real voice stays at 92-98 %.
FREE_FRACTION = 0.0


def free_sentence(rng: np.random.Generator) -> str:
    """3 to 7 words drawn uniformly from the ``tiny`` vocabulary, in any order."""
    count = int(rng.integers(MIN_TINY_WORDS, MAX_TINY_WORDS + 1))
    return " ".join(str(word) for word in rng.choice(_VOCABULARY, size=count))


def tiny_sentence(rng: np.random.Generator) -> str:
    """One sentence of 3 to 7 words: a radio call from the ``tiny`` grammar, or (with probability
    :data:`FREE_FRACTION`) a free string of its words."""
    if FREE_FRACTION > 0 and rng.random() < FREE_FRACTION:  # no draw at 0: corpora stay as they were
        return free_sentence(rng)
    while True:
        sentence = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))](rng)
        if MIN_TINY_WORDS <= len(sentence.split()) <= MAX_TINY_WORDS:
            return sentence


def tiny_vocabulary() -> list[str]:
    """Every word the ``tiny`` grammar can produce, sorted."""
    words = set(NATO_WORDS) | set(DIGIT_WORDS)
    for template in _TEMPLATES:  # the fixed words of each template
        probe = template(np.random.default_rng(0))
        words.update(probe.split())
    words.update(["by"])
    return sorted(words)


_VOCABULARY = tuple(tiny_vocabulary())


def tts_text(sentence: str) -> str:
    """The sentence as given to a speech synthesiser (same words, engine-friendly spellings)."""
    return " ".join(_TTS_SPELLING.get(word, word) for word in sentence.split())


_ALLOWED_RAW = re.compile(r"^[A-Za-z ,;:'\-]+$")
_RAW_WORD = re.compile(r"[A-Za-z]+('[A-Za-z]+)?")


def normalise_sentence(raw: str) -> str | None:
    """``raw`` in the form the model is trained on, or None when it is not clean prose.

    Refused: digits, symbols, quotes, all-capital words (read out as letters by the engines) and
    words with apostrophes at their edges. An accepted sentence is normalised by the tokenizer's own
    :func:`~gradremedy.data.tokenizer.normalize_text`, so the corpus transcripts and the text the
    model is scored on can never disagree.
    """
    raw = raw.strip()
    if not raw or not _ALLOWED_RAW.match(raw):
        return None
    for token in re.split(r"[\s,;:\-]+", raw):
        if not token:
            continue
        if (len(token) > 1 and token.isupper()) or not _RAW_WORD.fullmatch(token):
            return None
    return normalize_text(raw) or None


def _fortune_entries(path: Path) -> Iterable[str]:
    text = path.read_text(encoding="latin-1")
    for entry in text.split("\n%\n"):
        lines = [line for line in entry.splitlines() if not line.strip().startswith("--")]
        yield " ".join(line.strip() for line in lines)


def read_sentences(fortunes_dir: Path = FORTUNES_DIR, min_words: int = 4, max_words: int = 12) -> list[str]:
    """Short clean sentences from the fortune files, normalised, deduplicated and sorted."""
    if not fortunes_dir.is_dir():
        raise UserError(f"{fortunes_dir}: not found; install the Debian package 'fortunes' for --preset read")
    sentences: set[str] = set()
    for path in sorted(fortunes_dir.iterdir()):
        if path.suffix or path.name in _FORTUNE_SKIP or not path.with_suffix(".dat").exists():
            continue
        for entry in _fortune_entries(path):
            for raw in re.split(r"(?<=[.!?])\s+", entry):
                raw = re.sub(r"^[QA]:\s*", "", raw.strip())  # riddle files: "Q: ... A: ..."
                if not raw.endswith((".", "!", "?")):
                    continue
                sentence = normalise_sentence(raw[:-1])
                if sentence and min_words <= len(sentence.split()) <= max_words:
                    sentences.add(sentence)
    if not sentences:
        raise UserError(f"{fortunes_dir}: no usable sentences found in the fortune files")
    return sorted(sentences)
