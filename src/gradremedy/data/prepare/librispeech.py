"""LibriSpeech (openslr.org/12) -> Kaldi data directories for the joint SE + ASR model.

Supported layout (the official tarballs, unpacked; ``root`` may be the ``LibriSpeech`` folder, the
folder holding it, or one subset folder)::

    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "<utt id> <TRANSCRIPT>" lines

Subsets map to folders: ``train-clean-100``, ``train-clean-360`` and ``train-other-500`` together ->
``train``; ``dev-clean`` -> ``valid``; ``test-clean`` -> ``test``; ``dev-other`` -> ``dev_other``;
``test-other`` -> ``test_other``. Utterance ids are LibriSpeech's (speaker first, as Kaldi wants);
transcripts (upper case, apostrophes kept) are normalised with :func:`normalize_text`. A transcript
line without its FLAC file is skipped and counted.

LibriSpeech is clean read speech with no noisy version. With ``noise="mix"`` (the default) each split's
``wav.scp`` names a noisy copy written by :mod:`gradremedy.data.prepare.mixing` (the embedded corpus's
noises and radio channel at -5..20 dB) and ``spk1.scp`` the original FLAC file, so that the SE front end
has a target; every noisy split also gets a ``<split>_clean`` folder with the original audio, for
scoring clean speech. With ``noise="none"`` ``wav.scp`` names the original files and there is no
``spk1.scp``: the model then trains its ASR part only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gradremedy.data.kaldi_dir import Utterance
from gradremedy.data.prepare.common import write_splits
from gradremedy.data.tokenizer import normalize_text
from gradremedy.errors import DataError

log = logging.getLogger(__name__)

SUBSETS = {
    "train-clean-100": "train",
    "train-clean-360": "train",
    "train-other-500": "train",
    "dev-clean": "valid",
    "test-clean": "test",
    "dev-other": "dev_other",
    "test-other": "test_other",
}


def find_subsets(root: Path) -> list[Path]:
    """The subset folders under ``root`` (the LibriSpeech folder, its parent, or a subset itself)."""
    if root.name in SUBSETS and root.is_dir():
        return [root]
    for candidate in (root / "LibriSpeech", root):
        found = [candidate / name for name in SUBSETS if (candidate / name).is_dir()]
        if found:
            return found
    raise DataError(f"{root}: not a LibriSpeech folder (none of {', '.join(SUBSETS)} inside)")


def read_subset(subset: Path) -> list[Utterance]:
    """Every utterance of a subset that has both a transcript line and its FLAC file."""
    utterances = []
    missing = 0
    for trans in sorted(subset.glob("*/*/*.trans.txt")):
        for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) < 2 or parts[0].count("-") != 2:
                raise DataError(f"{trans}:{number}: expected '<speaker>-<chapter>-<n> <TRANSCRIPT>'")
            utt_id, raw = parts
            flac = trans.parent / f"{utt_id}.flac"
            if not flac.is_file():
                missing += 1
                continue
            text = normalize_text(raw)
            if not text:
                raise DataError(f"{trans}:{number}: empty transcript for '{utt_id}'")
            utterances.append(Utterance(utt_id, str(flac.resolve()), None, text, utt_id.split("-")[0]))
    if missing:
        log.warning(
            "LibriSpeech %s: %d transcript line(s) without their FLAC file, skipped", subset.name, missing
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
    """Write ``out/{train,valid,test,...}`` from a LibriSpeech tree; returns utterances per folder."""
    splits: dict[str, list[Utterance]] = {}
    for subset in find_subsets(Path(root).resolve()):
        splits.setdefault(SUBSETS[subset.name], []).extend(read_subset(subset))
    return write_splits("LibriSpeech", root, splits, Path(out), noise=noise, seed=seed, jobs=jobs)
