"""Mozilla Common Voice (one language of a ``cv-corpus-*`` release) -> Kaldi data directories.

Supported layout (a release, unpacked; ``root`` may be the language folder, or a folder holding exactly
one language folder)::

    <lang>/clips/<name>.mp3
    <lang>/{train,dev,test}.tsv    tab-separated, a header row naming at least client_id, path, sentence

``train.tsv`` -> ``train``, ``dev.tsv`` -> ``valid``, ``test.tsv`` -> ``test``; other lists
(``validated.tsv``, ``other.tsv``, ...) are not used. Utterance ids are ``<speaker>-<clip name>``, the
speaker the first 12 characters of ``client_id``. Sentences are normalised with :func:`normalize_text`
(lower case, punctuation dropped); digits are kept as written. A row whose clip is missing, or whose
sentence normalises to nothing, is skipped and counted.

Audio: the clips are MP3. libsndfile reads MP3 from version 1.1.0 on (the ``soundfile`` wheels bundle
1.2), so ``wav.scp`` names the MP3 files themselves. With an older libsndfile each entry is a pipe
through ffmpeg (``ffmpeg -nostdin -loglevel error -i CLIP -f wav - |``) when ffmpeg is installed;
without either, preparing stops with an error saying so.

Common Voice is (mostly) clean speech with no noisy version: ``noise="mix"`` (the default) and
``noise="none"`` work as for LibriSpeech (see :mod:`gradremedy.data.prepare.librispeech`): noisy copies
at 16 kHz in ``wav.scp`` with the original clip in ``spk1.scp``, or the clips as they are, ASR only.
"""

from __future__ import annotations

import csv
import logging
import os
import shlex
import shutil
from pathlib import Path

import soundfile

from gradremedy.data.kaldi_dir import Utterance
from gradremedy.data.prepare.common import write_splits
from gradremedy.data.tokenizer import normalize_text
from gradremedy.errors import DataError

log = logging.getLogger(__name__)

LISTS = {"train.tsv": "train", "dev.tsv": "valid", "test.tsv": "test"}
COLUMNS = ("client_id", "path", "sentence")
SPEAKER_CHARS = 12


def find_language_dir(root: Path) -> Path:
    """The language folder (the one with ``clips/`` and the lists) at or just under ``root``."""
    if (root / "clips").is_dir():
        return root
    found = sorted(p for p in root.iterdir() if (p / "clips").is_dir()) if root.is_dir() else []
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{root}: several Common Voice languages ({names}); give one language folder")
    raise DataError(f"{root}: not a Common Voice language folder (no clips/ folder)")


def mp3_entry(clip: Path) -> str:
    """The ``wav.scp`` entry of an MP3 clip: the file, or an ffmpeg pipe when libsndfile cannot read MP3."""
    if "MP3" in soundfile.available_formats():
        return str(clip)
    if shutil.which("ffmpeg"):
        return f"ffmpeg -nostdin -loglevel error -i {shlex.quote(str(clip))} -f wav - |"
    raise DataError(
        f"{clip}: this libsndfile ({soundfile.__libsndfile_version__}) cannot read MP3 (needs >= 1.1.0) "
        "and ffmpeg is not installed; upgrade the soundfile package or install ffmpeg"
    )


def read_list(path: Path, clips: Path) -> list[Utterance]:
    """The utterances of one ``.tsv`` list whose clip exists and whose sentence is not empty."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if header is None:
            return []
        missing_columns = [c for c in COLUMNS if c not in header]
        if missing_columns:
            raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing_columns)}")
        where = {c: header.index(c) for c in COLUMNS}
        utterances, no_clip, no_text = [], 0, 0
        for number, row in enumerate(rows, 2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(where.values()):
                raise DataError(
                    f"{path}:{number}: expected {len(header)} tab-separated columns, got {len(row)}"
                )
            name = row[where["path"]].strip()
            clip = clips / (name if Path(name).suffix else f"{name}.mp3")
            if not clip.is_file():
                no_clip += 1
                continue
            text = normalize_text(row[where["sentence"]])
            if not text:
                no_text += 1
                continue
            speaker = row[where["client_id"]].strip()[:SPEAKER_CHARS] or "unknown"
            utt_id = f"{speaker}-{clip.stem}"
            utterances.append(Utterance(utt_id, mp3_entry(clip.resolve()), None, text, speaker))
    if no_clip or no_text:
        log.warning(
            "%s: skipped %d row(s) without their clip and %d with an empty sentence", path, no_clip, no_text
        )
    return utterances


def prepare(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    noise: str = "mix",
    seed: int = 1,
    jobs: int | None = None,
) -> dict[str, int]:
    """Write ``out/{train,valid,test}`` from a Common Voice language folder; returns utterances per folder."""
    language = find_language_dir(Path(root).resolve())
    splits = {
        split: read_list(language / name, language / "clips")
        for name, split in LISTS.items()
        if (language / name).is_file()
    }
    if not splits:
        raise DataError(f"{language}: none of {', '.join(LISTS)} found")
    return write_splits("Common Voice", root, splits, Path(out), noise=noise, seed=seed, jobs=jobs)
