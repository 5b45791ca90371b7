"""Text-to-speech engines: discovery, the missing-engine error, festival batching and reproducibility, pitch
control."""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gradremedy.data.synth import corpus, engines, noise
from gradremedy.data.synth.engines import Speaker, SynthRequest
from gradremedy.data.synth.opensfx import find_opensfx_archive
from gradremedy.errors import UserError

TEXT = "alpha bravo two over"


def test_no_engine_on_path_is_a_user_error_naming_the_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError) as err:
        engines.discover_engines()
    message = str(err.value)
    for package in ("espeak-ng", "flite", "festival", "festvox-kallpc16k", "festvox-us-slt-hts"):
        assert package in message
    assert "\n" not in message


def test_festival_script_switches_voice_once_per_run_and_quotes_text(tmp_path):
    kal = Speaker("sp000", "festival", "kal_diphone", pitch=1.2, rate=0.9)
    hts = Speaker("sp001", "festival", "cmu_us_slt_arctic_hts", pitch=0.5, rate=1.25)
    requests = [
        SynthRequest(kal, 'say "again"'),
        SynthRequest(kal, "over"),
        SynthRequest(hts, "out", pitch=2.0),
    ]
    script = engines.festival_script(requests, [tmp_path / f"{i}.wav" for i in range(3)])
    assert script.count("(voice_kal_diphone)") == 1 and script.count("(voice_cmu_us_slt_arctic_hts)") == 1
    assert '"say \\"again\\""' in script
    assert '("-fm" 0.0000)' in script  # 0.5 * 2.0 = no shift, in semitones
    assert '("-r" 1.2500)' in script
    assert "(gr_f0 gr_base_lr 1.2000)" in script
    assert script.count("utt.save.wave") == 3


def _installed() -> engines.EngineInventory:
    if not any(shutil.which(p) for p in ("espeak-ng", "flite", "festival")):
        pytest.skip("no TTS engine installed")
    return engines.discover_engines()


def _pitch_hz(wave: np.ndarray, rate: int) -> float:
    """Median autocorrelation pitch over the loudest frames."""
    frame = int(0.04 * rate)
    estimates = []
    frames = [wave[i : i + frame] for i in range(0, len(wave) - frame, frame)]
    loud = sorted(frames, key=lambda f: -np.sum(f**2))[: max(3, len(frames) // 3)]
    for f in loud:
        ac = np.correlate(f, f, "full")[frame - 1 :]
        lo, hi = rate // 400, rate // 60
        estimates.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(estimates))


def test_every_installed_engine_speaks_and_follows_pitch_and_rate():
    inventory = _installed()
    speakers = []
    if inventory.espeak_dialects:
        speakers.append(Speaker("a", "espeak", inventory.espeak_dialects[0]))
    if inventory.flite_voices:
        speakers.append(
            Speaker("b", "flite", "kal" if "kal" in inventory.flite_voices else inventory.flite_voices[0])
        )
    if inventory.festival_voices:
        diphone = [
            v for v in inventory.festival_voices if v.endswith("_diphone")
        ] or inventory.festival_voices
        speakers.append(Speaker("c", "festival", diphone[0]))
    requests = []
    for spk in speakers:
        requests += [
            SynthRequest(spk, TEXT),
            SynthRequest(spk, TEXT, pitch=1.5),
            SynthRequest(spk, TEXT, rate=1.5),
        ]
    results = engines.synthesize(requests)
    for k, spk in enumerate(speakers):
        (base, rate), (high, _), (fast, _) = results[3 * k : 3 * k + 3]
        assert rate in (8000, 16000, 22050, 32000, 44100, 48000), spk
        assert np.isfinite(base).all() and 0.5 < len(base) / rate < 5, spk
        assert _pitch_hz(high, rate) > 1.2 * _pitch_hz(base, rate), spk.describe()
        assert len(fast) < 0.85 * len(base), spk.describe()


def test_festival_runs_with_fixed_addresses_where_setarch_allows_it():
    if not sys.platform.startswith("linux") or shutil.which("setarch") is None:
        pytest.skip("needs Linux with setarch")
    prefix = engines.fixed_addresses_prefix()
    if not prefix:  # only where setarch cannot do it here (a sandbox that forbids the personality call)
        trial = subprocess.run(["setarch", platform.machine(), "-R", "true"], capture_output=True)
        assert trial.returncode != 0
        return
    assert prefix[1:] == (platform.machine(), "-R")
    # the prefix really turns randomisation off: the stack of two runs starts at the same address
    stacks = {
        subprocess.run([*prefix, "grep", "stack", "/proc/self/maps"], capture_output=True, text=True).stdout
        for _ in range(3)
    }
    assert len(stacks) == 1 and "[stack]" in next(iter(stacks))


def test_festival_batch_gives_the_same_samples_every_run():
    """The batch of the tiny corpus where festival's output used to change from run to run (one utterance,
    five versions in ten runs) comes out the same in every run."""
    if shutil.which("festival") is None:
        pytest.skip("festival not installed")
    inventory = engines.discover_engines()
    if "kal_diphone" not in inventory.festival_voices:
        pytest.skip("festival's kal_diphone voice not installed")
    if not engines.fixed_addresses_prefix():
        pytest.skip("address-space randomisation cannot be switched off here")
    noise_types = noise.NOISE_TYPES
    if find_opensfx_archive() is None:  # as synthesize_corpus plans it
        noise_types = tuple(t for t in noise_types if t != "sfx")
    plan = corpus.plan_corpus(corpus.PRESETS["tiny"], 10800, 1, inventory, frozenset(), noise_types, None)
    chunk = next(c for c in corpus._chunks(plan.utterances, 2) if any(s.utt_id == "sp1667-01667" for s in c))
    last = [s.utt_id for s in chunk].index("sp1667-01667")
    if chunk[last].speaker.voice != "kal_diphone":
        pytest.skip("this machine's engines give another plan")
    requests = [corpus._request(spec) for spec in chunk[: last + 1]]
    runs = {
        hashlib.sha256(b"".join(w.tobytes() for w, _ in engines.synth_festival_batch(requests))).hexdigest()
        for _ in range(4)
    }
    assert len(runs) == 1
