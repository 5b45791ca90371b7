"""The corpus builder behind ``gradremedy data synth``: plan, synthesise in parallel, resume, write lists.

1. *Plan* (main process, cheap): speakers for train/valid/test/babble, then one :class:`UtteranceSpec`
   per utterance from ``(seed, utterance index)`` alone: text, speaker, noise type, SNR, augmentations.
2. *Synthesise* (worker processes): each spec becomes a noisy and a clean 16-bit WAV, written
   atomically, then a done marker holding the spec. Its noise is drawn from its own generator, so
   files do not depend on the number of workers or the order they run in. Everything is rendered at
   16 kHz; a corpus written at another rate (``--sample-rate``, e.g. 8 kHz) is resampled last, so that
   it has the same content, and the babble sources, mixed before writing, stay at 16 kHz.
3. *Resume*: a spec whose marker exists and matches is skipped; leftover temporary files are removed.
4. *Lists*: ``wav.scp``, ``spk1.scp``, ``text``, ``utt2spk``, ``spk2utt``, ``utt2cond`` and
   ``utt2aug`` of each split are written only at the end, atomically, sorted by utterance id.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import multiprocessing
import multiprocessing.pool
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from gradremedy.atomic import atomic_path, atomic_write_text
from gradremedy.data.synth import augment, noise, text
from gradremedy.data.synth.engines import (
    EngineInventory,
    Speaker,
    SynthRequest,
    discover_engines,
    fixed_addresses_prefix,
    synthesize,
)
from gradremedy.data.synth.opensfx import find_opensfx_archive, read_cat_archive
from gradremedy.errors import UserError

SAMPLE_RATE = 16000  # the rate everything is rendered at
OUTPUT_RATES = range(8000, 48001)  # what --sample-rate accepts
SPLITS = ("train", "valid", "test")
_ENGINE_WEIGHTS = {"espeak": 0.5, "flite": 0.3, "festival": 0.2}
# Streams of the seed sequence: every random choice is keyed by (seed, stream, index).
_STREAM_SPEAKERS, _STREAM_PLAN, _STREAM_AUDIO, _STREAM_TEXT, _STREAM_BABBLE = range(5)
_SMALL_CHUNK = 8  # espeak/flite utterances per task: keeps the progress bar and the load smooth
_FESTIVAL_CHUNK_MAX = 160  # festival utterances per process: its start-up is paid once per chunk


@dataclass(frozen=True)
class Preset:
    """Size and recipe of a corpus."""

    name: str
    default_utts: int
    utts_per_speaker: int
    babble_speakers: int
    babble_sentences: int
    snr_range: tuple[float, float] = (-5.0, 20.0)
    pad_range: tuple[float, float] = (0.1, 0.4)  # silence before and after the speech, seconds
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    sample_rate: int = SAMPLE_RATE  # of the written files; rendering is always at 16 kHz


PRESETS = {
    # tiny: 5 utterances per speaker, so that the 9,600 training utterances come from 1,920 voices: with
    # few voices per utterance count (20 per speaker, 96 voices in 2,400 utterances) the tiny model learns
    # the training voices and not the task (training accuracy 0.99, held-out validation WER near 70 %).
    # 9,600 rather than 4,800 training utterances: the tiny model is data-limited, and at the same 2,400
    # `sum` steps the larger set gives 32.9 % test WER against 41.2 % (results/recipe_probes_data/). Valid
    # and test stay at 600 utterances each (1/18 of the corpus).
    # Written at 8 kHz, the rate of radio speech and of the authors' RATS recipe: configs/tiny.yaml's model
    # runs at 8 kHz, which costs less per step, and loading needs no resampling.
    # 0.05-0.15 s of silence before and after the speech, not 0.1-0.4 s: the engines leave some of their
    # own, and with the longer pads 28 % of each clean utterance was silence. Utterances are 2.27 s long on
    # average instead of 2.57 s, so every training step costs less; the demo's test WER went from 34.9 /
    # 33.9 / 32.9 % (asr_only / sum / gr) to 30.3 / 32.2 / 31.6 % (results/demo/NOTE.md).
    "tiny": Preset(
        "tiny",
        default_utts=10800,
        utts_per_speaker=5,
        babble_speakers=8,
        babble_sentences=6,
        split_fractions=(16 / 18, 1 / 18, 1 / 18),
        sample_rate=8000,
        pad_range=(0.05, 0.15),
    ),
    "read": Preset("read", default_utts=20000, utts_per_speaker=40, babble_speakers=12, babble_sentences=8),
}


@dataclass(frozen=True)
class UtteranceSpec:
    """Everything needed to render one utterance; its JSON is the utterance's done marker."""

    utt_id: str
    index: int
    split: str  # train | valid | test | babble
    speaker: Speaker
    text: str
    noise: str = "none"  # one of noise.NOISE_TYPES, or "none" for babble source speech
    snr_db: float = 0.0
    speed: str = "1"  # a Fraction as text, e.g. "11/10"
    vtlp: str = "1"
    pitch_semitones: float = 0.0
    rt60: float = 0.0  # 0: no reverberation
    bandlimit: bool = False
    codec: str = "none"  # none | mulaw8k | gsm
    level_dbfs: float = -25.0
    pad_start: float = 0.0
    pad_end: float = 0.0
    sample_rate: int = SAMPLE_RATE  # of the written files

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass
class CorpusPlan:
    """Speakers by split and the specs of the babble sources and of the corpus utterances."""

    speakers: dict[str, list[Speaker]]
    babble: list[UtteranceSpec]
    utterances: list[UtteranceSpec]


@dataclass
class SynthSummary:
    """What a run did: counts, wall time and throughput (utterances synthesised in this run per second)."""

    out: Path
    total: int
    synthesised: int
    skipped: int
    seconds: float

    @property
    def utts_per_second(self) -> float:
        return self.synthesised / self.seconds if self.seconds > 0 else 0.0


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def make_speakers(
    count: int, rng: np.random.Generator, inventory: EngineInventory, prefix: str, first: int, width: int
) -> list[Speaker]:
    """``count`` speakers: an engine (weighted), a voice, an espeak variant, a pitch and a rate factor."""
    engines = inventory.engines()
    weights = np.array([_ENGINE_WEIGHTS[e] for e in engines])
    speakers = []
    for k in range(count):
        engine = engines[int(rng.choice(len(engines), p=weights / weights.sum()))]
        variant = ""
        if engine == "espeak":
            voice = str(rng.choice(inventory.espeak_dialects))
            if inventory.espeak_variants and rng.random() < 0.9:
                variant = str(rng.choice(inventory.espeak_variants))
        elif engine == "flite":
            voice = str(rng.choice(inventory.flite_voices))
        else:
            voice = str(rng.choice(inventory.festival_voices))
        pitch = round(float(np.exp(rng.uniform(np.log(0.75), np.log(1.4)))), 3)
        rate = round(float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))), 3)
        speaker_id = f"{prefix}{first + k:0{width}d}"
        speakers.append(Speaker(speaker_id, engine, voice, variant, pitch, rate))
    return speakers


def split_sizes(total: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Utterances per split: at least one each, the rest as close to ``fractions`` as rounding allows."""
    valid = max(1, round(total * fractions[1]))
    test = max(1, round(total * fractions[2]))
    return total - valid - test, valid, test


def plan_corpus(
    preset: Preset,
    num_utts: int,
    seed: int,
    inventory: EngineInventory,
    disabled: frozenset[str],
    noise_types: tuple[str, ...],
    sentence_pool: list[str] | None,
) -> CorpusPlan:
    """The whole corpus as specs (no audio). ``sentence_pool`` is None for the ``tiny`` grammar."""
    sizes = dict(zip(SPLITS, split_sizes(num_utts, preset.split_fractions)))
    counts = {s: min(n, max(2, math.ceil(n / preset.utts_per_speaker))) for s, n in sizes.items()}
    speakers = _plan_speakers(preset, counts, seed, inventory)
    pools = _sentence_pools(sentence_pool, seed) if sentence_pool is not None else None

    babble = []
    for b, speaker in enumerate(speakers["babble"]):
        for k in range(preset.babble_sentences):
            index = b * preset.babble_sentences + k
            rng = _rng(seed, _STREAM_BABBLE, index)
            utt_id = f"{speaker.speaker_id}-{k:03d}"
            babble.append(UtteranceSpec(utt_id, index, "babble", speaker, _sentence(rng, "babble", pools)))

    index_width = max(5, len(str(num_utts - 1)))
    utterances = []
    index = 0
    for split in SPLITS:
        for j in range(sizes[split]):
            rng = _rng(seed, _STREAM_PLAN, index)
            speaker = speakers[split][j % counts[split]]
            utt_id = f"{speaker.speaker_id}-{index:0{index_width}d}"
            utterances.append(
                _plan_utterance(rng, utt_id, index, split, speaker, preset, disabled, noise_types, pools)
            )
            index += 1
    return CorpusPlan(speakers=speakers, babble=babble, utterances=utterances)


def _plan_speakers(
    preset: Preset, counts: dict[str, int], seed: int, inventory: EngineInventory
) -> dict[str, list[Speaker]]:
    """Speakers per split (ids numbered across the splits) and the babble speakers, from one stream."""
    width = max(3, len(str(sum(counts.values()) - 1)))
    speaker_rng = _rng(seed, _STREAM_SPEAKERS)
    speakers: dict[str, list[Speaker]] = {}
    first = 0
    for split in SPLITS:
        speakers[split] = make_speakers(counts[split], speaker_rng, inventory, "sp", first, width)
        first += counts[split]
    speakers["babble"] = make_speakers(preset.babble_speakers, speaker_rng, inventory, "bb", 0, 2)
    return speakers


def _sentence_pools(sentence_pool: list[str], seed: int) -> dict[str, list[str]]:
    """The sentence pool in text-disjoint parts: a tenth each for valid and test, the rest for the others."""
    order = _rng(seed, _STREAM_TEXT).permutation(len(sentence_pool))
    shuffled = [sentence_pool[i] for i in order]
    n_valid = max(1, len(shuffled) // 10)
    return {
        "valid": shuffled[:n_valid],
        "test": shuffled[n_valid : 2 * n_valid],
        "train": shuffled[2 * n_valid :],
        "babble": shuffled[2 * n_valid :],
    }


def _sentence(rng: np.random.Generator, split: str, pools: dict[str, list[str]] | None) -> str:
    """A sentence of the ``tiny`` grammar (no pools), or one drawn from the split's pool."""
    if pools is None:
        return text.tiny_sentence(rng)
    pool = pools[split]
    return pool[int(rng.integers(len(pool)))]


def _plan_utterance(
    rng: np.random.Generator,
    utt_id: str,
    index: int,
    split: str,
    speaker: Speaker,
    preset: Preset,
    disabled: frozenset[str],
    noise_types: tuple[str, ...],
    pools: dict[str, list[str]] | None,
) -> UtteranceSpec:
    """One utterance's random choices, drawn from ``rng`` in a fixed order (the order is part of the
    corpus: changing it changes every file)."""
    noise_type = str(rng.choice(noise_types))
    return UtteranceSpec(
        utt_id=utt_id,
        index=index,
        split=split,
        speaker=speaker,
        text=_sentence(rng, split, pools),
        noise=noise_type,
        snr_db=round(float(rng.uniform(*preset.snr_range)), 1),
        speed=str(rng.choice(augment.SPEED_FACTORS)) if "speed" not in disabled else "1",
        vtlp=str(rng.choice(augment.VTLP_FACTORS)) if "vtlp" not in disabled else "1",
        pitch_semitones=round(float(rng.uniform(-2, 2)), 2) if "pitch" not in disabled else 0.0,
        rt60=round(float(rng.uniform(0.15, 0.7)), 3)
        if "reverb" not in disabled and rng.random() < 0.5
        else 0.0,
        bandlimit=noise_type != "radio" and "bandlimit" not in disabled and rng.random() < 0.2,
        codec=str(rng.choice(["mulaw8k", "gsm"]))
        if noise_type != "radio" and "codec" not in disabled and rng.random() < 0.2
        else "none",
        level_dbfs=round(float(rng.uniform(-40, -15)), 1) if "level" not in disabled else -25.0,
        pad_start=round(float(rng.uniform(*preset.pad_range)), 3),
        pad_end=round(float(rng.uniform(*preset.pad_range)), 3),
    )


# ----------------------------------------------------------------------------------------------------
# Files of one utterance


def audio_paths(out: Path, spec: UtteranceSpec) -> tuple[Path, Path, Path]:
    """(noisy wav, clean wav, done marker) of an utterance; babble sources have no noisy file."""
    base = out / "audio" / spec.split
    return (
        base / "noisy" / f"{spec.utt_id}.wav",
        base / "clean" / f"{spec.utt_id}.wav",
        base / "done" / f"{spec.utt_id}.json",
    )


def is_complete(out: Path, spec: UtteranceSpec) -> bool:
    """True when the utterance's marker holds this very spec and its audio files exist."""
    noisy, clean, marker = audio_paths(out, spec)
    try:
        if marker.read_text(encoding="utf-8") != spec.to_json():
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        return False
    return clean.exists() and (spec.split == "babble" or noisy.exists())


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM WAV of 16 kHz ``samples`` at ``sample_rate``, encoded in memory and written in one go
    through a temporary file."""
    samples = augment.resample(samples, Fraction(sample_rate, SAMPLE_RATE))
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), sample_rate, subtype="PCM_16", format="WAV")
    _write_bytes(path, buffer.getvalue())


def _write_bytes(path: Path, data: bytes) -> None:
    """Atomic against interruption (temporary file + rename). No fsync: a killed run is what resuming
    guards against, and syncing two thousand small files costs more than rebuilding them."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# ----------------------------------------------------------------------------------------------------
# Worker side


@dataclass
class _WorkerState:
    out: Path
    seed: int
    babble_files: list[Path]
    sfx_archive: Path | None
    babble_pool: list[np.ndarray] | None = None
    sfx_clips: list[np.ndarray] | None = None

    def get_babble(self) -> list[np.ndarray]:
        if self.babble_pool is None:
            self.babble_pool = [sf.read(p, dtype="float64")[0] for p in self.babble_files]
        return self.babble_pool

    def get_sfx(self) -> list[np.ndarray]:
        if self.sfx_clips is None:
            clips = read_cat_archive(self.sfx_archive) if self.sfx_archive else []
            self.sfx_clips = [
                augment.resample(c.samples.astype(np.float64), Fraction(SAMPLE_RATE, c.sample_rate))
                for c in clips
                if len(c.samples) >= 0.25 * c.sample_rate
            ]
        return self.sfx_clips


_STATE: _WorkerState | None = None


def _init_worker(out: Path, seed: int, babble_files: list[Path], sfx_archive: Path | None) -> None:
    global _STATE
    _STATE = _WorkerState(out, seed, babble_files, sfx_archive)


def _request(spec: UtteranceSpec) -> SynthRequest:
    """The engine request: pitch and tempo already compensated for the VTLP resampling to come."""
    alpha = Fraction(spec.vtlp)
    pitch = 2.0 ** (spec.pitch_semitones / 12.0) / float(alpha)
    return SynthRequest(spec.speaker, text.tts_text(spec.text), pitch=pitch, rate=1.0 / float(alpha))


def speech_from_engine(spec: UtteranceSpec, wave: np.ndarray, rate: int) -> np.ndarray:
    """Engine output -> 16 kHz, then speed and VTLP resampling (one polyphase pass each)."""
    speech = augment.resample(wave.astype(np.float64), Fraction(SAMPLE_RATE, rate))
    warp = 1 / (Fraction(spec.vtlp) * Fraction(spec.speed))
    speech = augment.resample(speech, warp)
    return speech / (np.sqrt(np.mean(speech**2)) + 1e-12) * 0.05


def render(
    spec: UtteranceSpec,
    speech: np.ndarray,
    rng: np.random.Generator,
    babble_pool: list[np.ndarray],
    sfx_clips: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) at 16 kHz from 16 kHz speech: padding, reverb, noise, channel, level."""
    pad = (int(round(spec.pad_start * SAMPLE_RATE)), int(round(spec.pad_end * SAMPLE_RATE)))
    clean = np.pad(speech, pad)
    if spec.rt60 > 0:
        rir, _ = augment.random_rir(rng, SAMPLE_RATE, rt60=spec.rt60)
        clean = augment.reverberate(clean, rir)
    if spec.noise == "radio":
        noisy = noise.radio_channel(clean, spec.snr_db, rng, SAMPLE_RATE)
    else:
        additive = noise.make_noise(spec.noise, len(clean), rng, babble_pool, sfx_clips)
        noisy = clean + noise.scale_to_snr(clean, additive, spec.snr_db)
        if spec.bandlimit:
            noisy = augment.bandlimit(noisy, rng, SAMPLE_RATE)
        if spec.codec == "mulaw8k":
            noisy = augment.mulaw_8k(noisy, SAMPLE_RATE)
        elif spec.codec == "gsm":
            noisy = augment.gsm_like(noisy, SAMPLE_RATE)
    gain = augment.set_level(noisy, clean, spec.level_dbfs)
    return noisy * gain, clean * gain


def _work(specs: list[UtteranceSpec]) -> list[tuple[str, float]]:
    """Render and write a chunk of utterances; returns (utt_id, seconds of audio) per utterance."""
    state = _STATE
    assert state is not None, "worker not initialised"
    waves = synthesize([_request(spec) for spec in specs])
    done = []
    for spec, (wave, rate) in zip(specs, waves):
        speech = speech_from_engine(spec, wave, rate)
        noisy_path, clean_path, marker = audio_paths(state.out, spec)
        if spec.split == "babble":
            write_wav(clean_path, speech / (np.max(np.abs(speech)) + 1e-12) * 0.5)
            duration = len(speech) / SAMPLE_RATE
        else:
            rng = _rng(state.seed, _STREAM_AUDIO, spec.index)
            sfx = state.get_sfx() if spec.noise == "sfx" else []
            babble = state.get_babble() if spec.noise == "babble" else []
            noisy, clean = render(spec, speech, rng, babble, sfx)
            write_wav(clean_path, clean, spec.sample_rate)
            write_wav(noisy_path, noisy, spec.sample_rate)
            duration = len(noisy) / SAMPLE_RATE
        _write_bytes(marker, spec.to_json().encode("utf-8"))
        done.append((spec.utt_id, duration))
    return done


def _chunks(specs: list[UtteranceSpec], jobs: int) -> list[list[UtteranceSpec]]:
    """Festival utterances in a few large chunks (one festival process each), the rest in small ones."""
    festival = [s for s in specs if s.speaker.engine == "festival"]
    others = [s for s in specs if s.speaker.engine != "festival"]
    chunks = []
    if festival:
        size = min(_FESTIVAL_CHUNK_MAX, max(1, math.ceil(len(festival) / (2 * jobs))))
        chunks += [festival[i : i + size] for i in range(0, len(festival), size)]
    chunks += [others[i : i + _SMALL_CHUNK] for i in range(0, len(others), _SMALL_CHUNK)]
    return chunks


def _run_chunks(
    chunks: list[list[UtteranceSpec]], pool: multiprocessing.pool.Pool | None, desc: str, total: int
) -> Iterator[list[tuple[str, float]]]:
    """Run the chunks on the pool (or here, in order, when there is none) under a progress bar."""
    bar = tqdm(total=total, desc=desc, unit="utt", file=sys.stderr, disable=total == 0, leave=False)
    try:
        results = pool.imap_unordered(_work, chunks) if pool is not None else map(_work, chunks)
        for result in results:
            bar.update(len(result))
            yield result
    finally:
        bar.close()


def _open_pool(jobs: int, init_args: tuple) -> multiprocessing.pool.Pool | None:
    """A process pool, or None for ``jobs == 1`` (everything then runs in this process).

    Workers are forked where the platform allows it: they inherit numpy/scipy already imported and
    start in milliseconds. The pool is created before any progress bar starts its monitor thread.
    """
    if jobs == 1:
        _init_worker(*init_args)
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(jobs, initializer=_init_worker, initargs=init_args)


# ----------------------------------------------------------------------------------------------------
# Lists


def list_lines(rows: Iterable[tuple[str, str]]) -> str:
    """A Kaldi list: one ``key value`` line per row, sorted."""
    return "".join(f"{key} {value}\n" for key, value in sorted(rows))


def write_lists(out: Path, plan: CorpusPlan) -> None:
    """The Kaldi/ESPnet lists of every split, each written atomically, sorted by id."""
    for split in SPLITS:
        specs = sorted((s for s in plan.utterances if s.split == split), key=lambda s: s.utt_id)
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        paths = {s.utt_id: audio_paths(out, s) for s in specs}
        spk2utt: dict[str, list[str]] = {}
        for s in specs:
            spk2utt.setdefault(s.speaker.speaker_id, []).append(s.utt_id)
        files = {
            "wav.scp": [(s.utt_id, str(paths[s.utt_id][0].resolve())) for s in specs],
            "spk1.scp": [(s.utt_id, str(paths[s.utt_id][1].resolve())) for s in specs],
            "text": [(s.utt_id, s.text) for s in specs],
            "utt2spk": [(s.utt_id, s.speaker.speaker_id) for s in specs],
            "spk2utt": [(spk, " ".join(sorted(utts))) for spk, utts in spk2utt.items()],
            "utt2cond": [(s.utt_id, f"{s.noise} {s.snr_db:.1f}") for s in specs],
            "utt2aug": [(s.utt_id, _augment_summary(s)) for s in specs],
        }
        for name, rows in files.items():
            atomic_write_text(folder / name, list_lines(rows))


def _augment_summary(spec: UtteranceSpec) -> str:
    return (
        f"speed={spec.speed} vtlp={spec.vtlp} pitch={spec.pitch_semitones:+.2f} rt60={spec.rt60:.3f} "
        f"bandlimit={int(spec.bandlimit)} codec={spec.codec} level={spec.level_dbfs:.1f}"
    )


def _write_manifest(out: Path, plan: CorpusPlan, settings: dict) -> None:
    speakers = {split: [dataclasses.asdict(s) for s in spks] for split, spks in plan.speakers.items()}
    manifest = {"settings": settings, "augmentations": augment.AUGMENTATIONS, "speakers": speakers}
    atomic_write_text(out / "synth.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _remove_temporaries(out: Path) -> None:
    """Temporary files left by an interrupted run (``atomic_path`` names them ``.<name>.*.tmp``)."""
    audio = out / "audio"
    if audio.is_dir():
        for tmp in audio.glob("*/*/.*.tmp"):
            tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------
# Entry point


def _check_arguments(
    preset: str, num_utts: int | None, jobs: int | None, sample_rate: int | None
) -> tuple[Preset, int, int, int]:
    """(recipe, utterances, worker processes, output rate), the defaults filled in; UserError if bad."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    recipe = PRESETS[preset]
    total = recipe.default_utts if num_utts is None else int(num_utts)
    if total < 3:
        raise UserError(f"--num-utts {total}: need at least 3 (one per split)")
    jobs = (os.cpu_count() or 1) if jobs is None else int(jobs)
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: need at least 1")
    rate = recipe.sample_rate if sample_rate is None else int(sample_rate)
    if rate not in OUTPUT_RATES:
        raise UserError(f"--sample-rate {rate}: need {OUTPUT_RATES.start}-{OUTPUT_RATES.stop - 1} Hz")
    return recipe, total, jobs, rate


def _synthesise_missing(out: Path, plan: CorpusPlan, init_args: tuple, jobs: int, preset: str) -> int:
    """Render every utterance without a matching done marker, the babble sources first (every babble-noise
    utterance reads them); returns how many corpus utterances were rendered."""
    babble_todo = [s for s in plan.babble if not is_complete(out, s)]
    todo = [s for s in plan.utterances if not is_complete(out, s)]
    synthesised = 0
    pool = _open_pool(jobs, init_args) if babble_todo or todo else None
    try:
        for _ in _run_chunks(_chunks(babble_todo, jobs), pool, "babble sources", len(babble_todo)):
            pass
        for result in _run_chunks(_chunks(todo, jobs), pool, f"synth {preset}", len(todo)):
            synthesised += len(result)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return synthesised


def synthesize_corpus(
    out: str | os.PathLike,
    *,
    preset: str = "tiny",
    num_utts: int | None = None,
    seed: int = 1,
    jobs: int | None = None,
    disabled_augmentations: Iterable[str] = (),
    sample_rate: int | None = None,
) -> SynthSummary:
    """Build (or finish building) the embedded noisy-speech corpus in ``out``; see the module doc.
    ``sample_rate`` is that of the written files (default: the preset's). Resuming with another rate
    rewrites every utterance: the rate is part of each done marker."""
    recipe, total, jobs, rate = _check_arguments(preset, num_utts, jobs, sample_rate)
    disabled = augment.resolve_disabled(tuple(disabled_augmentations))
    out = Path(out)

    inventory = discover_engines()
    sfx_archive = find_opensfx_archive()
    noise_types = noise.NOISE_TYPES
    if sfx_archive is None:
        print(
            "gradremedy: warning: openttd-opensfx is not installed; no recorded sound-effect noise",
            file=sys.stderr,
        )
        noise_types = tuple(t for t in noise_types if t != "sfx")
    sentence_pool = text.read_sentences() if preset == "read" else None
    plan = plan_corpus(recipe, total, seed, inventory, disabled, noise_types, sentence_pool)
    plan.utterances = [dataclasses.replace(spec, sample_rate=rate) for spec in plan.utterances]

    out.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(out)
    start = time.perf_counter()
    babble_files = [audio_paths(out, spec)[1] for spec in plan.babble]
    synthesised = _synthesise_missing(out, plan, (out, seed, babble_files, sfx_archive), jobs, preset)
    write_lists(out, plan)
    settings = {
        "preset": preset,
        "num_utts": total,
        "seed": seed,
        "disabled_augmentations": sorted(disabled),
        "noise_types": list(noise_types),
        "sample_rate": rate,
        "engines": dataclasses.asdict(inventory),
        "festival_fixed_addresses": bool(fixed_addresses_prefix()),  # see engines.fixed_addresses_prefix
        "sfx_archive": str(sfx_archive) if sfx_archive else None,
    }
    _write_manifest(out, plan, settings)
    seconds = time.perf_counter() - start
    summary = SynthSummary(out, total, synthesised, total - synthesised, seconds)
    skipped = f", {summary.skipped} already done" if summary.skipped else ""
    print(
        f"synthesised {synthesised} utterances in {seconds:.1f} s ({summary.utts_per_second:.1f} utt/s)"
        f"{skipped}"
    )
    return summary
