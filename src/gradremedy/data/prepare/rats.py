"""LDC RATS (KWS or SAD release layout) -> ``OUT/{train,valid,test}`` for one transceiver channel.

Assumed layout, from the LDC READMEs of the RATS SAD (LDC2015S02) and KWS (LDC2017S20) corpora::

    <root>/data/{train,dev-1,dev-2}/audio/[<lng>/]{A..H,src}/<name>.flac
    <root>/data/{train,dev-1,dev-2}/<annotation folder>/[<lng>/]{A..H,src}/<name>.tab

    source files:       <iiiii>_<lng>_src.{flac,tab}
    transceiver files:  <iiiii>_<jjjjj>_<lng>_<c>.{flac,tab}

The annotation folder's name (``sad``, ``kws``, ...) does not matter: every ``.tab`` outside ``audio/``
is read and matched to the FLAC file of the same name. Each ``.tab`` row has 12 tab-separated columns:
partition, file id, start, end (seconds), SAD label (S, NS, NT, RX), SAD provenance, speaker id, SID
provenance, language, LID provenance, transcript, transcript provenance.

What is written: every segment labelled ``S`` with a non-empty transcript on the chosen channel (``A``
by default, as in the Gradient Remedy paper) becomes an utterance ``<file id>_<start ms>`` (a Kaldi
``segments`` entry into the FLAC recording). SAD-only releases have empty transcripts and so give no
utterances. ``train`` <- train, ``valid`` <- dev-1, ``test`` <- dev-2; ``utt2cond`` holds the channel.
Transcripts are normalised with :func:`normalize_text`; no language-specific cleaning is done.

Clean references: the channel recordings are retransmissions of the ``src`` file, offset in time by a
session-specific amount. For each channel segment the ``src`` segment with the same transcript and
the nearest start time (within ``max_offset`` seconds) is taken, and its first N samples (N = the
channel segment's length) are cut with a ``sox ... trim |`` pipe in ``spk1.scp``; segments without a
match are ASR-only. The cut starts at the src segment's annotated start, so its alignment is only as
good as the LDC annotation (tens of milliseconds); it is not re-aligned by cross-correlation.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import soundfile

from gradremedy.data.kaldi_dir import Utterance, write_data_dir
from gradremedy.data.tokenizer import normalize_text
from gradremedy.errors import DataError

log = logging.getLogger(__name__)

PARTITIONS = {"train": "train", "dev-1": "valid", "dev-2": "test"}
CHANNELS = ("A", "B", "C", "D", "E", "F", "G", "H")


@dataclass(frozen=True)
class Segment:
    """One speech segment of a ``.tab`` file."""

    start: float
    end: float
    speaker: str
    transcript: str


def read_tab(path: Path) -> list[Segment]:
    """Speech (``S``) segments with a transcript; malformed rows raise :class:`DataError` with file:line."""
    segments = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) < 5:
            raise DataError(f"{path}:{number}: expected 12 tab-separated columns, got {len(columns)}")
        columns += [""] * (12 - len(columns))
        try:
            start, end = float(columns[2]), float(columns[3])
        except ValueError:
            raise DataError(f"{path}:{number}: bad times '{columns[2]}' '{columns[3]}'") from None
        transcript = normalize_text(columns[10])
        if columns[4].strip() != "S" or not transcript:
            continue
        if end <= start:
            raise DataError(f"{path}:{number}: segment end {end:g} <= start {start:g}")
        segments.append(Segment(start, end, columns[6].strip(), transcript))
    return segments


def _match_source(segment: Segment, source: list[Segment], max_offset: float) -> Segment | None:
    candidates = [
        s for s in source if s.transcript == segment.transcript and abs(s.start - segment.start) <= max_offset
    ]
    return min(candidates, key=lambda s: abs(s.start - segment.start), default=None)


def prepare_rats(
    root: str | os.PathLike, out: str | os.PathLike, *, channel: str = "A", max_offset: float = 5.0
) -> dict[str, int]:
    """Write ``out/{train,valid,test}`` from a RATS release; returns utterances per split."""
    root = Path(root).resolve()
    if channel not in CHANNELS:
        raise DataError(f"RATS channel must be one of {', '.join(CHANNELS)}, got '{channel}'")
    data = root / "data"
    if not data.is_dir():
        raise DataError(f"{root}: not a RATS release (no data/ folder)")
    counts = {}
    for partition, name in PARTITIONS.items():
        part = data / partition
        if not part.is_dir():
            counts[name] = 0
            continue
        audio = {p.stem: p for p in (part / "audio").rglob("*.flac")}
        tabs = {p.stem: p for p in part.rglob("*.tab") if (part / "audio") not in p.parents}
        utterances = []
        unmatched = 0
        for file_id in sorted(audio):
            if not file_id.endswith(f"_{channel}") or file_id not in tabs:
                continue
            flac = audio[file_id]
            source_id = "_".join([file_id.split("_")[0], file_id.split("_")[-2], "src"])  # <iiiii>_<lng>_src
            source = read_tab(tabs[source_id]) if source_id in tabs and source_id in audio else []
            source_rate = soundfile.info(str(audio[source_id])).samplerate if source else 0
            rate = soundfile.info(str(flac)).samplerate
            for segment in read_tab(tabs[file_id]):
                match = _match_source(segment, source, max_offset)
                clean = None
                if match is not None:
                    first = int(round(match.start * source_rate))
                    frames = int(round(segment.end * rate)) - int(round(segment.start * rate))
                    frames = frames * source_rate // rate if source_rate != rate else frames
                    src = shlex.quote(str(audio[source_id]))
                    clean = f"sox {src} -t wav - trim {first}s {frames}s |"
                else:
                    unmatched += 1
                utterances.append(
                    Utterance(
                        utt_id=f"{file_id}_{int(round(segment.start * 1000)):08d}",
                        wav=str(flac),
                        clean=clean,
                        text=segment.transcript,
                        speaker=segment.speaker or "_".join(file_id.split("_")[:2]),
                        condition=channel,
                        segment=(segment.start, segment.end),
                        recording=file_id,
                    )
                )
        if unmatched:
            log.warning(
                "RATS %s: %d segment(s) without a matching src segment (ASR only)", partition, unmatched
            )
        if utterances:
            write_data_dir(Path(out) / name, utterances)
        counts[name] = len(utterances)
        log.info(
            "RATS %s channel %s -> %s: %d utterances", partition, channel, Path(out) / name, len(utterances)
        )
    if not any(counts.values()):
        raise DataError(f"{root}: no channel-{channel} speech segments with transcripts found")
    return counts
