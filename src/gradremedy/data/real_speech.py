"""The real-speech SE set behind ``gradremedy data real-speech``: real human voices without transcripts.

The source is Debian's ``asterisk-core-sounds-<lang>-wav`` packages: the Asterisk PBX prompts of other
languages, recorded by real speakers (CC-BY-SA), installed under ``/usr/share/asterisk/sounds/<lang>``
(a link to the speaker's folder, e.g. ``fr_CA_f_June``). Their words are not in the ``tiny``
vocabulary and there is no English transcript, so the set teaches the SE task only: train on it with
``data.untranscribed: se_only`` (and ``data.extra_train: [OUT]``, see docs/data.md).

An utterance is a few recordings of one language (trimmed of their silence, each 0.3-3 s) joined with
gaps of 40-220 ms and 0.1-0.4 s of silence before and after, filled up to a length drawn from the
corpus's 1.5-4 s. It is mixed like the real-voice test set (:func:`gradremedy.data.real_voice.corrupt`):
one of the corpus's noises or its radio channel at the corpus's SNRs (-5 to 20 dB), babble talkers
drawn from the same language's other recordings, both files brought to one level of -40..-15 dBFS.
The languages take turns, so each has the same number of utterances.

``OUT`` is one Kaldi directory: ``wav.scp`` (noisy), ``spk1.scp`` (clean reference), ``utt2spk``,
``spk2utt`` and ``utt2cond``, and no ``text``. Rendering is at 16 kHz and the files are written at
``sample_rate``. An utterance depends only on ``(seed, index)`` and the installed recordings; the set is
resumable (each utterance's two files are written atomically, then a done marker holding its spec) and
the lists and the manifest ``real_speech.json`` are written last.

Allison Smith's voice is the real-voice test set's (:mod:`gradremedy.data.real_voice`) and is never
trained on: her English prompts are not used, and a language whose recordings are hers (Debian's Spanish
package installs ``es_MX_f_Allison``) is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradremedy.atomic import atomic_write_text
from gradremedy.data.real_voice import (
    GAP_RANGE,
    LEVEL_RANGE,
    NOT_SPEECH,
    PAD_RANGE,
    RENDER_RATE,
    SNR_RANGE,
    audio_paths,
    corpus_noises,
    is_complete,
    join_with_gaps,
    read_recording,
    stream_rng,
    trim_silence,
    write_utterance,
)
from gradremedy.data.synth.corpus import list_lines
from gradremedy.errors import UserError

SOUNDS_ROOT = Path("/usr/share/asterisk/sounds")
LANGUAGES = ("es", "fr", "it", "ru")  # Debian's other asterisk-core-sounds-<lang>-wav packages
DEFAULT_LANGUAGES = ("fr", "it", "ru")  # es is Allison Smith's voice: refused
TEST_SPEAKER = "allison"  # the real-voice test set's speaker: never trained on
DEFAULT_RATE = 8000
DEFAULT_UTTS = 2400
DURATION_RANGE = (1.5, 4.0)  # seconds, the tiny corpus's utterance lengths
RECORDING_RANGE = (0.3, 3.0)  # seconds of a usable recording after trimming
MANIFEST = "real_speech.json"
_STREAM_PLAN, _STREAM_AUDIO = 10, 11  # apart from real_voice's streams


def debian_package(language: str) -> str:
    return f"asterisk-core-sounds-{language}-wav"


@dataclass(frozen=True)
class RealSpeechSpec:
    """Everything needed to render one utterance; its JSON is the utterance's done marker."""

    utt_id: str
    index: int
    speaker: str  # the recordings' folder, e.g. fr_CA_f_June
    files: tuple[str, ...]  # recordings, relative to the speaker's folder
    gaps: tuple[float, ...]  # seconds between consecutive recordings
    pad_start: float
    pad_end: float
    level_dbfs: float
    noise: str
    snr_db: float
    sample_rate: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass
class RealSpeechSummary:
    """What a build did."""

    out: Path
    total: int
    written: int
    seconds: float


# ----------------------------------------------------------------------------------------------- sources


def find_language(language: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of one language's recordings (``root/<lang>``, or the one ``root/<lang>_*`` folder),
    links resolved; a one-line :class:`UserError` naming the Debian package when there is none, or when
    the recordings are the real-voice test speaker's."""
    root = Path(root) if root is not None else SOUNDS_ROOT
    folder = root / language
    if not folder.is_dir():
        found = sorted(p for p in root.glob(f"{language}_*") if p.is_dir()) if root.is_dir() else []
        if not found:
            package = debian_package(language)
            raise UserError(f"{folder}: no '{language}' recordings; install the Debian package '{package}'")
        folder = found[0]
    folder = folder.resolve()
    if TEST_SPEAKER in folder.name.lower():
        raise UserError(
            f"{folder}: the '{language}' recordings are Allison Smith's, the real-voice test speaker, "
            "never trained on; choose other languages"
        )
    return folder


def recording_files(folder: Path) -> list[Path]:
    """The folder's recordings that are speech: not silence, tones or other non-voice prompts."""
    return sorted(
        p
        for p in folder.rglob("*.wav")
        if p.parent.name != "silence" and not any(s in p.stem for s in NOT_SPEECH)
    )


def load_recordings(folder: Path) -> dict[str, np.ndarray]:
    """Relative name -> the recording at 16 kHz, trimmed, for those of :data:`RECORDING_RANGE` seconds."""
    low, high = (int(s * RENDER_RATE) for s in RECORDING_RANGE)
    pool = {}
    for path in recording_files(folder):
        samples = trim_silence(read_recording(path), RENDER_RATE)
        if low <= len(samples) <= high:
            pool[path.relative_to(folder).as_posix()] = samples
    if not pool:
        raise UserError(f"{folder}: no recording of {RECORDING_RANGE[0]}-{RECORDING_RANGE[1]} s of speech")
    return pool


# -------------------------------------------------------------------------------------------- plan, render


def _choose_files(
    rng: np.random.Generator, names: Sequence[str], seconds: np.ndarray, budget: float
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Recordings drawn (with replacement) while they still fit ``budget`` seconds with their gaps; at
    least one (the shortest if none fits)."""
    files: list[str] = []
    gaps: list[float] = []
    total = 0.0
    while True:
        gap = round(float(rng.uniform(*GAP_RANGE)), 3) if files else 0.0
        fitting = np.flatnonzero(total + gap + seconds <= budget)
        if fitting.size == 0:
            if not files:
                files.append(names[int(np.argmin(seconds))])
            return tuple(files), tuple(gaps)
        choice = int(fitting[int(rng.integers(fitting.size))])
        if files:
            gaps.append(gap)
        files.append(names[choice])
        total += gap + float(seconds[choice])


def plan_real_speech(
    num_utts: int,
    seed: int,
    pools: dict[str, dict[str, np.ndarray]],
    noise_types: Sequence[str],
    sample_rate: int,
) -> list[RealSpeechSpec]:
    """The specs of every utterance (``pools``: speaker folder -> its recordings); the speakers take
    turns and each utterance is drawn from its own ``(seed, index)`` generator."""
    speakers = sorted(pools)
    lengths = {
        s: (sorted(pools[s]), np.array([len(pools[s][n]) / RENDER_RATE for n in sorted(pools[s])]))
        for s in speakers
    }
    width = max(5, len(str(num_utts - 1)))
    specs = []
    for index in range(num_utts):
        rng = stream_rng(seed, _STREAM_PLAN, index)
        speaker = speakers[index % len(speakers)]
        pad_start = round(float(rng.uniform(*PAD_RANGE)), 3)
        pad_end = round(float(rng.uniform(*PAD_RANGE)), 3)
        target = float(rng.uniform(*DURATION_RANGE))
        names, seconds = lengths[speaker]
        files, gaps = _choose_files(rng, names, seconds, target - pad_start - pad_end)
        specs.append(
            RealSpeechSpec(
                utt_id=f"{speaker}-{index:0{width}d}",
                index=index,
                speaker=speaker,
                files=files,
                gaps=gaps,
                pad_start=pad_start,
                pad_end=pad_end,
                level_dbfs=round(float(rng.uniform(*LEVEL_RANGE)), 1),
                noise=str(rng.choice(list(noise_types))),
                snr_db=round(float(rng.uniform(*SNR_RANGE)), 1),
                sample_rate=sample_rate,
            )
        )
    return specs


def join(spec: RealSpeechSpec, recordings: dict[str, np.ndarray]) -> np.ndarray:
    """The clean utterance at 16 kHz: the spec's recordings with its gaps and padding."""
    return join_with_gaps([recordings[n] for n in spec.files], spec.gaps, spec.pad_start, spec.pad_end)


# ------------------------------------------------------------------------------------------------- files


def write_lists(out: Path, specs: Sequence[RealSpeechSpec]) -> None:
    """``OUT``'s wav.scp, spk1.scp, utt2spk, spk2utt and utt2cond (atomic); no text."""
    paths = {s.utt_id: audio_paths(out, s) for s in specs}
    by_speaker: dict[str, list[str]] = {}
    for s in specs:
        by_speaker.setdefault(s.speaker, []).append(s.utt_id)
    files = {
        "wav.scp": [(s.utt_id, str(paths[s.utt_id][0].resolve())) for s in specs],
        "spk1.scp": [(s.utt_id, str(paths[s.utt_id][1].resolve())) for s in specs],
        "utt2spk": [(s.utt_id, s.speaker) for s in specs],
        "spk2utt": [(speaker, " ".join(sorted(ids))) for speaker, ids in by_speaker.items()],
        "utt2cond": [(s.utt_id, f"{s.noise} {s.snr_db:.1f}") for s in specs],
    }
    for file_name, rows in files.items():
        atomic_write_text(out / file_name, list_lines(rows))


def build_real_speech(
    out: str | os.PathLike,
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    sample_rate: int = DEFAULT_RATE,
    seed: int = 1,
    num_utts: int = DEFAULT_UTTS,
    sounds_root: str | os.PathLike | None = None,
    noise_types: Sequence[str] | None = None,
) -> RealSpeechSummary:
    """Build (or finish building) the real-speech SE set in ``out``; see the module doc.

    ``noise_types`` defaults to the corpus's (sound effects only when ``openttd-opensfx`` is installed).
    """
    if num_utts < 1:
        raise UserError(f"--num-utts {num_utts}: need at least 1")
    if not 8000 <= sample_rate <= 48000:
        raise UserError(f"--sample-rate {sample_rate}: need 8000-48000 Hz")
    languages = list(dict.fromkeys(languages))
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown or not languages:
        raise UserError(f"--languages {','.join(languages)}: need some of {', '.join(LANGUAGES)}")
    start = time.perf_counter()
    folders = [find_language(lang, sounds_root) for lang in languages]
    noise_types, sfx = corpus_noises(noise_types)
    pools = {folder.name: load_recordings(folder) for folder in folders}
    out = Path(out)
    specs = plan_real_speech(num_utts, seed, pools, noise_types, sample_rate)
    for tmp in out.glob("audio/*/.*.tmp"):  # left by an interrupted build
        tmp.unlink(missing_ok=True)
    todo = [s for s in specs if not is_complete(out, s)]
    babble = {speaker: list(pool.values()) for speaker, pool in pools.items()}
    for spec in todo:
        rng = stream_rng(seed, _STREAM_AUDIO, spec.index)
        write_utterance(out, spec, join(spec, pools[spec.speaker]), rng, babble[spec.speaker], sfx or [])
    write_lists(out, specs)
    manifest = {
        "settings": {"sample_rate": sample_rate, "seed": seed, "num_utts": num_utts, "languages": languages},
        "noise_types": list(noise_types),
        "speakers": {folder.name: str(folder) for folder in folders},
        "source": "Debian packages " + ", ".join(debian_package(lang) for lang in languages) + ", CC-BY-SA",
        "use": "SE training only (no transcripts): data.untranscribed=se_only",
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    seconds = time.perf_counter() - start
    print(f"real-speech SE set: {num_utts} utterances in {out} ({len(todo)} written, {seconds:.1f} s)")
    return RealSpeechSummary(out, num_utts, len(todo), seconds)
