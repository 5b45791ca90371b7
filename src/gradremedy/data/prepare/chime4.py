"""CHiME-4 (the CHiME-3 data as distributed for CHiME-4) -> ``OUT/{train,valid,test}``.

Supported layout (the official distribution, unpacked; ``root`` may be the folder holding ``CHiME3``,
``CHiME3`` itself, or its ``data`` folder)::

    CHiME3/data/audio/16kHz/isolated/{tr05,dt05,et05}_{bus,caf,ped,str}_{real,simu}/
        <SPK>_<WSJ>_<ENV>.CH<n>.wav          the 6 array channels (CH0 = close-talk for real)
    CHiME3/data/audio/16kHz/isolated/tr05_org/<SPK>_<WSJ>_ORG.wav          clean WSJ0 originals
    CHiME3/data/audio/16kHz/isolated/{dt05,et05}_bth/<SPK>_<WSJ>_BTH.CH0.wav  booth recordings
    CHiME3/data/audio/16kHz/isolated_ext/<set>_<env>_simu/<SPK>_<WSJ>_<ENV>.CH<n>.Clean.wav
    CHiME3/data/annotations/<split>_<real|simu>.json   list of {speaker, wsj_name, environment, dot, ...}
    CHiME3/data/transcriptions/<split>_<real|simu>.{dot_all,trn_all}  "<text> (<SPK>_<WSJ>_<ENV>)"

What is written: one channel (``CH5`` by default) of the isolated 1-channel track, real and simulated
together: ``train`` = tr05, ``valid`` = dt05, ``test`` = et05. Utterance ids are
``<SPK>_<WSJ>_<ENV>_<REAL|SIMU>``; ``utt2cond`` gives ``<env>_<real|simu>`` and no SNR. Transcripts
come from the JSON annotations (``dot`` field, else ``prompt``), else from the transcription files;
WSJ markup is removed (``[noise]`` tokens dropped; ``<>``, ``*``, ``~``, ``:`` and ``\\`` stripped) and
the text normalised with :func:`normalize_text`. Utterances without a transcript are skipped (counted).

Clean references (``spk1.scp``) exist for simulated utterances only; "real" ones are ASR-only. The
sample-aligned speech image from ``isolated_ext`` (``.CH<n>.Clean.wav``) is used when present. Without
it, the source the simulation started from is used: ``tr05_org`` for training, the booth recording for
dt05/et05. That fallback is NOT sample-aligned with the noisy channel (the simulation applies a
per-channel delay and filter), so ``gradremedy data check`` may report length mismatches; prefer the
``isolated_ext`` package. tr05_org itself (clean WSJ0 speech), the 2- and 6-channel tracks and the
enhanced baseline outputs are not written.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from gradremedy.data.kaldi_dir import Utterance, write_data_dir
from gradremedy.data.tokenizer import normalize_text
from gradremedy.errors import DataError

log = logging.getLogger(__name__)

SPLITS = {"tr05": "train", "dt05": "valid", "et05": "test"}
ENVIRONMENTS = ("bus", "caf", "ped", "str")
KINDS = ("real", "simu")
_DOT_LINE = re.compile(r"^(?P<text>.*)\((?P<id>[^()\s]+)\)\s*$")
_NOISE_TOKEN = re.compile(r"\[[^\]]*\]")


def find_chime3_data(root: Path) -> Path:
    """The ``CHiME3/data`` folder under ``root`` (``root`` may also be ``CHiME3`` or ``data`` itself)."""
    for candidate in (root / "CHiME3" / "data", root / "data", root):
        if (candidate / "audio" / "16kHz" / "isolated").is_dir():
            return candidate
    raise DataError(f"{root}: not a CHiME-4 distribution (no CHiME3/data/audio/16kHz/isolated inside)")


def clean_wsj_transcript(text: str) -> str:
    """WSJ/CHiME "dot" markup removed, then :func:`normalize_text`."""
    text = _NOISE_TOKEN.sub(" ", text)
    text = re.sub(r"[<>*~:\\]", "", text)
    return normalize_text(text)


def _read_transcripts(data: Path, split: str, kind: str) -> dict[str, str]:
    """``<SPK>_<WSJ>_<ENV>`` -> transcript, from the JSON annotations or the transcription files."""
    annotation = data / "annotations" / f"{split}_{kind}.json"
    if annotation.is_file():
        try:
            rows = json.loads(annotation.read_text(encoding="utf-8"))
            return {
                f"{row['speaker']}_{row['wsj_name']}_{row['environment']}".upper(): row.get("dot")
                or row["prompt"]
                for row in rows
            }
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{annotation}: not a CHiME annotation list ({err})") from None
    transcripts: dict[str, str] = {}
    for suffix in ("dot_all", "trn_all"):
        path = data / "transcriptions" / f"{split}_{kind}.{suffix}"
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            match = _DOT_LINE.match(line)
            if match:  # "<text> (<id>)"
                transcripts[match["id"].upper()] = match["text"]
            elif len(line.split(maxsplit=1)) == 2:  # "<id> <text>"
                key, text = line.split(maxsplit=1)
                transcripts[key.upper()] = text
            else:
                raise DataError(f"{path}:{number}: neither '<text> (<id>)' nor '<id> <text>'")
        return transcripts
    return transcripts


def _clean_reference(isolated: Path, split: str, env: str, base: str, channel: int) -> Path | None:
    ext = isolated.parent / "isolated_ext" / f"{split}_{env}_simu" / f"{base}.CH{channel}.Clean.wav"
    if ext.is_file():
        return ext
    speaker, wsj = base.split("_")[:2]
    if split == "tr05":
        original = isolated / "tr05_org" / f"{speaker}_{wsj}_ORG.wav"
    else:
        original = isolated / f"{split}_bth" / f"{speaker}_{wsj}_BTH.CH0.wav"
    return original if original.is_file() else None


def prepare_chime4(root: str | os.PathLike, out: str | os.PathLike, *, channel: int = 5) -> dict[str, int]:
    """Write ``out/{train,valid,test}`` from a CHiME-4 distribution; returns utterances per split."""
    data = find_chime3_data(Path(root).resolve())
    isolated = data / "audio" / "16kHz" / "isolated"
    counts = {}
    for split, name in SPLITS.items():
        utterances = []
        no_text = no_clean = 0
        for kind in KINDS:
            transcripts = _read_transcripts(data, split, kind)
            for env in ENVIRONMENTS:
                folder = isolated / f"{split}_{env}_{kind}"
                for wav in sorted(folder.glob(f"*.CH{channel}.wav")):
                    base = wav.name.split(".")[0].upper()  # <SPK>_<WSJ>_<ENV>
                    if base not in transcripts:
                        no_text += 1
                        continue
                    clean = _clean_reference(isolated, split, env, base, channel) if kind == "simu" else None
                    no_clean += kind == "simu" and clean is None
                    utterances.append(
                        Utterance(
                            utt_id=f"{base}_{kind.upper()}",
                            wav=str(wav),
                            clean=str(clean) if clean else None,
                            text=clean_wsj_transcript(transcripts[base]),
                            speaker=base.split("_")[0],
                            condition=f"{env}_{kind}",
                        )
                    )
        if no_text:
            log.warning("CHiME-4 %s: skipped %d utterance(s) without a transcript", split, no_text)
        if no_clean:
            log.warning("CHiME-4 %s: %d simulated utterance(s) without a clean reference", split, no_clean)
        if utterances:
            write_data_dir(Path(out) / name, utterances)
        counts[name] = len(utterances)
        log.info("CHiME-4 %s -> %s: %d utterances", split, Path(out) / name, len(utterances))
    if not any(counts.values()):
        raise DataError(f"{root}: no CH{channel} utterances with transcripts found")
    return counts
