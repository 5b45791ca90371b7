"""flite in this process, through the shared libraries that Debian's flite package installs.

The ``flite`` program spends about 10 ms of every call starting up and loading its voice, and the
corpus makes thousands of calls. Calling the library functions that the program calls, in a process
that loads each voice once, gives the same samples without that cost (tests/data/synth/test_native.py
compares them sample for sample). No maintained Python binding ships with Debian's libraries, so this
uses ``ctypes`` on flite's C API (``flite.h``).

espeak-ng stays a program: its library carries synthesis state from one utterance to the next (the
second utterance of a process comes out a few samples longer than from a fresh program), so in-process
calls would make the corpus depend on the order in which a worker meets its utterances.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading

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


def _load(name: str) -> ctypes.CDLL | None:
    for candidate in (f"lib{name}.so.1", ctypes.util.find_library(name)):
        if not candidate:
            continue
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None


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
