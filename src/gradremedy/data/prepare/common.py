"""Writing the splits of a clean read-speech corpus (LibriSpeech, Common Voice), noisy-mixed or as is."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from gradremedy.atomic import atomic_write_text
from gradremedy.data.kaldi_dir import Utterance, write_data_dir
from gradremedy.data.prepare.mixing import mix_split
from gradremedy.errors import DataError

log = logging.getLogger(__name__)

NOISE_MODES = ("mix", "none")
MANIFEST = "prepare.json"


def write_splits(
    corpus: str,
    root: str | os.PathLike,
    splits: dict[str, list[Utterance]],
    out: Path,
    *,
    noise: str,
    seed: int,
    jobs: int | None,
) -> dict[str, int]:
    """``out/<split>`` for each split with utterances (see the corpus modules for ``noise``); also
    ``out/<split>_clean`` for the mixed splits other than ``train``. Returns utterances per folder.

    A folder mixed with another seed is refused, so that a resumed run never mixes two seeds."""
    if noise not in NOISE_MODES:
        raise DataError(f"noise must be one of {', '.join(NOISE_MODES)}, got '{noise}'")
    if not any(splits.values()):
        raise DataError(f"{root}: no {corpus} utterances with transcripts and audio found")
    settings = {"corpus": corpus, "root": str(Path(root).resolve()), "noise": noise, "seed": seed}
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            before = json.loads(manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            before = {}
        if noise == "mix" and before.get("noise") == "mix" and before.get("seed") != seed:
            raise DataError(
                f"{out}: already mixed with seed {before.get('seed')}; use that seed or another --out"
            )
    counts = {}
    for split, utterances in sorted(splits.items()):
        if not utterances:
            continue
        if noise == "mix":
            mixed = mix_split(utterances, out / "audio" / split, seed=seed, jobs=jobs)
            write_data_dir(out / split, mixed)
            if split != "train":
                write_data_dir(out / f"{split}_clean", utterances)
                counts[f"{split}_clean"] = len(utterances)
        else:
            write_data_dir(out / split, utterances)
        counts[split] = len(utterances)
        log.info("%s %s -> %s: %d utterances", corpus, split, out / split, len(utterances))
    atomic_write_text(manifest, json.dumps({**settings, "counts": counts}, indent=2, sort_keys=True) + "\n")
    for split in ("train", "valid"):
        if split not in counts:
            log.warning("%s: no '%s' split found in %s (training needs train and valid)", corpus, split, root)
    return counts
