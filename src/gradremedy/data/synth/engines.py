"""Text-to-speech engines from Debian packages: espeak-ng, flite and festival.

A *speaker* is one engine/voice/variant/pitch/rate combination. espeak-ng is driven through its
program once per utterance (a call costs about 10 ms); flite through its library in this process
(``native.py``; its program where the library is missing); festival once per batch, with a Scheme script
that synthesises many utterances (its start-up dominates a single utterance). Pitch and speaking
rate are set through each engine's own controls, so that changing them costs nothing and adds no
signal-processing artefacts.
"""

from __future__ import annotations

import functools
import io
import math
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from gradremedy.data.synth import native
from gradremedy.errors import UserError

ENGINE_PACKAGES = "espeak-ng, flite, festival (with festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)"
# espeak-ng variants left out: names with spaces (the "+variant" syntax cannot carry them) and a few
# effects voices far from any human voice.
_ESPEAK_VARIANT_SKIP = {"Demonic", "UniRobot", "Tweaky"}
# flite's awb_time only speaks clock times.
_FLITE_VOICE_SKIP = {"awb_time"}
# Typical mean F0 (Hz) of each flite voice, to turn a pitch factor into flite's int_f0_target_mean.
_FLITE_F0 = {"kal": 100.0, "kal16": 100.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}
_ESPEAK_WPM = 175.0  # espeak-ng's default speaking rate
_ESPEAK_PITCH_PER_OCTAVE = 60.0  # measured: -p 50 -> 83 Hz, -p 90 -> 134 Hz for en-us
TIMEOUT_S = 120


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: ``pitch`` and ``rate`` are factors against the voice's defaults
    (``rate`` > 1 speaks faster)."""

    speaker_id: str
    engine: str  # espeak | flite | festival
    voice: str
    variant: str = ""
    pitch: float = 1.0
    rate: float = 1.0

    def describe(self) -> str:
        variant = f"+{self.variant}" if self.variant else ""
        return f"{self.engine}:{self.voice}{variant} pitch={self.pitch:.3f} rate={self.rate:.3f}"


@dataclass
class EngineInventory:
    """What is installed: espeak dialects and variants, flite voices, festival voices by kind."""

    espeak_dialects: list[str] = field(default_factory=list)
    espeak_variants: list[str] = field(default_factory=list)
    flite_voices: list[str] = field(default_factory=list)
    festival_voices: list[str] = field(default_factory=list)  # *_diphone or *_hts voices

    def engines(self) -> list[str]:
        names = []
        if self.espeak_dialects:
            names.append("espeak")
        if self.flite_voices:
            names.append("flite")
        if self.festival_voices:
            names.append("festival")
        return names


def _run(cmd: list[str], what: str, program: str | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; a failure raises RuntimeError naming ``what`` and ``program`` (default: ``cmd[0]``)."""
    program = program or cmd[0]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(f"{what}: {program} failed: {err}") from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{what}: {program} exited with {done.returncode}: {stderr[-1:] or ''}")
    return done


@functools.cache
def fixed_addresses_prefix() -> tuple[str, ...]:
    """``setarch ARCH -R``, which runs a program with address-space randomisation off, where that works
    here (Linux with util-linux, in a sandbox that allows it); else nothing.

    festival's batch synthesis depends on where its memory lies: in the tiny corpus one utterance of a
    batch came out five ways in ten runs of the same script, and the same every time with randomisation
    off (benchmarks/RESULTS.md). Without it, the corpus, and so the trained models, could differ from one
    build to the next."""
    setarch = shutil.which("setarch")
    if setarch is None:
        return ()
    prefix = (setarch, platform.machine(), "-R")
    try:
        trial = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        works = trial.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    return prefix if works else ()


def _espeak_table(kind: str) -> list[tuple[str, str]]:
    """Rows of ``espeak-ng --voices=<kind>`` as (name-or-language, file)."""
    out = _run(["espeak-ng", f"--voices={kind}"], "espeak-ng voice list").stdout.decode(errors="replace")
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            rows.append((parts[1], parts[3], parts[4]))
    return [(lang, name, file) for lang, name, file in rows]  # type: ignore[misc]


def discover_engines() -> EngineInventory:
    """Find the installed engines and their voices; raise UserError when there is none."""
    inventory = EngineInventory()
    if shutil.which("espeak-ng"):
        dialects = {lang for lang, _, file in _espeak_table("en") if not file.startswith("mb/")}
        inventory.espeak_dialects = sorted(d for d in dialects if d.startswith("en"))
        variant_files = [file for _, _, file in _espeak_table("variant") if file.startswith("!v/")]
        variants = [file.split("/", 1)[1] for file in variant_files]
        inventory.espeak_variants = sorted(
            v for v in variants if " " not in v and v not in _ESPEAK_VARIANT_SKIP
        )
    if shutil.which("flite"):
        out = _run(["flite", "-lv"], "flite voice list").stdout.decode(errors="replace")
        names = out.split(":", 1)[-1].split()
        inventory.flite_voices = sorted(v for v in names if v not in _FLITE_VOICE_SKIP)
    if shutil.which("festival"):
        out = _run(["festival", "-b", "(print (voice.list))"], "festival voice list").stdout.decode()
        names = out.strip().strip("()").split()
        inventory.festival_voices = sorted(v for v in names if v.endswith(("_diphone", "_hts")))
    if not inventory.engines():
        raise UserError(
            "no text-to-speech engine found on PATH: install the Debian packages " + ENGINE_PACKAGES
        )
    return inventory


@dataclass(frozen=True)
class SynthRequest:
    """Say ``text`` as ``speaker``, with extra pitch and tempo factors for this utterance only."""

    speaker: Speaker
    text: str
    pitch: float = 1.0
    rate: float = 1.0


def _read_wav(data: bytes | Path, what: str) -> tuple[np.ndarray, int]:
    try:
        wave, rate = sf.read(io.BytesIO(data) if isinstance(data, bytes) else data, dtype="float32")
    except (sf.LibsndfileError, RuntimeError) as err:
        raise RuntimeError(f"{what}: unreadable engine output ({err})") from None
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    if wave.size == 0:
        raise RuntimeError(f"{what}: the engine produced no audio")
    return wave, int(rate)


def synth_espeak(request: SynthRequest, in_process: bool = True) -> tuple[np.ndarray, int]:
    """espeak-ng (22.05 kHz): through its library in a fork-per-utterance server where it is installed
    (the same samples, without a program start per call), else, or if the server fails, one
    ``espeak-ng`` call writing a WAV to stdout."""
    spk = request.speaker
    pitch = int(
        round(min(max(50.0 + _ESPEAK_PITCH_PER_OCTAVE * math.log2(spk.pitch * request.pitch), 0), 99))
    )
    wpm = int(round(min(max(_ESPEAK_WPM * spk.rate * request.rate, 80), 450)))
    voice = f"{spk.voice}+{spk.variant}" if spk.variant else spk.voice
    if in_process:
        try:
            wave = native.espeak(voice, wpm, pitch, request.text)
        except RuntimeError:
            wave = None  # the program below gives the authoritative result, or error
        if wave is not None:
            if wave[0].size == 0:
                raise RuntimeError(f"espeak-ng {voice}: the engine produced no audio")
            return wave
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(wpm), "--stdout", request.text]
    return _read_wav(_run(cmd, f"espeak-ng {voice}").stdout, f"espeak-ng {voice}")


def synth_flite(request: SynthRequest, in_process: bool = True) -> tuple[np.ndarray, int]:
    """flite (8 or 16 kHz): through its library in this process where it is installed (the same
    samples, without a program start per call), else one ``flite`` call writing a WAV to stdout."""
    spk = request.speaker
    f0 = f"{_FLITE_F0.get(spk.voice, 110.0) * spk.pitch * request.pitch:.2f}"
    stretch = f"{1.0 / (spk.rate * request.rate):.4f}"
    if in_process:
        wave = native.flite(spk.voice, float(f0), float(stretch), request.text)
        if wave is not None:
            if wave[0].size == 0:
                raise RuntimeError(f"flite {spk.voice}: the engine produced no audio")
            return wave
    cmd = ["flite", "-voice", spk.voice, "--setf", f"int_f0_target_mean={f0}",
           "--setf", f"duration_stretch={stretch}", "-t", request.text, "-o", "/dev/stdout"]  # fmt: skip
    return _read_wav(_run(cmd, f"flite {spk.voice}").stdout, f"flite {spk.voice}")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_script(requests: list[SynthRequest], paths: list[Path]) -> str:
    """A Scheme script that synthesises every request into its path, switching voices only when needed."""
    lines = [
        "(define (gr_f0 base f) (list (list 'target_f0_mean (* f (cadr (assoc 'target_f0_mean base))))"
        " (list 'target_f0_std (* f (cadr (assoc 'target_f0_std base))))"
        " (assoc 'model_f0_mean base) (assoc 'model_f0_std base)))"
    ]
    current = None
    for request, path in zip(requests, paths):
        spk = request.speaker
        if spk.voice != current:
            current = spk.voice
            lines.append(f"(voice_{spk.voice})")
            lines.append("(set! gr_base_stretch (Parameter.get 'Duration_Stretch))")
            lines.append("(if (symbol-bound? 'hts_engine_params) (set! gr_base_hts hts_engine_params))")
            lines.append("(if (symbol-bound? 'int_lr_params) (set! gr_base_lr int_lr_params))")
        pitch = spk.pitch * request.pitch
        rate = spk.rate * request.rate
        if spk.voice.endswith("_hts"):
            semitones = 12.0 * math.log2(pitch)
            lines.append(f"(set! hts_engine_params (append gr_base_hts '((\"-fm\" {semitones:.4f}) "
                         f"(\"-r\" {rate:.4f}))))")  # fmt: skip
        else:
            lines.append(f"(set! int_lr_params (gr_f0 gr_base_lr {pitch:.4f}))")
            base = "(if gr_base_stretch gr_base_stretch 1.0)"
            lines.append(f"(Parameter.set 'Duration_Stretch (/ {base} {rate:.4f}))")
        lines.append(
            f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(request.text)})) "
            f"{_scheme_string(str(path))} 'riff)"
        )
    return "\n".join(lines) + "\n"


def synth_festival_batch(requests: list[SynthRequest]) -> list[tuple[np.ndarray, int]]:
    """One festival process for all the requests (grouped by voice inside the script)."""
    if not requests:
        return []
    order = sorted(range(len(requests)), key=lambda i: (requests[i].speaker.voice, i))
    with tempfile.TemporaryDirectory(prefix="gradremedy-festival-") as tmp:
        paths = [Path(tmp) / f"{i:05d}.wav" for i in range(len(requests))]
        script = Path(tmp) / "batch.scm"
        script.write_text(festival_script([requests[i] for i in order], [paths[i] for i in order]))
        _run([*fixed_addresses_prefix(), "festival", "-b", str(script)], "festival batch", "festival")
        results = []
        for request, path in zip(requests, paths):
            if not path.exists():
                raise RuntimeError(f"festival {request.speaker.voice}: no audio for {request.text!r}")
            results.append(_read_wav(path, f"festival {request.speaker.voice}"))
    return results


def synthesize(requests: list[SynthRequest]) -> list[tuple[np.ndarray, int]]:
    """Synthesise a batch of requests in order; festival requests share one process."""
    results: list[tuple[np.ndarray, int] | None] = [None] * len(requests)
    festival = [i for i, r in enumerate(requests) if r.speaker.engine == "festival"]
    for i, result in zip(festival, synth_festival_batch([requests[i] for i in festival])):
        results[i] = result
    for i, request in enumerate(requests):
        if request.speaker.engine == "espeak":
            results[i] = synth_espeak(request)
        elif request.speaker.engine == "flite":
            results[i] = synth_flite(request)
        elif request.speaker.engine != "festival":
            raise ValueError(f"unknown engine {request.speaker.engine!r}")
    return results  # type: ignore[return-value]
