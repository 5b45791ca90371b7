"""Kaldi/ESPnet data directories: reading, writing and the per-file consistency rules.

A directory holds, one entry per line, keyed by utterance id (or recording id where noted):

- ``wav.scp``   ``<id> <path>`` or ``<id> <command> |`` (the noisy input; keyed by recording if
  ``segments`` exists)
- ``segments``  ``<utt> <recording> <start-s> <end-s>`` (optional)
- ``text``      ``<utt> <transcript>``
- ``spk1.scp``  ``<id> <path or pipe>``: the clean reference (optional, may be partial: utterances
  without one, such as CHiME-4 "real" recordings, are used for the ASR loss only). With ``segments``
  an entry keyed by a recording is cut with the same segment times; one keyed by an utterance is the
  whole clean utterance.
- ``utt2spk``   ``<utt> <speaker>`` (without it, each utterance is its own speaker)
- ``utt2cond``  ``<utt> <condition or -> <snr-dB or ->`` (optional; for per-condition scoring)
- ``utt2aug``   ``<utt> <name=value ...>`` (optional; the augmentations of a synthetic utterance, kept
  as one string: dynamic mixing reads which ones act on the mixture)

Other files (``spk2utt``, ``feats.scp``, ...) are ignored. Relative audio paths are resolved against
the current directory first (the Kaldi convention), then against the directory and its ancestors.
Pipes run through the shell in the current directory; with pipes switched off (``allow_pipes=False``,
``gradremedy --no-pipes`` or ``GRADREMEDY_NO_PIPES=1``) an entry that is a pipe makes the directory
unreadable, with its file and line named, and nothing is run.

:func:`read_data_dir` refuses a directory it cannot read unambiguously (malformed lines, duplicate ids)
with a :class:`DataError` naming file and line; :func:`parse_data_dir` instead returns every
:class:`Problem` it finds next to what it could read, for ``gradremedy data check``.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gradremedy.atomic import atomic_write_text
from gradremedy.config import UNTRANSCRIBED_POLICIES
from gradremedy.data.audio import NO_PIPES_ENV, AudioInfo, AudioSpec, audio_info, is_pipe, pipes_allowed
from gradremedy.errors import DataError

log = logging.getLogger(__name__)

# file name -> (min fields, max fields or None); the last field of an open-ended file keeps its spaces.
TABLE_FIELDS: dict[str, tuple[int, int | None]] = {
    "wav.scp": (2, None),
    "spk1.scp": (2, None),
    "text": (1, None),
    "segments": (4, 4),
    "utt2spk": (2, 2),
    "utt2cond": (2, 3),
    "utt2aug": (1, None),
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data directory; ``str()`` is a single line naming utterance and file.

    ``structural`` problems (malformed lines, duplicate ids, missing ``wav.scp``) make the directory
    ambiguous to read; the others concern single utterances, which ``--skip-bad`` can leave out.
    """

    utt_id: str | None
    file: str
    reason: str
    structural: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        where = f"{self.utt_id}: {self.file}" if self.utt_id else self.file
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Utterance:
    """One utterance: noisy source (path or pipe), optional clean reference, transcript and labels."""

    utt_id: str
    wav: str
    clean: str | None
    text: str | None
    speaker: str
    condition: str | None = None
    snr: float | None = None
    segment: tuple[float, float] | None = None  # (start, end) seconds inside ``wav``
    recording: str | None = None  # the wav.scp key when ``segment`` is set
    clean_segment: tuple[float, float] | None = None  # cut of ``clean`` (keyed by recording)
    augmentations: str | None = None  # the ``utt2aug`` entry, e.g. "speed=1.0 bandlimit=0 codec=none"

    @property
    def noisy_spec(self) -> AudioSpec:
        return (self.wav, *self.segment) if self.segment else self.wav

    @property
    def clean_spec(self) -> AudioSpec | None:
        if self.clean is None:
            return None
        return (self.clean, *self.clean_segment) if self.clean_segment else self.clean


class DataDir:
    """The utterances of a data directory, in the order of their ids, with cached header info."""

    def __init__(self, path: str | os.PathLike, utterances: Iterable[Utterance]):
        self.path = Path(path)
        self.utterances: list[Utterance] = sorted(utterances, key=lambda u: u.utt_id)
        self._by_id = {u.utt_id: u for u in self.utterances}
        self._info: dict[str, AudioInfo] | None = None

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __getitem__(self, utt_id: str) -> Utterance:
        return self._by_id[utt_id]

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._by_id

    @property
    def ids(self) -> list[str]:
        return [u.utt_id for u in self.utterances]

    def audio_info(self) -> dict[str, AudioInfo]:
        """Header info of every noisy utterance (segments cut from one header read per recording).

        Computed once per :class:`DataDir` and kept; an unreadable file raises :class:`DataError`.
        """
        if self._info is None:
            headers: dict[str, AudioInfo] = {}
            info = {}
            for utt in self.utterances:
                if utt.wav not in headers:
                    headers[utt.wav] = audio_info(utt.wav)
                whole = headers[utt.wav]
                if utt.segment is None:
                    info[utt.utt_id] = whole
                else:
                    start, end = utt.segment
                    first = int(round(start * whole.sample_rate))
                    last = min(int(round(end * whole.sample_rate)), whole.frames)
                    info[utt.utt_id] = AudioInfo(
                        whole.sample_rate, max(last - first, 0), whole.channels, whole.subtype
                    )
            self._info = info
        return self._info

    def durations(self) -> dict[str, float]:
        """Seconds per utterance, from headers (or segment times), never from the samples."""
        return {utt_id: info.duration for utt_id, info in self.audio_info().items()}


def resolve_audio_path(entry: str, data_dir: Path) -> str:
    """Kaldi resolution: a pipe as is; a path relative to the current directory, then to ``data_dir``
    and its ancestors; an unresolvable path is returned (absolute, from the current directory) as given."""
    if is_pipe(entry):
        return entry
    candidate = Path(entry)
    if candidate.is_absolute() or candidate.exists():
        return os.path.abspath(candidate)
    for ancestor in [data_dir, *data_dir.resolve().parents]:
        if (ancestor / candidate).exists():
            return os.path.abspath(ancestor / candidate)
    return os.path.abspath(candidate)


def _read_table(path: Path, problems: list[Problem]) -> dict[str, tuple[int, list[str]]]:
    """Entries of one table file as ``key -> (line number, fields after the key)``; bad lines -> problems."""
    min_fields, max_fields = TABLE_FIELDS[path.name]
    entries: dict[str, tuple[int, list[str]]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        problems.append(Problem(None, str(path), "not valid UTF-8 text", structural=True))
        return entries
    except OSError as err:
        problems.append(Problem(None, str(path), f"unreadable ({err.strerror})", structural=True))
        return entries
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if max_fields is None:
            parts = line.strip().split(maxsplit=1)  # key, then the rest of the line as one field
        else:
            parts = line.split()
        key = parts[0]
        if len(parts) < min_fields or (max_fields is not None and len(parts) > max_fields):
            expected = f"{min_fields}" if min_fields == max_fields else f"at least {min_fields}"
            if max_fields is not None and max_fields != min_fields:
                expected = f"{min_fields} to {max_fields}"
            problems.append(
                Problem(
                    key,
                    where,
                    f"malformed line: expected {expected} fields, got {len(parts)}",
                    structural=True,
                )
            )
            continue
        if key in entries:
            first = entries[key][0]
            problems.append(Problem(key, where, f"duplicate id (first on line {first})", structural=True))
            continue
        entries[key] = (number, parts[1:])
    return entries


def _parse_segment(
    fields: list[str], key: str, where: str, problems: list[Problem]
) -> tuple[float, float] | None:
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        problems.append(Problem(key, where, f"bad segment times '{fields[1]} {fields[2]}'", structural=True))
        return None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
        problems.append(Problem(key, where, f"bad segment times '{fields[1]} {fields[2]}'", structural=True))
        return None
    if end <= start:
        problems.append(Problem(key, where, f"segment end {end:g} <= start {start:g}", structural=True))
        return None
    return start, end


def _parse_condition(
    fields: list[str], key: str, where: str, problems: list[Problem]
) -> tuple[str | None, float | None]:
    condition = None if fields[0] == "-" else fields[0]
    if len(fields) < 2 or fields[1] == "-":
        return condition, None
    try:
        snr = float(fields[1])
    except ValueError:
        snr = math.nan
    if not math.isfinite(snr):
        problems.append(
            Problem(key, where, f"bad SNR '{fields[1]}' (a number in dB or '-')", structural=True)
        )
        return condition, None
    return condition, snr


Table = dict[str, tuple[int, list[str]]]  # id -> (line number, fields after the id)


def parse_data_dir(
    path: str | os.PathLike, allow_pipes: bool | None = None, untranscribed: str = "error"
) -> tuple[DataDir, list[Problem]]:
    """Read what can be read of a directory and list every problem of its text files.

    Audio is not opened here (see :mod:`gradremedy.data.check`). Raises :class:`DataError` only when
    ``path`` is not a directory. ``allow_pipes=False`` makes every ``cmd |`` entry a structural problem;
    None follows the process setting (:func:`gradremedy.data.audio.pipes_allowed`). With
    ``untranscribed="se_only"`` an utterance (or the whole directory) may lack a transcript when it has
    a clean reference (an SE-only training utterance); one with neither is a problem. With ``"error"``
    every utterance needs a transcript.
    """
    if untranscribed not in UNTRANSCRIBED_POLICIES:
        allowed = ", ".join(UNTRANSCRIBED_POLICIES)
        raise ValueError(f"untranscribed must be one of {allowed}, got {untranscribed!r}")
    se_only = untranscribed == "se_only"
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: data directory not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    problems: list[Problem] = []
    tables: dict[str, Table] = {}
    for name in TABLE_FIELDS:
        if (root / name).is_file():
            tables[name] = _read_table(root / name, problems)
    if "wav.scp" not in tables:
        problems.append(Problem(None, str(root / "wav.scp"), "missing (required)", structural=True))
        return DataDir(root, []), problems
    if "text" not in tables and not se_only:
        problems.append(Problem(None, str(root / "text"), "missing (required)"))
    if not (pipes_allowed() if allow_pipes is None else allow_pipes):
        _refuse_pipes(root, tables, problems)

    recordings = {key: resolve_audio_path(fields[0], root) for key, (_, fields) in tables["wav.scp"].items()}
    sources = _sources(root, tables, recordings, problems)
    for name, required_for_all in (
        ("text", not se_only),
        ("utt2spk", True),
        ("spk1.scp", False),
        ("utt2cond", True),
        ("utt2aug", False),
    ):
        _crosscheck(root, name, tables, sources, recordings, required_for_all, problems)
    utterances = [
        _utterance(root, utt_id, recording, segment, recordings, tables, problems)
        for utt_id, (recording, segment) in sources.items()
    ]
    if se_only:
        problems.extend(
            Problem(
                u.utt_id,
                str(root / "text"),
                "no transcript and no clean reference (an untranscribed utterance needs spk1.scp)",
            )
            for u in utterances
            if u.text is None and u.clean is None
        )
    return DataDir(root, utterances), problems


def _sources(
    root: Path, tables: dict[str, Table], recordings: dict[str, str], problems: list[Problem]
) -> dict[str, tuple[str, tuple[float, float] | None]]:
    """utterance id -> (recording key, segment or None): from ``segments`` when it exists."""
    if "segments" not in tables:
        return {key: (key, None) for key in recordings}
    sources: dict[str, tuple[str, tuple[float, float] | None]] = {}
    for utt_id, (number, fields) in tables["segments"].items():
        where = f"{root / 'segments'}:{number}"
        segment = _parse_segment(fields, utt_id, where, problems)
        if segment is None:
            continue
        if fields[0] not in recordings:
            problems.append(Problem(utt_id, where, f"recording '{fields[0]}' is not in wav.scp"))
            continue
        sources[utt_id] = (fields[0], segment)
    return sources


def _crosscheck(
    root: Path,
    name: str,
    tables: dict[str, Table],
    sources: dict[str, tuple[str, tuple[float, float] | None]],
    recordings: dict[str, str],
    required_for_all: bool,
    problems: list[Problem],
) -> None:
    """Ids of table ``name`` that are not utterances (nor, for ``spk1.scp`` with segments, recordings),
    and with ``required_for_all`` the utterances it lacks."""
    table = tables.get(name)
    if table is None:
        return
    listing = "segments" if "segments" in tables else "wav.scp"
    for key, (number, _) in table.items():
        in_recordings = name == "spk1.scp" and "segments" in tables and key in recordings
        if key not in sources and not in_recordings:
            problems.append(Problem(key, f"{root / name}:{number}", f"id not in {listing}"))
    if required_for_all:
        for utt_id in sources:
            if utt_id not in table:
                problems.append(Problem(utt_id, str(root / name), f"missing (the id is in {listing})"))


def _utterance(
    root: Path,
    utt_id: str,
    recording: str,
    segment: tuple[float, float] | None,
    recordings: dict[str, str],
    tables: dict[str, Table],
    problems: list[Problem],
) -> Utterance:
    """One utterance from the tables: its clean reference (whole, or cut like the noisy segment), text,
    speaker and condition."""
    text, utt2spk = tables.get("text", {}), tables.get("utt2spk", {})
    spk1, utt2cond = tables.get("spk1.scp", {}), tables.get("utt2cond", {})
    utt2aug = tables.get("utt2aug", {})
    clean = clean_segment = None
    if utt_id in spk1:
        clean = resolve_audio_path(spk1[utt_id][1][0], root)
    elif segment is not None and recording in spk1:
        clean = resolve_audio_path(spk1[recording][1][0], root)
        clean_segment = segment
    condition = snr = None
    if utt_id in utt2cond:
        number, fields = utt2cond[utt_id]
        condition, snr = _parse_condition(fields, utt_id, f"{root / 'utt2cond'}:{number}", problems)
    return Utterance(
        utt_id=utt_id,
        wav=recordings[recording],
        clean=clean,
        text=(text[utt_id][1][0] if text[utt_id][1] else "") if utt_id in text else None,
        speaker=utt2spk[utt_id][1][0] if utt_id in utt2spk else utt_id,
        condition=condition,
        snr=snr,
        segment=segment,
        recording=recording if segment is not None else None,
        clean_segment=clean_segment,
        augmentations=(utt2aug[utt_id][1][0] if utt2aug[utt_id][1] else "") if utt_id in utt2aug else None,
    )


def _refuse_pipes(
    root: Path, tables: dict[str, dict[str, tuple[int, list[str]]]], problems: list[Problem]
) -> None:
    """A structural problem for each ``cmd |`` entry of ``wav.scp`` and ``spk1.scp``."""
    for name in ("wav.scp", "spk1.scp"):
        for key, (number, fields) in tables.get(name, {}).items():
            if fields and is_pipe(fields[0]):
                reason = (
                    f"a shell pipe ('{fields[0]}'), refused: pipes are off (--no-pipes / {NO_PIPES_ENV}=1)"
                )
                problems.append(Problem(key, f"{root / name}:{number}", reason, structural=True))


def read_data_dir(
    path: str | os.PathLike, allow_pipes: bool | None = None, untranscribed: str = "error"
) -> DataDir:
    """Read a data directory; a malformed file raises :class:`DataError` naming file and line.

    Problems that concern single utterances (an id missing from ``text``, say) do not stop reading:
    such an utterance has ``text=None``; ``gradremedy data check`` reports them. ``allow_pipes`` and
    ``untranscribed`` as for :func:`parse_data_dir`.
    """
    data_dir, problems = parse_data_dir(path, allow_pipes, untranscribed)
    structural = [p for p in problems if p.structural]
    if structural:
        more = (
            f" (and {len(structural) - 1} more problem(s); run 'gradremedy data check')"
            if len(structural) > 1
            else ""
        )
        raise DataError(f"{structural[0]}{more}")
    return data_dir


def write_data_dir(path: str | os.PathLike, utterances: Iterable[Utterance]) -> None:
    """Write utterances as a sorted Kaldi directory (each file atomically).

    Writes ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``, and when used ``segments`` (``wav.scp`` then
    lists recordings), ``spk1.scp``, ``utt2cond`` and ``utt2aug``.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    utts = sorted(utterances, key=lambda u: u.utt_id)
    counts = Counter(u.utt_id for u in utts)
    duplicated = [utt_id for utt_id, n in counts.items() if n > 1]
    if duplicated:
        raise DataError(f"{root}: duplicate utterance id '{duplicated[0]}'")
    segmented = any(u.segment is not None for u in utts)
    if segmented and not all(u.segment is not None and u.recording for u in utts):
        raise DataError(f"{root}: mixing segmented and whole-file utterances needs a recording id for each")

    def lines(rows: Iterable[tuple[str, str]]) -> str:
        return "".join(f"{key} {value}".rstrip() + "\n" for key, value in sorted(set(rows)))

    if segmented:
        atomic_write_text(root / "wav.scp", lines((u.recording, u.wav) for u in utts))
        atomic_write_text(
            root / "segments",
            lines((u.utt_id, f"{u.recording} {u.segment[0]:.3f} {u.segment[1]:.3f}") for u in utts),
        )
    else:
        atomic_write_text(root / "wav.scp", lines((u.utt_id, u.wav) for u in utts))
    atomic_write_text(root / "text", lines((u.utt_id, u.text or "") for u in utts))
    atomic_write_text(root / "utt2spk", lines((u.utt_id, u.speaker) for u in utts))
    spk2utt: dict[str, list[str]] = defaultdict(list)
    for u in utts:
        spk2utt[u.speaker].append(u.utt_id)
    atomic_write_text(root / "spk2utt", lines((spk, " ".join(ids)) for spk, ids in spk2utt.items()))
    with_clean = [u for u in utts if u.clean is not None]
    if with_clean:
        rows = []
        for u in with_clean:
            if u.clean_segment is not None:
                if u.clean_segment != u.segment:
                    raise DataError(f"{u.utt_id}: a clean cut must use the noisy segment times")
                rows.append((u.recording, u.clean))
            else:
                rows.append((u.utt_id, u.clean))
        atomic_write_text(root / "spk1.scp", lines(rows))
    if any(u.condition is not None for u in utts):
        atomic_write_text(
            root / "utt2cond",
            lines((u.utt_id, f"{u.condition or '-'} {'-' if u.snr is None else f'{u.snr:g}'}") for u in utts),
        )
    if any(u.augmentations is not None for u in utts):
        atomic_write_text(
            root / "utt2aug", lines((u.utt_id, u.augmentations) for u in utts if u.augmentations is not None)
        )
