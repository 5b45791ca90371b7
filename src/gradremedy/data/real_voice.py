"""The real-voice test set behind ``gradremedy data real-voice``: a human voice speaking the tiny vocabulary.

The source is Debian's ``asterisk-core-sounds-en-wav``: prompts recorded by Allison Smith for the
Asterisk PBX (CC-BY-SA 3.0), installed under ``/usr/share/asterisk/sounds/en_US_f_Allison``. Of her
recordings, those whose words are in the ``tiny`` vocabulary are used (:data:`WORD_FILES`): the NATO
alphabet (``phonetic/<letter>_p.wav``), the digits zero to nine (``digits/<n>.wav``) and the prompts
"and", "is", "message" and "received". Her letters (``letters/``) are spoken letter names, which the
tiny vocabulary does not have; the one letter that is a word, "i", is used by the tiny grammar only in
"i read you", which she does not say, so no letter is used.

Utterances are built in the tiny corpus's style (:data:`PATTERNS`: call signs, digit strings, spelled
groups, "message received ..."), 3 to 7 words. Each word is her recording, trimmed of its leading and
trailing silence, and the words are joined with natural gaps of 40-220 ms, with 0.1-0.4 s of silence
before and after (:data:`PAD_RANGE`). Two Kaldi directories share the utterance ids and texts:

- ``OUT/clean``: the clean utterances (``wav.scp`` and ``spk1.scp`` both the clean file);
- ``OUT/noisy``: the same utterances mixed with the corpus's noises (white, pink, brown, babble,
  recorded sound effects when ``openttd-opensfx`` is installed, and the RATS-like radio channel) at the
  corpus's SNRs (-5 to 20 dB), ``spk1.scp`` the clean reference, ``utt2cond`` the noise and SNR. The
  babble talkers are her other prompts (recordings not used as words), the only other real voice at
  hand. Both files of an utterance are brought to one level drawn from the corpus's -40..-15 dBFS.

Everything is rendered at 16 kHz (her 8 kHz files are resampled up; the noises and the radio channel
then work as in the corpus) and written at ``sample_rate``. An utterance depends only on ``(seed,
index)``; the set is resumable (each utterance's two files are written atomically, then a done marker
holding its spec) and the lists and the manifest ``real_voice.json`` are written last.

This voice is for testing only: never train on it, never choose a checkpoint or a setting by it. It
measures how a model trained on synthetic voices transfers to a human voice it has never heard.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from gradremedy.atomic import atomic_path, atomic_write_text
from gradremedy.data.synth import augment, noise
from gradremedy.data.synth.corpus import SAMPLE_RATE, list_lines, write_wav
from gradremedy.data.synth.opensfx import find_opensfx_archive, read_cat_archive
from gradremedy.data.synth.text import DIGIT_WORDS, NATO_WORDS
from gradremedy.errors import UserError

DEBIAN_PACKAGE = "asterisk-core-sounds-en-wav"
# Where the package puts her English prompts (``en`` is a link some Asterisk packages add).
SOUND_DIRS = (Path("/usr/share/asterisk/sounds/en_US_f_Allison"), Path("/usr/share/asterisk/sounds/en"))
RENDER_RATE = SAMPLE_RATE  # everything is rendered at the corpus's rate, then written at the requested one
DEFAULT_RATE = 8000  # the rate of configs/tiny.yaml's model and of her recordings
DEFAULT_UTTS = 100
SPEAKER = "allison"
SETS = ("clean", "noisy")
MANIFEST = "real_voice.json"
SNR_RANGE = (-5.0, 20.0)  # the tiny preset's
# Silence before and after, seconds: the tiny preset's until it went to 0.05-0.15 s; kept, so that
# real-voice scores stay comparable from version to version.
PAD_RANGE = (0.1, 0.4)
GAP_RANGE = (0.04, 0.22)  # silence between two words, seconds
LEVEL_RANGE = (-40.0, -15.0)  # dBFS, the corpus's level augmentation
BABBLE_FILES = 60  # other prompts drawn as babble talkers
_STREAM_PLAN, _STREAM_AUDIO, _STREAM_BABBLE = range(3)
# Prompts that are not a voice (tones, a monkey recording) are never babble talkers.
NOT_SPEECH = ("beep", "tone", "monkeys", "weasels")


def _word_files() -> dict[str, str]:
    files = {word: f"phonetic/{word[0]}_p.wav" for word in NATO_WORDS}
    files.update({word: f"digits/{n}.wav" for n, word in enumerate(DIGIT_WORDS)})
    files.update(
        {"and": "vm-and.wav", "is": "is.wav", "message": "vm-message.wav", "received": "vm-received.wav"}
    )
    return files


WORD_FILES: dict[str, str] = _word_files()  # word -> her recording, relative to the sounds folder


def _nato(rng: np.random.Generator) -> str:
    return str(rng.choice(NATO_WORDS))


def _digits(rng: np.random.Generator, low: int, high: int) -> str:
    return " ".join(str(d) for d in rng.choice(DIGIT_WORDS, size=int(rng.integers(low, high + 1))))


def _callsign(rng: np.random.Generator) -> str:
    return f"{_nato(rng)} {_digits(rng, 1, 2)}"


# The tiny grammar's shapes that her words can say (its procedure words "over", "out", ... she does not).
PATTERNS: tuple[Callable[[np.random.Generator], str], ...] = (
    lambda r: f"{_callsign(r)} {_callsign(r)}",
    lambda r: f"{_nato(r)} {_nato(r)} {_nato(r)} {_digits(r, 2, 2)}",
    lambda r: _digits(r, 3, 6),
    lambda r: f"message received {_callsign(r)}",
    lambda r: f"{_callsign(r)} and {_callsign(r)}",
    lambda r: f"{_callsign(r)} is {_callsign(r)}",
    lambda r: f"{_nato(r)} {_digits(r, 2, 4)}",
    lambda r: " ".join(_nato(r) for _ in range(int(r.integers(3, 6)))),
)
MIN_WORDS, MAX_WORDS = 3, 7


def real_voice_sentence(rng: np.random.Generator) -> str:
    """One utterance text of 3 to 7 words, every word one of :data:`WORD_FILES`."""
    while True:
        sentence = PATTERNS[int(rng.integers(len(PATTERNS)))](rng)
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            return sentence


@dataclass(frozen=True)
class RealVoiceSpec:
    """Everything needed to render one utterance; its JSON is the utterance's done marker."""

    utt_id: str
    index: int
    text: str
    gaps: tuple[float, ...]  # seconds between consecutive words
    pad_start: float
    pad_end: float
    level_dbfs: float
    noise: str
    snr_db: float
    sample_rate: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass
class RealVoiceSummary:
    """What a build did."""

    out: Path
    total: int
    written: int
    seconds: float


# ----------------------------------------------------------------------------------------------- sources


def find_sounds(sounds_dir: str | os.PathLike | None = None) -> Path:
    """The folder of her recordings: ``sounds_dir`` if given, else the package's; a one-line
    :class:`UserError` naming the package when it is not there, or the first word recording missing."""
    candidates = [Path(sounds_dir)] if sounds_dir is not None else list(SOUND_DIRS)
    for folder in candidates:
        if folder.is_dir():
            for word, name in WORD_FILES.items():
                if not (folder / name).is_file():
                    raise UserError(
                        f"{folder / name}: recording of '{word}' not found; reinstall the Debian package "
                        f"'{DEBIAN_PACKAGE}'"
                    )
            return folder
    where = candidates[0] if sounds_dir is not None else " or ".join(str(c) for c in SOUND_DIRS)
    raise UserError(
        f"{where}: Allison Smith's recordings not found; install the Debian package '{DEBIAN_PACKAGE}'"
    )


def read_recording(path: Path) -> np.ndarray:
    """A recording as float64 mono at :data:`RENDER_RATE`."""
    try:
        samples, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise UserError(f"{path}: unreadable recording ({err})") from None
    return augment.resample(samples.mean(axis=1), Fraction(RENDER_RATE, rate))


def trim_silence(x: np.ndarray, rate: int, threshold_db: float = 35.0, margin: float = 0.03) -> np.ndarray:
    """``x`` without its leading and trailing silence: 10 ms frames more than ``threshold_db`` below the
    loudest frame, keeping ``margin`` seconds on each side. An all-silent signal is returned whole."""
    frame = max(1, rate // 100)
    count = len(x) // frame
    if count == 0:
        return x
    energy = 10 * np.log10(np.mean(x[: count * frame].reshape(count, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy > energy.max() - threshold_db)
    keep = int(margin * rate)
    start = max(0, loud[0] * frame - keep)
    end = min(len(x), (loud[-1] + 1) * frame + keep)
    return x[start:end]


def load_words(sounds: Path) -> dict[str, np.ndarray]:
    """Her recording of every word of :data:`WORD_FILES`, at 16 kHz, trimmed."""
    return {
        word: trim_silence(read_recording(sounds / name), RENDER_RATE) for word, name in WORD_FILES.items()
    }


def babble_candidates(sounds: Path) -> list[Path]:
    """Her recordings that are not test words, not silence and not tones: the babble talkers to draw from."""
    used = {sounds / name for name in WORD_FILES.values()}
    return sorted(
        p
        for p in sounds.rglob("*.wav")
        if p not in used and p.parent.name != "silence" and not any(s in p.stem for s in NOT_SPEECH)
    )


def load_babble(sounds: Path, seed: int) -> list[np.ndarray]:
    """Up to :data:`BABBLE_FILES` of :func:`babble_candidates` (drawn by ``seed``), of at least 0.3 s;
    the word recordings themselves when there are none."""
    files = babble_candidates(sounds)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_BABBLE,)))
    if len(files) > BABBLE_FILES:
        files = [files[i] for i in sorted(rng.choice(len(files), BABBLE_FILES, replace=False))]
    pool = [trim_silence(read_recording(p), RENDER_RATE) for p in files]
    pool = [x for x in pool if len(x) >= 0.3 * RENDER_RATE]
    return pool or list(load_words(sounds).values())


def load_sfx() -> list[np.ndarray] | None:
    """The recorded sound effects at 16 kHz (as the corpus uses them), None without ``openttd-opensfx``."""
    archive = find_opensfx_archive()
    if archive is None:
        return None
    return [
        augment.resample(c.samples.astype(np.float64), Fraction(RENDER_RATE, c.sample_rate))
        for c in read_cat_archive(archive)
        if len(c.samples) >= 0.25 * c.sample_rate
    ]


# -------------------------------------------------------------------------------------------- plan, render


def corpus_noises(noise_types: Sequence[str] | None) -> tuple[tuple[str, ...], list[np.ndarray] | None]:
    """The noise types to draw from and the sound-effect clips they need (None when unused).

    ``None`` means the corpus's types, sound effects only when ``openttd-opensfx`` is installed (with a
    warning otherwise); unknown types, or ``sfx`` without the package, are a one-line :class:`UserError`.
    """
    sfx = None
    if noise_types is None or "sfx" in noise_types:
        sfx = load_sfx()
    if noise_types is None:
        noise_types = (
            noise.NOISE_TYPES if sfx is not None else tuple(t for t in noise.NOISE_TYPES if t != "sfx")
        )
        if sfx is None:
            print(
                "gradremedy: warning: openttd-opensfx is not installed; no sound-effect noise",
                file=sys.stderr,
            )
    unknown = [t for t in noise_types if t not in noise.NOISE_TYPES]
    if unknown or not noise_types:
        raise UserError(f"noise types {list(noise_types)}: need some of {', '.join(noise.NOISE_TYPES)}")
    if "sfx" in noise_types and not sfx:
        raise UserError("sound-effect noise needs the Debian package 'openttd-opensfx'")
    return tuple(noise_types), sfx


def stream_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def plan_real_voice(
    num_utts: int, seed: int, noise_types: Sequence[str], sample_rate: int
) -> list[RealVoiceSpec]:
    """The specs of every utterance; each drawn from its own ``(seed, index)`` generator."""
    width = max(5, len(str(num_utts - 1)))
    specs = []
    for index in range(num_utts):
        rng = stream_rng(seed, _STREAM_PLAN, index)
        text = real_voice_sentence(rng)
        specs.append(
            RealVoiceSpec(
                utt_id=f"{SPEAKER}-{index:0{width}d}",
                index=index,
                text=text,
                gaps=tuple(round(float(rng.uniform(*GAP_RANGE)), 3) for _ in range(len(text.split()) - 1)),
                pad_start=round(float(rng.uniform(*PAD_RANGE)), 3),
                pad_end=round(float(rng.uniform(*PAD_RANGE)), 3),
                level_dbfs=round(float(rng.uniform(*LEVEL_RANGE)), 1),
                noise=str(rng.choice(list(noise_types))),
                snr_db=round(float(rng.uniform(*SNR_RANGE)), 1),
                sample_rate=sample_rate,
            )
        )
    return specs


def join_with_gaps(
    pieces: Sequence[np.ndarray], gaps: Sequence[float], pad_start: float, pad_end: float
) -> np.ndarray:
    """A clean utterance at 16 kHz: ``pieces`` with ``gaps`` seconds between consecutive ones, after
    ``pad_start`` and before ``pad_end`` seconds of silence."""
    out = [np.zeros(int(round(pad_start * RENDER_RATE)))]
    for k, piece in enumerate(pieces):
        if k:
            out.append(np.zeros(int(round(gaps[k - 1] * RENDER_RATE))))
        out.append(piece)
    out.append(np.zeros(int(round(pad_end * RENDER_RATE))))
    return np.concatenate(out)


def speak(spec: RealVoiceSpec, words: dict[str, np.ndarray]) -> np.ndarray:
    """The clean utterance at 16 kHz: her words with the spec's gaps and padding."""
    return join_with_gaps([words[w] for w in spec.text.split()], spec.gaps, spec.pad_start, spec.pad_end)


def corrupt(
    speech: np.ndarray,
    noise_type: str,
    snr_db: float,
    level_dbfs: float,
    rng: np.random.Generator,
    babble_pool: Sequence[np.ndarray],
    sfx_clips: Sequence[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) at 16 kHz of clean ``speech`` at 16 kHz: one of the corpus's noises
    (:data:`gradremedy.data.synth.noise.NOISE_TYPES`) or its radio channel at ``snr_db``, then both
    brought to one level of ``level_dbfs``."""
    if noise_type == "radio":
        noisy = noise.radio_channel(speech, snr_db, rng, RENDER_RATE)
    else:
        additive = noise.make_noise(noise_type, len(speech), rng, babble_pool, sfx_clips)
        noisy = speech + noise.scale_to_snr(speech, additive, snr_db)
    gain = augment.set_level(noisy, speech, level_dbfs)
    return noisy * gain, speech * gain


# ------------------------------------------------------------------------------------------------- files


def audio_paths(out: Path, spec: RealVoiceSpec | Any) -> tuple[Path, Path, Path]:
    """(noisy wav, clean wav, done marker) of an utterance (of this set or of ``real_speech``'s)."""
    return (
        out / "audio" / "noisy" / f"{spec.utt_id}.wav",
        out / "audio" / "clean" / f"{spec.utt_id}.wav",
        out / "audio" / "done" / f"{spec.utt_id}.json",
    )


def is_complete(out: Path, spec: RealVoiceSpec | Any) -> bool:
    """True when the utterance's done marker holds this very spec and both its files exist."""
    noisy, clean, marker = audio_paths(out, spec)
    try:
        return marker.read_text(encoding="utf-8") == spec.to_json() and noisy.is_file() and clean.is_file()
    except (OSError, UnicodeDecodeError):
        return False


def write_utterance(
    out: Path,
    spec: RealVoiceSpec | Any,
    speech: np.ndarray,
    rng: np.random.Generator,
    babble_pool: Sequence[np.ndarray],
    sfx_clips: Sequence[np.ndarray],
) -> None:
    """Corrupt clean ``speech`` (16 kHz) as ``spec`` says (its noise, SNR and level), write its noisy and
    clean files at ``spec.sample_rate``, then its done marker (of this set or of ``real_speech``'s)."""
    noisy, clean = corrupt(speech, spec.noise, spec.snr_db, spec.level_dbfs, rng, babble_pool, sfx_clips)
    noisy_path, clean_path, marker = audio_paths(out, spec)
    write_wav(clean_path, clean, spec.sample_rate)
    write_wav(noisy_path, noisy, spec.sample_rate)
    with atomic_path(marker) as tmp:
        tmp.write_text(spec.to_json(), encoding="utf-8")


def write_lists(out: Path, specs: Sequence[RealVoiceSpec]) -> None:
    """``OUT/clean`` and ``OUT/noisy``: wav.scp, spk1.scp, text, utt2spk, spk2utt, utt2cond (atomic)."""
    paths = {s.utt_id: audio_paths(out, s) for s in specs}
    for name in SETS:
        noisy = name == "noisy"
        files = {
            "wav.scp": [(s.utt_id, str(paths[s.utt_id][0 if noisy else 1].resolve())) for s in specs],
            "spk1.scp": [(s.utt_id, str(paths[s.utt_id][1].resolve())) for s in specs],
            "text": [(s.utt_id, s.text) for s in specs],
            "utt2spk": [(s.utt_id, SPEAKER) for s in specs],
            "spk2utt": [(SPEAKER, " ".join(sorted(s.utt_id for s in specs)))],
            "utt2cond": [(s.utt_id, f"{s.noise} {s.snr_db:.1f}" if noisy else "clean -") for s in specs],
        }
        for file_name, rows in files.items():
            atomic_write_text(out / name / file_name, list_lines(rows))


def _settings(sample_rate: int, seed: int, num_utts: int) -> dict:
    return {"sample_rate": sample_rate, "seed": seed, "num_utts": num_utts}


def real_voice_ready(
    out: str | os.PathLike, sample_rate: int, seed: int = 1, num_utts: int = DEFAULT_UTTS
) -> bool:
    """True when ``out`` holds a finished build with these settings (its manifest is written last)."""
    try:
        manifest = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    settings = manifest.get("settings", {}) if isinstance(manifest, dict) else {}
    wanted = _settings(sample_rate, seed, num_utts)
    return all(settings.get(k) == v for k, v in wanted.items()) and all(
        (Path(out) / name / "wav.scp").is_file() for name in SETS
    )


def build_real_voice(
    out: str | os.PathLike,
    *,
    sample_rate: int = DEFAULT_RATE,
    seed: int = 1,
    num_utts: int = DEFAULT_UTTS,
    sounds_dir: str | os.PathLike | None = None,
    noise_types: Sequence[str] | None = None,
) -> RealVoiceSummary:
    """Build (or finish building) the real-voice test set in ``out``; see the module doc.

    ``noise_types`` defaults to the corpus's (sound effects only when ``openttd-opensfx`` is installed).
    """
    if num_utts < 1:
        raise UserError(f"--num-utts {num_utts}: need at least 1")
    if not 8000 <= sample_rate <= 48000:
        raise UserError(f"--sample-rate {sample_rate}: need 8000-48000 Hz")
    sounds = find_sounds(sounds_dir)
    noise_types, sfx = corpus_noises(noise_types)
    out = Path(out)
    start = time.perf_counter()
    specs = plan_real_voice(num_utts, seed, noise_types, sample_rate)
    for tmp in out.glob("audio/*/.*.tmp"):  # left by an interrupted build
        tmp.unlink(missing_ok=True)
    todo = [s for s in specs if not is_complete(out, s)]
    if todo:
        words = load_words(sounds)
        babble = load_babble(sounds, seed) if any(s.noise == "babble" for s in todo) else []
        for spec in todo:
            rng = stream_rng(seed, _STREAM_AUDIO, spec.index)
            write_utterance(out, spec, speak(spec, words), rng, babble, sfx or [])
    write_lists(out, specs)
    manifest = {
        "settings": _settings(sample_rate, seed, num_utts),
        "noise_types": list(noise_types),
        "sounds": str(sounds),
        "source": f"Debian package {DEBIAN_PACKAGE}: recordings by Allison Smith, CC-BY-SA 3.0",
        "words": WORD_FILES,
        "use": "testing only: never train on it or choose a checkpoint or a setting by it",
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    seconds = time.perf_counter() - start
    print(
        f"real-voice test set: {num_utts} utterances in {out}/{{clean,noisy}} "
        f"({len(todo)} written, {seconds:.1f} s)"
    )
    return RealVoiceSummary(out, num_utts, len(todo), seconds)
