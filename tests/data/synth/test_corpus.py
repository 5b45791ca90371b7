"""The corpus builder: plan, layout and formats, speaker-disjoint splits, SNR, determinism, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gradremedy.cli import main as cli_main
from gradremedy.data.synth import augment, corpus, engines, noise, synthesize_corpus, text
from gradremedy.data.synth.augment import AUGMENTATIONS
from gradremedy.data.synth.engines import EngineInventory, Speaker
from gradremedy.errors import UserError

SR = corpus.SAMPLE_RATE
LIST_FILES = ("wav.scp", "spk1.scp", "text", "utt2spk", "spk2utt", "utt2cond", "utt2aug")
FAKE_INVENTORY = EngineInventory(
    espeak_dialects=["en", "en-us"], espeak_variants=["m1", "f2"], flite_voices=["kal", "slt"],
    festival_voices=["kal_diphone", "cmu_us_slt_arctic_hts"],
)  # fmt: skip
SMALL = 24


def _plan(num_utts=2400, seed=1, disabled=frozenset(), inventory=FAKE_INVENTORY):
    return corpus.plan_corpus(
        corpus.PRESETS["tiny"], num_utts, seed, inventory, disabled, noise.NOISE_TYPES, sentence_pool=None
    )


# ---------------------------------------------------------------------------------------------------
# The plan (no audio)


def test_plan_splits_are_speaker_disjoint_and_babble_speakers_are_used_for_nothing_else():
    plan = _plan()
    by_split = {s: {u.speaker.speaker_id for u in plan.utterances if u.split == s} for s in corpus.SPLITS}
    assert not (by_split["train"] & by_split["valid"] or by_split["train"] & by_split["test"])
    assert not by_split["valid"] & by_split["test"]
    babble = {s.speaker_id for s in plan.speakers["babble"]}
    assert not babble & set().union(*by_split.values())
    voices = {s: {dataclasses.astuple(x)[1:] for x in plan.speakers[s]} for s in plan.speakers}
    assert not voices["babble"] & (voices["train"] | voices["valid"] | voices["test"])  # distinct voices too
    counts = {s: sum(u.split == s for u in plan.utterances) for s in corpus.SPLITS}
    assert counts == {"train": 2134, "valid": 133, "test": 133}  # 16:1:1
    assert len(by_split["train"]) >= 50  # many distinct speakers


def test_plan_uses_every_installed_engine_and_only_those():
    plan = _plan()
    assert {s.engine for s in plan.speakers["train"]} == {"espeak", "flite", "festival"}
    only_flite = EngineInventory(flite_voices=["kal"])
    assert {u.speaker.engine for u in _plan(200, inventory=only_flite).utterances} == {"flite"}


def test_plan_ids_start_with_the_speaker_and_are_unique():
    plan = _plan(300)
    ids = [u.utt_id for u in plan.utterances]
    assert len(set(ids)) == len(ids)
    for u in plan.utterances:
        assert u.utt_id.startswith(u.speaker.speaker_id + "-")
    assert all(re.fullmatch(r"sp\d{3}-\d{5}", i) for i in ids)


def test_plan_depends_only_on_the_seed():
    assert _plan(200, seed=3).utterances == _plan(200, seed=3).utterances
    assert _plan(200, seed=3).utterances != _plan(200, seed=4).utterances
    # An utterance's spec does not depend on how many come after it in its split's range.
    assert _plan(200, seed=3).utterances[:10] == _plan(200, seed=3).utterances[:10]


def test_plan_draws_every_noise_type_and_snr_in_range():
    plan = _plan()
    assert {u.noise for u in plan.utterances} == set(noise.NOISE_TYPES)
    snrs = np.array([u.snr_db for u in plan.utterances])
    assert snrs.min() >= -5 and snrs.max() <= 20 and snrs.std() > 5


def test_plan_with_all_augmentations_off_is_plain():
    plain = _plan(200, disabled=frozenset(AUGMENTATIONS))
    for u in plain.utterances:
        assert (u.speed, u.vtlp, u.pitch_semitones, u.rt60, u.bandlimit, u.codec, u.level_dbfs) == (
            "1", "1", 0.0, 0.0, False, "none", -25.0
        )  # fmt: skip
    full = _plan(200)
    assert {u.speed for u in full.utterances} == {"9/10", "1", "11/10"}
    assert len({u.vtlp for u in full.utterances}) == 5
    assert any(u.rt60 > 0 for u in full.utterances) and any(u.codec != "none" for u in full.utterances)


def test_read_plan_splits_are_text_disjoint_and_draw_from_the_pool():
    pool = [
        f"sentence number {w} is here" for w in ("one two three four five six seven eight nine ten".split())
    ]
    pool += [f"another {w} sentence to read" for w in ("alpha bravo charlie delta echo foxtrot golf".split())]
    plan = corpus.plan_corpus(
        corpus.PRESETS["read"], 300, 1, FAKE_INVENTORY, frozenset(), noise.NOISE_TYPES, sentence_pool=pool
    )
    texts = {s: {u.text for u in plan.utterances if u.split == s} for s in corpus.SPLITS}
    assert set().union(*texts.values()) <= set(pool)
    assert not texts["train"] & texts["valid"] and not texts["train"] & texts["test"]
    assert not texts["valid"] & texts["test"]
    assert len(texts["train"]) > 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "huge"}, "unknown preset 'huge'"),
        ({"num_utts": 2}, "at least 3"),
        ({"jobs": 0}, "--jobs 0"),
        ({"disabled_augmentations": ["chorus"]}, "unknown augmentation 'chorus'"),
        ({"sample_rate": 4000}, "--sample-rate 4000: need 8000-48000 Hz"),
    ],
)
def test_bad_arguments_are_user_errors(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=re.escape(message)):
        synthesize_corpus(tmp_path / "out", **kwargs)


def test_missing_engines_stop_the_build_with_the_package_names(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="espeak-ng, flite, festival"):
        synthesize_corpus(tmp_path / "out", num_utts=6)
    assert not (tmp_path / "out" / "train").exists()


# ---------------------------------------------------------------------------------------------------
# Rendering every noise type and augmentation (synthetic speech, no engine)


def _fake_speech(seconds: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    return 0.05 * rng.standard_normal(len(t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))


def _spec(**changes) -> corpus.UtteranceSpec:
    base = corpus.UtteranceSpec("sp000-00000", 0, "train", Speaker("sp000", "espeak", "en"), "alpha one")
    return dataclasses.replace(base, **changes)


RENDER_CASES = [{"noise": kind, "snr_db": snr} for kind in noise.NOISE_TYPES for snr in (-5.0, 20.0)] + [
    {"noise": "white", "snr_db": 0.0, "rt60": 0.6},
    {"noise": "pink", "snr_db": 3.0, "bandlimit": True},
    {"noise": "brown", "snr_db": 3.0, "codec": "mulaw8k"},
    {"noise": "babble", "snr_db": 3.0, "codec": "gsm", "rt60": 0.3, "level_dbfs": -15.0},
    {"noise": "sfx", "snr_db": -5.0, "level_dbfs": -40.0, "pad_start": 0.4, "pad_end": 0.1},
]


@pytest.mark.parametrize("changes", RENDER_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_render_gives_finite_audio_in_range_at_the_planned_snr(changes):
    spec = _spec(**changes)
    speech = _fake_speech()
    pool = [_fake_speech(2.0), _fake_speech(1.0)[::-1].copy()]
    noisy, clean = corpus.render(spec, speech, np.random.default_rng(1), pool, pool)
    pads = int(round(spec.pad_start * SR)) + int(round(spec.pad_end * SR))
    assert noisy.shape == clean.shape == (len(speech) + pads,)
    for x in (noisy, clean):
        assert np.isfinite(x).all() and np.max(np.abs(x)) <= 0.99 + 1e-9
    if spec.noise in noise.ADDITIVE_NOISE_TYPES and not spec.bandlimit and spec.codec == "none":
        assert noise.measured_snr(clean, noisy) == pytest.approx(spec.snr_db, abs=1e-6)
    else:
        assert not np.allclose(noisy, clean)


def test_speech_from_engine_applies_speed_and_vtlp_by_resampling():
    wave = np.sin(2 * np.pi * 200 * np.arange(22050) / 22050).astype(np.float32)
    plain = corpus.speech_from_engine(_spec(), wave, 22050)
    fast = corpus.speech_from_engine(_spec(speed="11/10", vtlp="21/20"), wave, 22050)
    assert len(plain) == SR
    assert len(fast) == pytest.approx(SR / (1.1 * 1.05), abs=2)


def test_request_compensates_vtlp_in_the_engine():
    request = corpus._request(_spec(vtlp="11/10", pitch_semitones=12.0))
    assert request.pitch == pytest.approx(2.0 / 1.1) and request.rate == pytest.approx(1 / 1.1)


# ---------------------------------------------------------------------------------------------------
# Real builds


@pytest.fixture(scope="module")
def small_preset():
    """The tiny preset with a small babble pool, so that builds of a few utterances stay quick, written at
    the 16 kHz it is rendered at (the shipped preset writes 8 kHz; a test below builds that)."""
    with pytest.MonkeyPatch.context() as mp:
        small = dataclasses.replace(
            corpus.PRESETS["tiny"], babble_speakers=2, babble_sentences=2, sample_rate=corpus.SAMPLE_RATE
        )
        mp.setitem(corpus.PRESETS, "tiny", small)
        yield small


@pytest.fixture(scope="module")
def built(small_preset, tmp_path_factory) -> Path:
    """A corpus built through the CLI with two workers."""
    out = tmp_path_factory.mktemp("synth") / "corpus"
    assert (
        cli_main(["data", "synth", "--out", str(out), "--num-utts", str(SMALL), "--seed", "7", "--jobs", "2"])
        == 0
    )
    return out


def _read_list(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(" ")
        rows.append((key, value))
    return rows


def _fingerprint(out: Path) -> dict[str, str]:
    """sha256 of every file under ``out``, with the folder's own path taken out of the lists."""
    prints = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            data = path.read_bytes().replace(str(out.resolve()).encode(), b"<OUT>")
            prints[str(path.relative_to(out))] = hashlib.sha256(data).hexdigest()
    return prints


def test_layout_and_list_formats(built):
    for split in corpus.SPLITS:
        folder = built / split
        assert sorted(p.name for p in folder.iterdir()) == sorted(LIST_FILES)
        ids = [k for k, _ in _read_list(folder / "wav.scp")]
        assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids
        for name in LIST_FILES:
            keys = [k for k, _ in _read_list(folder / name)]
            assert keys == sorted(keys), name
            if name != "spk2utt":
                assert keys == ids, name
        utt2spk = dict(_read_list(folder / "utt2spk"))
        for utt, spk in utt2spk.items():
            assert utt.startswith(spk + "-")
        spk2utt = {k: v.split() for k, v in _read_list(folder / "spk2utt")}
        assert sorted(u for us in spk2utt.values() for u in us) == ids
        assert all(utt2spk[u] == s for s, us in spk2utt.items() for u in us)
        for _utt, cond in _read_list(folder / "utt2cond"):
            kind, snr = cond.split(" ")
            assert kind in noise.NOISE_TYPES and re.fullmatch(r"-?\d+\.\d", snr) and -5 <= float(snr) <= 20
        for scp in ("wav.scp", "spk1.scp"):
            for _utt, path in _read_list(folder / scp):
                assert Path(path).is_absolute() and Path(path).is_file()
                assert Path(path).is_relative_to(built.resolve() / "audio")
        for _utt, words in _read_list(folder / "text"):
            assert 3 <= len(words.split()) <= 7 and words == words.lower()
    total = sum(len(_read_list(built / s / "wav.scp")) for s in corpus.SPLITS)
    assert total == SMALL
    manifest = json.loads((built / "synth.json").read_text())
    assert manifest["settings"]["num_utts"] == SMALL and set(manifest["augmentations"]) == set(AUGMENTATIONS)
    fixed = manifest["settings"]["festival_fixed_addresses"]  # whether festival's output is reproducible
    assert fixed is bool(engines.fixed_addresses_prefix())


def test_splits_are_speaker_disjoint(built):
    speakers = {s: {v for _, v in _read_list(built / s / "utt2spk")} for s in corpus.SPLITS}
    assert not speakers["train"] & speakers["valid"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["valid"] & speakers["test"]


def test_audio_is_16bit_16khz_mono_in_range_with_the_planned_snr(built):
    checked_snr = 0
    for split in corpus.SPLITS:
        clean_paths = dict(_read_list(built / split / "spk1.scp"))
        cond = dict(_read_list(built / split / "utt2cond"))
        aug = dict(_read_list(built / split / "utt2aug"))
        for utt, path in _read_list(built / split / "wav.scp"):
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype, info.format) == (SR, 1, "PCM_16", "WAV")
            noisy, _ = sf.read(path)
            clean, _ = sf.read(clean_paths[utt])
            assert noisy.shape == clean.shape and 1.0 < len(noisy) / SR < 6.0
            assert np.isfinite(noisy).all() and np.max(np.abs(noisy)) <= 1.0
            kind, snr = cond[utt].split()
            if kind in noise.ADDITIVE_NOISE_TYPES and "bandlimit=0 codec=none" in aug[utt]:
                assert noise.measured_snr(clean, noisy) == pytest.approx(float(snr), abs=0.1), utt
                checked_snr += 1
    assert checked_snr >= 5


def test_same_seed_gives_identical_files_whatever_the_number_of_workers(small_preset, built, tmp_path):
    out = tmp_path / "corpus"
    synthesize_corpus(out, num_utts=SMALL, seed=7, jobs=1)
    assert _fingerprint(out) == _fingerprint(built)  # built with jobs=2
    assert len([p for p in _fingerprint(out) if p.endswith(".wav")]) == 2 * SMALL + 4  # + babble sources


def test_interrupted_build_resumes_to_the_same_files(small_preset, built, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    real_render = corpus.render
    calls = {"n": 0}

    def render_then_fail(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 9:
            raise RuntimeError("simulated interruption")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(corpus, "render", render_then_fail)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        synthesize_corpus(out, num_utts=SMALL, seed=7, jobs=1)
    assert not any((out / split).exists() for split in corpus.SPLITS)  # no list names a missing file
    markers = sorted(out.glob("audio/[tv]*/done/*.json"))
    assert len(markers) == 9
    for marker in markers:  # every finished utterance is complete on disk
        spec = json.loads(marker.read_text())
        for path in out.glob(f"audio/{spec['split']}/*/{spec['utt_id']}.wav"):
            assert sf.info(path).frames > 0

    # A kill in the middle of a write leaves a temporary file; a marker can be stale (other settings).
    stray = markers[0].parent.parent / "noisy" / ".x.wav.123.tmp"
    stray.write_bytes(b"half a file")
    markers[1].write_text("{}")
    monkeypatch.setattr(corpus, "render", real_render)
    summary = synthesize_corpus(out, num_utts=SMALL, seed=7, jobs=1)
    assert summary.synthesised == SMALL - 8 and summary.skipped == 8
    assert not stray.exists()
    assert _fingerprint(out) == _fingerprint(built)  # jobs=1 + resume == jobs=2 in one go

    again = synthesize_corpus(out, num_utts=SMALL, seed=7, jobs=2)  # nothing left to do
    assert again.synthesised == 0 and _fingerprint(out) == _fingerprint(built)


def test_a_corpus_at_8_khz_is_the_16_khz_corpus_resampled_and_a_rate_change_rewrites_it(
    small_preset, built, tmp_path
):
    out = tmp_path / "corpus8k"
    args = ["data", "synth", "--out", str(out), "--num-utts", str(SMALL), "--seed", "7", "--jobs", "2"]
    assert cli_main([*args, "--sample-rate", "8000"]) == 0
    assert json.loads((out / "synth.json").read_text())["settings"]["sample_rate"] == 8000
    for split in corpus.SPLITS:
        for scp in ("wav.scp", "spk1.scp"):
            wide = dict(_read_list(built / split / scp))
            for utt, path in _read_list(out / split / scp):
                info = sf.info(path)
                assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
                narrow, _ = sf.read(path)
                expected = augment.resample(sf.read(wide[utt])[0], Fraction(1, 2))
                assert len(narrow) == len(expected)
                assert np.corrcoef(narrow, expected)[0, 1] > 0.99, (utt, scp)  # same audio, requantised
    babble = sorted(out.glob("audio/babble/clean/*.wav"))
    assert babble and all(sf.info(p).samplerate == SR for p in babble)  # mixed at 16 kHz, never read back

    assert synthesize_corpus(out, num_utts=SMALL, seed=7, jobs=2, sample_rate=8000).synthesised == 0
    rewritten = synthesize_corpus(out, num_utts=SMALL, seed=7, jobs=2)  # the preset's 16 kHz
    assert rewritten.synthesised == SMALL
    assert _fingerprint(out) == _fingerprint(built)  # markers without a rate: as before the option


@pytest.mark.parametrize("preset", ["tiny", "read"])
def test_cli_builds_each_preset_and_prints_the_throughput(
    small_preset, tmp_path, capsys, monkeypatch, preset
):
    monkeypatch.setitem(corpus.PRESETS, "read", dataclasses.replace(small_preset, name="read"))
    out = tmp_path / "c"
    args = ["data", "synth", "--preset", preset, "--out", str(out), "--num-utts", "3", "--jobs", "1"]
    assert cli_main([*args, "--no-augment", "all"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"synthesised 3 utterances in \d+\.\d s \(\d+\.\d utt/s\)", printed)
    plain = "speed=1 vtlp=1 pitch=+0.00 rt60=0.000 bandlimit=0 codec=none level=-25.0"
    assert all(v == plain for s in corpus.SPLITS for _, v in _read_list(out / s / "utt2aug"))
    texts = [t for s in corpus.SPLITS for _, t in _read_list(out / s / "text")]
    if preset == "read":
        assert set(texts) <= set(text.read_sentences())
    else:
        assert all(set(t.split()) <= set(text.tiny_vocabulary()) for t in texts)


@pytest.mark.slow
def test_killed_process_resumes(tmp_path):
    """Kill a real two-worker build (SIGKILL to its process group) and finish it."""
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-m", "gradremedy", "data", "synth", "--out", str(out), "--num-utts", "60",
           "--jobs", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(out.glob("audio/[tv]*/done/*.json"))) < 10 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "train" / "wav.scp").exists()
    done_before = len(list(out.glob("audio/[tv]*/done/*.json")))
    summary = synthesize_corpus(out, num_utts=60, jobs=2)
    assert summary.skipped >= done_before >= 10
    fresh = tmp_path / "fresh"
    synthesize_corpus(fresh, num_utts=60, jobs=2)
    assert _fingerprint(out) == _fingerprint(fresh)
