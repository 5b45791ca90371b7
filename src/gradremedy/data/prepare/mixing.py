"""Noisy copies of a clean read-speech corpus (LibriSpeech, Common Voice) for the joint SE + ASR task.

Real corpora are clean speech with no separate clean reference, while the joint model needs a noisy
input (``wav.scp``) and its clean reference (``spk1.scp``). :func:`mix_split` writes, once and offline,
a noisy copy of every utterance, mixed as the embedded corpus mixes: one of its noises (white, pink,
brown, babble, recorded sound effects when ``openttd-opensfx`` is installed, or the RATS-like radio
channel) at an SNR drawn from -5..20 dB. ``spk1.scp`` names the clean reference.

The copy is written at 16 kHz (16-bit FLAC, ``OUT/audio/<split>/<utt>.flac``) from the original read
at 16 kHz by the data loader's own resampler. A 16 kHz original (LibriSpeech) is its own reference; an
original at another rate (Common Voice's 48 kHz MP3) gets a 16 kHz FLAC copy as its reference
(``OUT/audio/<split>/clean/``), since the data check wants input and reference at one rate and
length. Babble talkers are up to :data:`BABBLE_TALKERS` other utterances of the same split. An
utterance's noise, SNR and samples depend only on ``(seed, utterance id)``: the copies do not depend
on the order or the number of worker processes, and an interrupted run resumes (each copy is written
atomically; existing copies are kept).
Mixing does not rescale the speech; the few samples of a loud utterance that the noise pushes past
full scale are clipped, and their count is logged.
"""

from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from gradremedy.atomic import atomic_path
from gradremedy.data.audio import audio_info, is_pipe, load_audio
from gradremedy.data.kaldi_dir import Utterance
from gradremedy.data.synth import augment, noise
from gradremedy.data.synth.opensfx import find_opensfx_archive, read_cat_archive
from gradremedy.errors import DataError

log = logging.getLogger(__name__)

MIX_RATE = 16000
SNR_RANGE = (-5.0, 20.0)  # the embedded corpus's
BABBLE_TALKERS = 24
BABBLE_SECONDS = 10.0  # each babble talker is cut to this length


def _rng(seed: int, utt_id: str, stream: int) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(utt_id.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, key, stream]))


def noise_types() -> tuple[tuple[str, ...], Path | None]:
    """The corpus's noise types available here, and the sound-effect archive (None: not installed)."""
    archive = find_opensfx_archive()
    types = noise.NOISE_TYPES if archive else tuple(t for t in noise.NOISE_TYPES if t != "sfx")
    return types, archive


def plan_noise(seed: int, utt_id: str, types: Sequence[str]) -> tuple[str, float]:
    """(noise type, SNR dB) of an utterance, from ``(seed, utt_id)`` alone."""
    rng = _rng(seed, utt_id, 0)
    return str(rng.choice(list(types))), round(float(rng.uniform(*SNR_RANGE)), 1)


def mix(
    speech: np.ndarray,
    kind: str,
    snr_db: float,
    rng: np.random.Generator,
    babble_pool: Sequence[np.ndarray],
    sfx_clips: Sequence[np.ndarray],
    rate: int = MIX_RATE,
) -> np.ndarray:
    """``speech`` with the corpus's noise ``kind`` at ``snr_db``, or through its radio channel."""
    if kind == "radio":
        return noise.radio_channel(speech, snr_db, rng, rate)
    additive = noise.make_noise(kind, len(speech), rng, babble_pool, sfx_clips)
    return speech + noise.scale_to_snr(speech, additive, snr_db)


@dataclass
class _MixState:
    babble_files: list[str]
    archive: Path | None
    seed: int
    babble: list[np.ndarray] | None = None
    sfx: list[np.ndarray] | None = None

    def babble_pool(self) -> list[np.ndarray]:
        if self.babble is None:
            limit = int(BABBLE_SECONDS * MIX_RATE)
            self.babble = [load_audio(f, MIX_RATE).astype(np.float64)[:limit] for f in self.babble_files]
        return self.babble

    def sfx_clips(self) -> list[np.ndarray]:
        if self.sfx is None:
            clips = read_cat_archive(self.archive) if self.archive else []
            self.sfx = [
                augment.resample(c.samples.astype(np.float64), Fraction(MIX_RATE, c.sample_rate))
                for c in clips
                if len(c.samples) >= 0.25 * c.sample_rate
            ]
        return self.sfx


_STATE: _MixState | None = None


def _init(state: _MixState) -> None:
    global _STATE
    _STATE = state


def _write_flac(path: str | Path, samples: np.ndarray) -> None:
    buffer = io.BytesIO()
    sf.write(
        buffer, np.clip(samples, -1.0, 1.0).astype(np.float32), MIX_RATE, format="FLAC", subtype="PCM_16"
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _mix_one(job: tuple[str, str, str, str, float, str | None]) -> tuple[str, int]:
    """One noisy copy (and the 16 kHz clean copy ``copy`` if given); returns (utt_id, samples clipped)."""
    utt_id, source, target, kind, snr_db, copy = job
    state = _STATE
    assert state is not None, "worker not initialised"
    try:
        speech = load_audio(source, MIX_RATE).astype(np.float64)
    except (OSError, RuntimeError, ValueError) as err:
        raise DataError(f"{utt_id}: {source}: unreadable audio ({err})") from None
    if len(speech) == 0 or not np.any(speech):
        raise DataError(f"{utt_id}: {source}: silent or empty audio")
    babble = state.babble_pool() if kind == "babble" else []
    sfx = state.sfx_clips() if kind == "sfx" else []
    noisy = mix(speech, kind, snr_db, _rng(state.seed, utt_id, 1), babble, sfx)
    clipped = int(np.count_nonzero(np.abs(noisy) > 1.0))
    if copy is not None:
        _write_flac(copy, speech)
    _write_flac(target, noisy)
    return utt_id, clipped


def mix_split(
    utterances: Sequence[Utterance], audio_dir: Path, *, seed: int, jobs: int | None = None
) -> list[Utterance]:
    """Noisy copies of ``utterances`` (whose ``wav`` is clean speech) in ``audio_dir``; returns them with
    ``wav`` the copy, ``clean`` the original and ``condition``/``snr`` the noise and its SNR."""
    types, archive = noise_types()
    if archive is None:
        log.warning("openttd-opensfx is not installed: no sound-effect noise in the mix")
    ordered = sorted(utterances, key=lambda u: u.utt_id)
    pick = _rng(seed, "babble", 2)
    count = min(BABBLE_TALKERS, len(ordered))
    babble_files = [ordered[int(i)].wav for i in sorted(pick.choice(len(ordered), count, replace=False))]
    mixed, jobs_todo = [], []
    for utt in ordered:
        kind, snr_db = plan_noise(seed, utt.utt_id, types)
        target = audio_dir / f"{utt.utt_id}.flac"
        # The data check wants reference and input at one rate and length: a source at another rate (an
        # MP3, whose header is not read: it can take a full decode, or a pipe) gets a 16 kHz copy as its
        # reference, read by the same resampler as the mix.
        clean = utt.wav
        if (
            is_pipe(utt.wav)
            or utt.wav.lower().endswith(".mp3")
            or audio_info(utt.wav).sample_rate != MIX_RATE
        ):
            clean = str((audio_dir / "clean" / f"{utt.utt_id}.flac").resolve())
        mixed.append(replace(utt, wav=str(target.resolve()), clean=clean, condition=kind, snr=snr_db))
        if not target.is_file() or not Path(clean).is_file():
            copy = clean if clean != utt.wav else None
            jobs_todo.append((utt.utt_id, utt.wav, str(target), kind, snr_db, copy))
    for tmp in [*audio_dir.glob(".*.tmp"), *audio_dir.glob("clean/.*.tmp")]:  # left by an interrupted run
        tmp.unlink(missing_ok=True)
    state = _MixState(babble_files, archive, seed)
    jobs = min(jobs or os.cpu_count() or 1, max(1, len(jobs_todo)))
    clipped = 0
    if jobs_todo:
        log.info("mixing %d utterance(s) into %s with %d process(es)", len(jobs_todo), audio_dir, jobs)
    if jobs <= 1:
        _init(state)
        results = [_mix_one(job) for job in jobs_todo]
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(jobs, initializer=_init, initargs=(state,)) as pool:
            results = list(pool.imap_unordered(_mix_one, jobs_todo, chunksize=8))
    for utt_id, n in results:
        if n:
            clipped += 1
            log.debug("%s: %d sample(s) clipped", utt_id, n)
    if clipped:
        log.warning("%s: %d noisy cop(ies) clipped at full scale", audio_dir, clipped)
    return mixed
