"""``gradremedy data check``: everything wrong with a data directory, one line per problem.

Text files are checked by :func:`gradremedy.data.kaldi_dir.parse_data_dir` (malformed lines, bad
segment times, duplicate ids, ids missing from a file); here every audio file is read once (all the
segments of a recording from one read) for: missing or unreadable files, zero length, NaN or inf
samples, float samples beyond full scale, segments past the end of their recording, sample rates
other than the directory's majority, and noisy/clean length mismatch; transcripts are checked for
being empty after normalisation and, given a tokenizer, for characters it cannot represent.

Integer PCM and G.711 files in the uncompressed containers of :data:`HEADER_FORMATS` are checked from
their header alone: their samples can be neither non-finite nor beyond full scale, and libsndfile
reports the frames a file actually holds (a truncated file reports fewer frames, exactly the samples a
read returns; checked with libsndfile 1.2.2 for every container and subtype listed). Float files,
compressed formats (FLAC, Ogg, MP3, ADPCM ...), whose corruption shows only when decoding, and pipes
are read in full.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile

from gradremedy.data.audio import FLOAT_SUBTYPES, AudioInfo, describe, is_pipe, read_audio
from gradremedy.data.kaldi_dir import DataDir, Problem, Utterance, parse_data_dir
from gradremedy.data.tokenizer import Tokenizer, normalize_text
from gradremedy.errors import DataError

__all__ = ["Problem", "check_directory", "check_and_parse", "bad_utterances", "blocking_problems"]

# Uncompressed containers and integer (or G.711) sample formats whose header says all the check needs.
HEADER_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "AIFF", "CAF", "AU"})
HEADER_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW"})


def bad_utterances(problems: list[Problem]) -> set[str]:
    """Ids of the utterances that problems name (what ``--skip-bad`` leaves out)."""
    return {p.utt_id for p in problems if p.utt_id is not None and not p.structural}


def blocking_problems(problems: list[Problem]) -> list[Problem]:
    """Problems that skipping utterances cannot fix (malformed or duplicate lines, missing files)."""
    return [p for p in problems if p.structural or p.utt_id is None]


def _check_samples(utt_id: str, name: str, samples: np.ndarray, info: AudioInfo) -> list[Problem]:
    """Zero length, non-finite values and (for float files) values beyond full scale."""
    if samples.shape[0] == 0:
        return [Problem(utt_id, name, "empty audio (0 samples)")]
    finite = np.isfinite(samples)
    if not finite.all():
        return [Problem(utt_id, name, f"{int((~finite).sum())} NaN or infinite sample(s)")]
    peak = float(np.abs(samples).max())
    if info.subtype in FLOAT_SUBTYPES and peak > 1.0:
        return [Problem(utt_id, name, f"clipping: float samples beyond full scale (max |x| = {peak:.3g})")]
    return []


def _bounds(total: int, rate: int, segment: tuple[float, float] | None) -> slice | None:
    """The frames of ``segment`` (the whole recording for None) in a recording of ``total`` frames, or
    None when the segment ends past the recording's end (10 ms of rounding allowed)."""
    if segment is None:
        return slice(0, total)
    first, last = int(round(segment[0] * rate)), int(round(segment[1] * rate))
    if last > total + int(0.01 * rate) or first >= total:
        return None
    return slice(first, last)


def _header_info(source: str) -> AudioInfo | None:
    """The header of an integer-PCM file in an uncompressed container, None for anything that has to be
    decoded (float or compressed samples, a pipe) or that does not open (the full read names why)."""
    if is_pipe(source):
        return None
    try:
        with soundfile.SoundFile(source) as f:
            if f.format not in HEADER_FORMATS or f.subtype not in HEADER_SUBTYPES:
                return None
            return AudioInfo(f.samplerate, f.frames, f.channels, f.subtype)
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError):
        return None


def _check_audio(utterances: list[Utterance], which: str) -> tuple[list[Problem], dict[str, tuple[int, int]]]:
    """Read every source of ``which`` ("noisy" or "clean") once; return problems and (frames, rate)."""
    by_source: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utterances:
        source = utt.wav if which == "noisy" else utt.clean
        if source is not None:
            by_source[source].append(utt)
    problems: list[Problem] = []
    lengths: dict[str, tuple[int, int]] = {}
    for source, users in by_source.items():
        samples: np.ndarray | None = None  # (T, C), read only when the header cannot tell
        info = _header_info(source)
        if info is None:
            try:
                samples, _, info = read_audio(source)
            except DataError as err:
                reason = str(err).removeprefix(f"{source}: ")
                problems.extend(Problem(u.utt_id, source, reason) for u in users)
                continue
        rate = info.sample_rate
        for utt in users:
            segment = utt.segment if which == "noisy" else utt.clean_segment
            name = describe((source, *segment)) if segment else source
            frames = _bounds(info.frames, rate, segment)
            if frames is None:
                end = info.frames / rate
                problems.append(
                    Problem(utt.utt_id, name, f"segment ends past the recording's end ({end:g} s)")
                )
                continue
            if samples is not None:
                part = samples[frames]
                found = _check_samples(utt.utt_id, name, part, info)
                length = part.shape[0]
            else:  # integer samples: finite and within full scale by construction
                length = len(range(info.frames)[frames])
                found = [] if length else [Problem(utt.utt_id, name, "empty audio (0 samples)")]
            problems.extend(found)
            if not found:
                lengths[utt.utt_id] = (length, rate)
    return problems, lengths


def check_directory(
    path: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    untranscribed: str = "error",
) -> list[Problem]:
    """All the problems of a data directory (an empty list when it is clean).

    ``untranscribed="se_only"`` accepts utterances without a transcript that have a clean reference
    (SE-only training utterances; see :func:`gradremedy.data.kaldi_dir.parse_data_dir`). Raises
    :class:`DataError` only when ``path`` is missing or not a directory.
    """
    return check_and_parse(path, tokenizer_path, untranscribed)[1]


def check_and_parse(
    path: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    untranscribed: str = "error",
) -> tuple[DataDir, list[Problem]]:
    """The directory as :func:`gradremedy.data.kaldi_dir.parse_data_dir` reads it and all its problems
    (as :func:`check_directory`), from one parse. Without structural problems the directory is the one
    :func:`gradremedy.data.kaldi_dir.read_data_dir` returns."""
    data_dir, problems = parse_data_dir(path, untranscribed=untranscribed)
    tokenizer = Tokenizer.load(tokenizer_path) if tokenizer_path is not None else None
    text_file = str(Path(path) / "text")
    for utt in data_dir:
        if utt.text is None:
            continue
        if not normalize_text(utt.text):
            problems.append(Problem(utt.utt_id, text_file, "empty transcript"))
        elif tokenizer is not None:
            unknown = tokenizer.unknown_characters(utt.text)
            if unknown:
                listed = " ".join(repr(c) for c in sorted(unknown))
                problems.append(Problem(utt.utt_id, text_file, f"characters not in the tokenizer: {listed}"))

    utterances = list(data_dir)
    noisy_problems, noisy = _check_audio(utterances, "noisy")
    clean_problems, clean = _check_audio(utterances, "clean")
    problems += noisy_problems + clean_problems

    rates = Counter(rate for _, rate in noisy.values())
    if rates:
        majority = rates.most_common(1)[0][0]
        for utt in utterances:
            for which, lengths, source in (("noisy", noisy, utt.wav), ("clean", clean, utt.clean)):
                if utt.utt_id in lengths and lengths[utt.utt_id][1] != majority:
                    rate = lengths[utt.utt_id][1]
                    problems.append(
                        Problem(
                            utt.utt_id,
                            source,
                            f"{which} sample rate {rate} Hz differs from the "
                            f"directory's majority {majority} Hz",
                        )
                    )
    for utt_id in sorted(noisy.keys() & clean.keys()):
        (noisy_frames, noisy_rate), (clean_frames, clean_rate) = noisy[utt_id], clean[utt_id]
        if noisy_rate == clean_rate:
            mismatch = noisy_frames != clean_frames
        else:  # compare in time, allowing one sample of the coarser rate
            mismatch = abs(noisy_frames / noisy_rate - clean_frames / clean_rate) > 1.0 / min(
                noisy_rate, clean_rate
            )
        if mismatch:
            problems.append(
                Problem(
                    utt_id,
                    data_dir[utt_id].clean or "spk1.scp",
                    f"clean length {clean_frames / clean_rate:.4f} s ({clean_frames} samples) differs from "
                    f"noisy {noisy_frames / noisy_rate:.4f} s ({noisy_frames} samples)",
                )
            )
    return data_dir, problems
