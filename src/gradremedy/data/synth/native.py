"""flite and espeak-ng without a program start per utterance, with the programs' very samples.

The ``flite`` and ``espeak-ng`` programs spend most of a call starting up (flite loading its voice,
espeak-ng reading its voice files: about 10 and 7 ms), and the corpus makes thousands of calls.

- **flite** runs in this process, through the shared libraries that Debian's flite package installs:
  the library functions the program calls, each voice loaded once. No maintained Python binding ships
  with Debian's libraries, so this uses ``ctypes`` on flite's C API (``flite.h``).
- **espeak-ng**'s library carries synthesis state from one utterance to the next (the second utterance
  of a process comes out a few samples longer than from a fresh program), so it cannot simply be called
  in turn. A small server process (:mod:`gradremedy.data.synth.espeak_server`) initialises it once,
  like the program, and forks a child per utterance: every utterance starts from the same fresh state.

tests/data/synth/test_native.py compares both with their programs sample for sample. Where a library
is missing (or ``fork`` is not available), the callers fall back to the programs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

_LOCK = threading.Lock()  # the library keeps global state


class _Wave(ctypes.Structure):
    """flite's cst_wave."""

    _fields_ = [
        ("type", ctypes.c_char_p),
        ("sample_rate", ctypes.c_int),
        ("num_samples", ctypes.c_int),
        ("num_channels", ctypes.c_int),
        ("samples", ctypes.POINTER(ctypes.c_short)),
    ]


class _Voice(ctypes.Structure):
    """The head of flite's cst_voice: its name and its feature set."""

    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p)]


def _find_library(name: str) -> str | None:
    """The file name under which ``lib<name>`` loads, or None."""
    for candidate in (f"lib{name}.so.1", ctypes.util.find_library(name)):
        if not candidate:
            continue
        try:
            ctypes.CDLL(candidate)
        except OSError:
            continue
        return candidate
    return None


def _load(name: str) -> ctypes.CDLL | None:
    found = _find_library(name)
    return None if found is None else ctypes.CDLL(found)


class _Flite:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.libc = ctypes.CDLL(None)
        self.voices: dict[str, ctypes.POINTER] = {}
        self.voice_libs: dict[str, ctypes.CDLL] = {}
        lib.flite_init()
        lib.flite_text_to_wave.restype = ctypes.POINTER(_Wave)
        lib.flite_text_to_wave.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Voice)]
        lib.flite_feat_set_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_float]
        lib.delete_wave.argtypes = [ctypes.POINTER(_Wave)]

    def voice(self, name: str):  # noqa: ANN201 - a ctypes pointer
        if name not in self.voices:
            vox = _load(f"flite_cmu_us_{name}")
            if vox is None:
                raise RuntimeError(f"flite {name}: libflite_cmu_us_{name} is not installed")
            register = getattr(vox, f"register_cmu_us_{name}")
            register.restype = ctypes.POINTER(_Voice)
            register.argtypes = [ctypes.c_char_p]
            self.voice_libs[name] = vox
            self.voices[name] = register(None)
        return self.voices[name]

    def say(self, name: str, f0: float, stretch: float, text: str) -> tuple[np.ndarray, int]:
        voice = self.voice(name)
        features = voice.contents.features
        self.lib.flite_feat_set_float(features, b"int_f0_target_mean", f0)
        self.lib.flite_feat_set_float(features, b"duration_stretch", stretch)
        self.libc.srand(1)  # flite draws from rand(); a fresh program starts from seed 1
        wave = self.lib.flite_text_to_wave(text.encode(), voice)
        if not wave:
            raise RuntimeError(f"flite {name}: synthesis failed for {text!r}")
        try:
            w = wave.contents
            samples = np.ctypeslib.as_array(w.samples, shape=(w.num_samples * w.num_channels,))
            samples = samples.reshape(-1, w.num_channels).mean(axis=1) if w.num_channels > 1 else samples
            return samples.astype(np.float32) / 32768.0, int(w.sample_rate)
        finally:
            self.lib.delete_wave(wave)


@functools.cache
def _engine() -> _Flite | None:
    """The library, loaded once per process; None when it is missing or unusable."""
    lib = _load("flite")
    try:
        return None if lib is None else _Flite(lib)
    except (OSError, AttributeError):
        return None


def flite(voice: str, f0: float, stretch: float, text: str) -> tuple[np.ndarray, int] | None:
    """``flite -voice voice --setf int_f0_target_mean=f0 --setf duration_stretch=stretch -t text`` in
    this process, or None without the library."""
    with _LOCK:
        engine = _engine()
        return None if engine is None else engine.say(voice, f0, stretch, text)


# ----------------------------------------------------------------------------------------------------
# espeak-ng: one fork-per-utterance server per process


class _EspeakServer:
    def __init__(self, library: str) -> None:
        script = Path(__file__).with_name("espeak_server.py")
        self.process = subprocess.Popen(
            [sys.executable, "-S", str(script), library],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def say(self, voice: str, speed: int, pitch: int, text: str) -> tuple[np.ndarray, int]:
        request = "\0".join([voice, str(speed), str(pitch), text]).encode("utf-8")
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(struct.pack("<i", len(request)) + request)
            stdin.flush()
            status, rate, size = struct.unpack("<iii", _read_exactly(stdout, 12))
            data = _read_exactly(stdout, size)
        except (OSError, EOFError, struct.error):
            raise RuntimeError(f"espeak-ng {voice}: the synthesis server stopped") from None
        if status != 0:
            raise RuntimeError(f"espeak-ng {voice}: synthesis failed for {text!r} (status {status})")
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, int(rate)


def _read_exactly(stream, size: int) -> bytes:  # noqa: ANN001 - a binary stream
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


@functools.cache
def _espeak_server(pid: int) -> _EspeakServer | None:
    """The server of process ``pid`` (a forked copy of this process starts its own), started on first
    use; None when the library or ``fork`` is missing."""
    library = _find_library("espeak-ng")
    return _EspeakServer(library) if library is not None and hasattr(os, "fork") else None


def espeak(voice: str, speed: int, pitch: int, text: str) -> tuple[np.ndarray, int] | None:
    """``espeak-ng -v voice -s speed -p pitch --stdout text`` through the server, or None without the
    library."""
    with _LOCK:
        server = _espeak_server(os.getpid())
        return None if server is None else server.say(voice, speed, pitch, text)
