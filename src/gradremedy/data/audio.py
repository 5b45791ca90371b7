"""Reading audio named the Kaldi way: a file path, a ``cmd |`` pipe, or a (path, start, end) segment.

Everything returned is float32 mono at the rate the caller asks for: channels are averaged, other rates
are resampled with ``scipy.signal.resample_poly`` (a polyphase FIR filter, exact for rational ratios).
Headers are read with ``soundfile.info`` so that durations never need the samples, except for pipes,
whose output has to be produced to be measured (cached per process).

A pipe's command runs through the shell, as in Kaldi: whoever writes a ``wav.scp`` can run any command.
For data from an untrusted source, switch pipes off: ``gradremedy --no-pipes ...`` or the environment
variable ``GRADREMEDY_NO_PIPES=1`` (inherited by every worker process). A pipe is then refused, never run.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import soundfile

from gradremedy.errors import DataError

# A path or a pipe ("sox in.flac -t wav - |"), optionally with (start, end) in seconds.
AudioSpec = str | tuple[str, float, float]

FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
NO_PIPES_ENV = "GRADREMEDY_NO_PIPES"  # "1": refuse ``cmd |`` entries instead of running them


@dataclass(frozen=True)
class AudioInfo:
    """What a header says about a (segment of a) recording."""

    sample_rate: int
    frames: int
    channels: int
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate > 0 else 0.0


def is_pipe(source: str) -> bool:
    """True for Kaldi's ``command |`` entries."""
    return source.rstrip().endswith("|")


def pipes_allowed() -> bool:
    """False when ``GRADREMEDY_NO_PIPES=1`` (set by ``gradremedy --no-pipes``): pipes are refused."""
    return os.environ.get(NO_PIPES_ENV, "") != "1"


def describe(spec: AudioSpec) -> str:
    """A short human-readable name for an audio spec, for error messages."""
    if isinstance(spec, tuple):
        source, start, end = spec
        return f"{source} [{start:g}-{end:g} s]"
    return spec


def _run_pipe(command: str) -> bytes:
    """Run the command of a ``cmd |`` entry through the shell and return its stdout."""
    command = command.rstrip()[:-1].strip()
    if not pipes_allowed():
        raise DataError(f"'{command} |': a shell pipe, refused ({NO_PIPES_ENV}=1 / --no-pipes)")
    try:
        done = subprocess.run(command, shell=True, capture_output=True, check=False, timeout=600)
    except subprocess.TimeoutExpired:
        raise DataError(f"'{command} |': command timed out") from None
    if done.returncode != 0:
        error = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = error[-1] if error else f"exit status {done.returncode}"
        raise DataError(f"'{command} |': command failed ({detail})")
    return done.stdout


def _open(source: str) -> soundfile.SoundFile:
    try:
        if is_pipe(source):
            return soundfile.SoundFile(io.BytesIO(_run_pipe(source)))
        return soundfile.SoundFile(source)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{source}: audio file not found") from None
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if not is_pipe(source) and not os.path.exists(source):
            raise DataError(f"{source}: audio file not found") from None
        raise DataError(f"{source}: unreadable audio ({reason})") from None


def _frame_range(spec: AudioSpec, sample_rate: int, total: int) -> tuple[int, int]:
    """First and last+1 frame of a spec; a segment must lie inside the recording."""
    if not isinstance(spec, tuple):
        return 0, total
    source, start, end = spec
    first = int(round(start * sample_rate))
    last = int(round(end * sample_rate))
    if start < 0 or end <= start:
        raise DataError(f"{describe(spec)}: bad segment times (need 0 <= start < end)")
    # Kaldi tolerates segment ends slightly past the end of a file; allow 10 ms of rounding.
    if last > total + int(0.01 * sample_rate) or first >= total:
        raise DataError(
            f"{describe(spec)}: segment ends at {end:g} s, "
            f"past the recording's end at {total / sample_rate:g} s"
        )
    return first, min(last, total)


def audio_info(spec: AudioSpec) -> AudioInfo:
    """Sample rate, length, channels and sample format from the header (a pipe is run, once per process)."""
    source = spec[0] if isinstance(spec, tuple) else spec
    whole = _pipe_info(source) if is_pipe(source) else _header(source)
    first, last = _frame_range(spec, whole.sample_rate, whole.frames)
    return AudioInfo(whole.sample_rate, last - first, whole.channels, whole.subtype)


def _header(source: str) -> AudioInfo:
    with _open(source) as f:
        return AudioInfo(sample_rate=f.samplerate, frames=f.frames, channels=f.channels, subtype=f.subtype)


@lru_cache(maxsize=65536)
def _pipe_info(command: str) -> AudioInfo:
    # The header of a pipe's output may not know its length: decode it all once and remember the info.
    with _open(command) as f:
        frames = f.frames if f.frames > 0 else len(f.read(dtype="int16"))
        return AudioInfo(sample_rate=f.samplerate, frames=frames, channels=f.channels, subtype=f.subtype)


def read_audio(spec: AudioSpec) -> tuple[np.ndarray, int, AudioInfo]:
    """Samples as stored, shape (T, C) float32, with the native rate and header info."""
    source = spec[0] if isinstance(spec, tuple) else spec
    with _open(source) as f:
        first, last = _frame_range(spec, f.samplerate, f.frames)
        info = AudioInfo(
            sample_rate=f.samplerate, frames=last - first, channels=f.channels, subtype=f.subtype
        )
        try:
            f.seek(first)
            samples = f.read(last - first, dtype="float32", always_2d=True)  # (T, C)
        except (soundfile.LibsndfileError, RuntimeError) as err:
            raise DataError(f"{describe(spec)}: unreadable audio ({err})") from None
    return samples, info.sample_rate, info


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (T, C) array; a 1-D array is returned as is."""
    if samples.ndim == 1:
        return samples
    return samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a mono signal between integer rates; the output has ceil(T * to / from) samples."""
    if from_rate == to_rate:
        return samples
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    common = math.gcd(from_rate, to_rate)
    samples = np.asarray(samples, dtype=np.float32)  # float32 signal and filter: float32 out
    return resample_by(samples, to_rate // common, from_rate // common)


def resample_by(samples: np.ndarray, up: int, down: int) -> np.ndarray:
    """Polyphase resampling by ``up / down`` with ``resample_poly``'s own filter, designed once per ratio.

    The filter has the signal's precision: float32 samples are filtered in float32 (and come out float32),
    anything else in float64. This is the one resampler of the package: file loading, metrics and the
    corpus synthesiser all go through it.
    """
    if up == down:
        return samples
    precision = np.float32 if np.asarray(samples).dtype == np.float32 else np.float64
    from scipy.signal import resample_poly  # here, not at the top: ~1 s to import, and most loads need none

    return resample_poly(samples, up, down, window=antialias_filter(up, down, precision))


@lru_cache(maxsize=64)
def antialias_filter(up: int, down: int, dtype: type = np.float32) -> np.ndarray:
    """``resample_poly``'s own low-pass FIR for ``up/down`` (Kaiser window, beta 5, 10 zero crossings
    each side) in ``dtype``, designed once per ratio: left to ``resample_poly``, the design is repeated on
    every call, for every utterance of every epoch when the data's rate is not the model's."""
    max_rate = max(up, down)
    from scipy.signal import firwin

    taps = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(dtype)
    taps.setflags(write=False)  # shared by every call; resample_poly copies it before scaling
    return taps


def resampled_length(frames: int, from_rate: int, to_rate: int) -> int:
    """Number of samples :func:`resample` returns for ``frames`` input samples."""
    if from_rate == to_rate:
        return frames
    common = math.gcd(from_rate, to_rate)
    up, down = to_rate // common, from_rate // common
    return -(-frames * up // down)


def load_audio(spec: AudioSpec, target_sr: int) -> np.ndarray:
    """Float32 mono samples at ``target_sr`` from a path, a ``cmd |`` pipe or a (path, start, end) segment."""
    return load_audio_with_info(spec, target_sr)[0]


def load_audio_with_info(spec: AudioSpec, target_sr: int) -> tuple[np.ndarray, AudioInfo]:
    """What :func:`load_audio` returns, with the header of what was read (its own rate and format)."""
    samples, rate, info = read_audio(spec)
    return np.ascontiguousarray(resample(to_mono(samples), rate, target_sr), dtype=np.float32), info
