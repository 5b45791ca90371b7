"""Output units for ASR: sentencepiece BPE or characters, with the CTC blank and sos/eos around them.

Id layout (every model, decoder and scorer relies on it)::

    0                    CTC blank
    1                    <unk>
    2 .. vocab_size - 2  units (BPE pieces or characters)
    vocab_size - 1       <sos/eos>

``normalize_text`` defines the text the model sees, for training and for scoring alike.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import sentencepiece

from gradremedy.atomic import atomic_write_bytes, atomic_write_text
from gradremedy.errors import UserError

log = logging.getLogger(__name__)

SPACE = "▁"  # the word-boundary unit, as sentencepiece writes it
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_SPACES = re.compile(r"\s+")
_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")


def normalize_text(text: str) -> str:
    """The text the model is trained and scored on.

    NFKC-normalised and lower-cased; every punctuation or symbol character becomes a space, except an
    apostrophe with a letter or digit on both sides (``don't`` stays, ``'quoted'`` loses its quotes);
    typographic apostrophes count as ``'``; runs of white space collapse to one space, none at the ends.
    Idempotent.
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    kept = []
    for i, char in enumerate(text):
        if char == "'":
            before = text[i - 1] if i > 0 else " "
            after = text[i + 1] if i + 1 < len(text) else " "
            kept.append(char if before.isalnum() and after.isalnum() else " ")
        elif unicodedata.category(char)[0] in "PSC":  # punctuation, symbols, control characters
            kept.append(" ")
        else:
            kept.append(char)
    return _SPACES.sub(" ", "".join(kept)).strip()


class Tokenizer:
    """Text <-> ids with ``blank_id == 0`` and ``sos_id == eos_id == vocab_size - 1``."""

    blank_id = 0
    unk_id = 1

    def __init__(self, kind: str, *, units: list[str] | None = None, model_proto: bytes | None = None):
        if kind == "bpe":
            if model_proto is None:
                raise ValueError("a bpe tokenizer needs its sentencepiece model")
            self._sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
            self._model_proto = model_proto
            # sentencepiece id i (0 = its <unk>) is our id i + 1
            self.units = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        elif kind == "char":
            if not units or units[0] != "<unk>":
                raise ValueError("a char tokenizer needs its units, '<unk>' first")
            self.units = list(units)
            self._char_to_id = {unit: i + 1 for i, unit in enumerate(self.units)}
        else:
            raise UserError(f"tokenizer kind must be 'bpe' or 'char', got '{kind}'")
        self.kind = kind
        self.vocab_size = len(self.units) + 2
        self.sos_id = self.eos_id = self.vocab_size - 1

    # ---- training, saving, loading -------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], kind: str, vocab_size: int, out_dir: str | os.PathLike) -> Tokenizer:
        """Train on ``texts`` (normalised here), save to ``out_dir`` and return the tokenizer.

        ``vocab_size`` is the number of BPE pieces including ``<unk>`` (the output size is 2 more: blank
        and sos/eos); it is capped at what the text allows, which on a small closed vocabulary makes
        every word a single piece. Ignored for ``char``. Training is deterministic and quiet.
        """
        sentences = [s for s in (normalize_text(t) for t in texts) if s]
        if not sentences:
            raise UserError("cannot train a tokenizer: the training text is empty")
        if kind == "char":
            chars = sorted({SPACE if c == " " else c for s in sentences for c in s})
            tokenizer = cls("char", units=["<unk>", *chars])
        elif kind == "bpe":
            tokenizer = cls("bpe", model_proto=_train_bpe(sentences, vocab_size))
        else:
            raise UserError(f"tokenizer kind must be 'bpe' or 'char', got '{kind}'")
        tokenizer.save(out_dir)
        return tokenizer

    def save(self, out_dir: str | os.PathLike) -> None:
        """Write ``tokenizer.json`` (and ``bpe.model``) into ``out_dir``, atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "vocab_size": self.vocab_size, "units": self.units}
        if self.kind == "bpe":
            atomic_write_bytes(out / "bpe.model", self._model_proto)
        atomic_write_text(out / "tokenizer.json", json.dumps(meta, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Load from a directory written by :meth:`save` (or from a file inside it)."""
        folder = Path(path)
        if folder.is_file():
            folder = folder.parent
        meta_path = folder / "tokenizer.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            kind = meta["kind"]
            if kind == "bpe":
                tokenizer = cls("bpe", model_proto=(folder / "bpe.model").read_bytes())
            else:
                tokenizer = cls("char", units=meta["units"])
        except FileNotFoundError as err:
            raise UserError(f"{folder}: no tokenizer here ({Path(err.filename).name} missing)") from None
        except (ValueError, KeyError, RuntimeError) as err:
            raise UserError(f"{meta_path}: not a valid tokenizer ({err})") from None
        if tokenizer.vocab_size != meta.get("vocab_size"):
            raise UserError(f"{meta_path}: vocab_size {meta.get('vocab_size')} does not match the model")
        return tokenizer

    # ---- encoding -------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Ids in [1, vocab_size - 2] of the normalised text (unknown characters -> ``unk_id``)."""
        text = normalize_text(text)
        if self.kind == "bpe":
            return [i + 1 for i in self._sp.encode(text, out_type=int)]
        return [self._char_to_id.get(SPACE if c == " " else c, self.unk_id) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids, skipping blank, sos/eos and anything out of range."""
        units = [int(i) for i in ids if 1 <= int(i) <= self.vocab_size - 2]
        if self.kind == "bpe":
            return self._sp.decode([i - 1 for i in units])
        text = "".join(" " if self.units[i - 1] == SPACE else self.units[i - 1] for i in units)
        return _SPACES.sub(" ", text).strip()

    def pieces(self, text: str) -> list[str]:
        """The units of the normalised text, as strings (for inspection)."""
        return [self.units[i - 1] for i in self.encode(text)]

    def unknown_characters(self, text: str) -> set[str]:
        """Characters of the normalised text that the tokenizer cannot represent."""
        chars = set(normalize_text(text)) - {" "}
        if self.kind == "bpe":
            return {c for c in chars if self._sp.piece_to_id(c) == self._sp.unk_id()}
        return {c for c in chars if c not in self._char_to_id}


def _train_bpe(sentences: list[str], vocab_size: int) -> bytes:
    """A sentencepiece BPE model, its size capped at the largest the text allows (logged)."""
    # The text is normalised already: "identity" keeps sentencepiece from changing it again; one thread
    # and no sampling or shuffling make training deterministic.
    settings = dict(
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        minloglevel=2,
    )
    requested = vocab_size
    for _ in range(2):
        model = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, **settings
            )
        except RuntimeError as err:
            too_high = _TOO_HIGH.search(str(err))
            if too_high is None:
                raise UserError(f"sentencepiece training failed: {str(err).splitlines()[-1]}") from None
            vocab_size = int(too_high.group(2))
            continue
        if vocab_size != requested:
            log.info(
                "BPE vocabulary capped at %d pieces (asked for %d): the training text allows no more",
                vocab_size,
                requested,
            )
        return model.getvalue()
    raise UserError(f"sentencepiece training failed for vocab_size {requested}")
