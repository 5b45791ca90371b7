"""The loader's audio cache: exact int16 storage of 16-bit PCM, the cap, and the same batches with it on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from gradremedy.config import ConfigError, DataConfig, load_config
from gradremedy.data.audio import load_audio
from gradremedy.data.batching import AudioCache, make_loader

from .helpers import write_table, write_wav

RATE = 16000
# (seconds, file rate, channels, subtype): what the cache must store as int16 or keep as float32.
FILES = [
    (0.30, RATE, 1, "PCM_16"),
    (0.25, RATE, 1, "PCM_16"),
    (0.40, RATE, 1, "FLOAT"),
    (0.35, 8000, 1, "PCM_16"),  # resampled
    (0.30, RATE, 2, "PCM_16"),  # downmixed
    (0.45, RATE, 1, "PCM_24"),
    (0.20, RATE, 1, "PCM_16"),
    (0.50, RATE, 1, "PCM_16"),
]
TENSORS = ("noisy", "noisy_lens", "clean", "has_clean", "tokens", "token_lens", "has_text")


def signals(index: int, seconds: float, rate: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean): a modulated tone plus a sine noise of the utterance's own frequency."""
    t = np.arange(int(round(seconds * rate))) / rate
    speech = (0.1 + 0.02 * index) * np.sin(2 * np.pi * 200.0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    noisy = speech + (0.02 + 0.01 * index) * np.sin(2 * np.pi * (1000.0 + 250.0 * index) * t)
    if channels > 1:
        noisy = np.stack([noisy, 0.5 * noisy], axis=1)
        speech = np.stack([speech, 0.5 * speech], axis=1)
    return noisy.astype(np.float32), speech.astype(np.float32)


def make_cache_dir(root, files=FILES):
    wav, clean, text, utt2spk = [], [], [], []
    for i, (seconds, rate, channels, subtype) in enumerate(files):
        utt = f"u{i:02d}"
        noisy, speech = signals(i, seconds, rate, channels)
        wav.append(f"{utt} {write_wav(root / 'wav' / f'{utt}.wav', noisy, rate, subtype)}")
        clean.append(f"{utt} {write_wav(root / 'clean' / f'{utt}.wav', speech, rate, subtype)}")
        text.append(f"{utt} {['alpha bravo', 'charlie delta echo', 'foxtrot'][i % 3]}")
        utt2spk.append(f"{utt} spk{i % 2}")
    write_table(root / "wav.scp", wav)
    write_table(root / "spk1.scp", clean)
    write_table(root / "text", text)
    write_table(root / "utt2spk", utt2spk)
    return root


def make_segments_dir(root):
    """Two recordings (16-bit PCM and float at 8 kHz) cut into utterances; references keyed by recording."""
    wav, clean, segments, text, utt2spk = [], [], [], [], []
    for r, (rate, subtype) in enumerate([(RATE, "PCM_16"), (8000, "FLOAT")]):
        noisy, speech = signals(r, 1.2, rate, 1)
        wav.append(f"rec{r} {write_wav(root / 'wav' / f'rec{r}.wav', noisy, rate, subtype)}")
        clean.append(f"rec{r} {write_wav(root / 'clean' / f'rec{r}.wav', speech, rate, subtype)}")
        for s, (start, end) in enumerate([(0.0, 0.3), (0.3, 0.65), (0.7, 1.2)]):
            utt = f"rec{r}-{s}"
            segments.append(f"{utt} rec{r} {start} {end}")
            text.append(f"{utt} {['alpha bravo', 'charlie delta echo', 'foxtrot'][s]}")
            utt2spk.append(f"{utt} spk{r}")
    for name, rows in [("wav.scp", wav), ("spk1.scp", clean), ("segments", segments), ("text", text)]:
        write_table(root / name, rows)
    write_table(root / "utt2spk", utt2spk)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return make_cache_dir(tmp_path_factory.mktemp("cache"))


def test_int16_over_32768_is_soundfiles_float32_read_bit_for_bit(tmp_path):
    every = np.arange(-32768, 32768, dtype=np.int16)
    path = tmp_path / "all.wav"
    soundfile.write(path, every, RATE, subtype="PCM_16")
    as_int16, _ = soundfile.read(path, dtype="int16")
    as_float32, _ = soundfile.read(path, dtype="float32")
    assert np.array_equal(as_int16, every)
    expanded = as_int16.astype(np.float32) / np.float32(32768)
    assert expanded.dtype == np.float32 and np.array_equal(expanded.view(np.int32), as_float32.view(np.int32))
    cache = AudioCache(2**20)
    first = cache.load(str(path), RATE)
    stored = cache._store[str(path)]
    assert stored.dtype == np.int16 and np.array_equal(stored, every)
    again = cache.load(str(path), RATE)
    assert again.dtype == np.float32 and np.array_equal(again.view(np.int32), as_float32.view(np.int32))
    assert np.array_equal(first.view(np.int32), as_float32.view(np.int32))


def test_cache_stores_int16_only_for_mono_16_bit_pcm_at_the_rate(cache_dir):
    cache = AudioCache(2**30)
    for i, (_, rate, channels, subtype) in enumerate(FILES):
        spec = str(cache_dir / "wav" / f"u{i:02d}.wav")
        expected = load_audio(spec, RATE)
        assert np.array_equal(cache.load(spec, RATE), expected)  # read and stored
        assert np.array_equal(cache.load(spec, RATE), expected)  # from memory
        compact = subtype == "PCM_16" and rate == RATE and channels == 1
        assert cache._store[spec].dtype == (np.int16 if compact else np.float32), (i, subtype)
    assert cache.used_bytes == sum(a.nbytes for a in cache._store.values())


def test_cache_hands_out_new_arrays_and_keeps_to_its_cap(cache_dir):
    specs = [str(cache_dir / "wav" / f"u{i:02d}.wav") for i in range(len(FILES))]
    cache = AudioCache(2 * 4800 * 4)  # room for two 0.3 s float32 files or more int16 ones
    for spec in specs:
        cache.load(spec, RATE)
    assert 0 < len(cache) < len(specs) and cache.declined > 0
    assert cache.used_bytes <= cache.cap_bytes
    kept = next(iter(cache._store))
    loaded = cache.load(kept, RATE)
    loaded[:] = 0  # the caller's own copy
    assert np.array_equal(cache.load(kept, RATE), load_audio(kept, RATE))
    for spec in specs:  # past the cap: read from disk, the same samples
        assert np.array_equal(cache.load(spec, RATE), load_audio(spec, RATE))
    assert AudioCache(0).load(specs[0], RATE) is not None and len(AudioCache(0)) == 0


def two_epochs(directory, tokenizer, cap_bytes: int | None = None, **settings) -> tuple[list, object]:
    config = DataConfig(batch_size=3, num_buckets=2, **settings)
    loader, sampler = make_loader(directory, tokenizer, config, RATE, seed=5, shuffle=True, train=True)
    if cap_bytes is not None:
        loader.dataset.audio_cache = AudioCache(cap_bytes)
    batches = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches += list(loader)
    return batches, loader.dataset


def assert_same_batches(first: list, second: list) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.ids == b.ids
        for name in TENSORS:
            assert torch.equal(getattr(a, name), getattr(b, name)), (a.ids, name)


@pytest.mark.parametrize("mixing", [0.0, 1.0])
@pytest.mark.parametrize("full", [True, False])
def test_batches_are_the_same_with_and_without_the_cache(cache_dir, tokenizer, mixing, full):
    plain, plain_dataset = two_epochs(cache_dir, tokenizer, dynamic_mixing=mixing)
    if full:
        cached, dataset = two_epochs(cache_dir, tokenizer, dynamic_mixing=mixing, audio_cache_mb=1)
        assert len(dataset.audio_cache) == 2 * len(FILES) and dataset.audio_cache.declined == 0
    else:  # 30 KB: part of the files
        cached, dataset = two_epochs(cache_dir, tokenizer, 30_000, dynamic_mixing=mixing)
        assert 0 < len(dataset.audio_cache) < 2 * len(FILES) and dataset.audio_cache.declined > 0
    assert_same_batches(plain, cached)
    assert len(plain_dataset.audio_cache) == 0


def test_segments_and_mixing_same_batches_with_the_cache(tmp_path, tokenizer):
    root = make_segments_dir(tmp_path / "seg")
    plain, _ = two_epochs(root, tokenizer, dynamic_mixing=0.5)
    cached, dataset = two_epochs(root, tokenizer, dynamic_mixing=0.5, audio_cache_mb=1)
    assert_same_batches(plain, cached)
    stored = dataset.audio_cache._store
    assert len(stored) == 12  # each segment of each recording, noisy and clean
    assert {a.dtype for spec, a in stored.items() if "rec0" in spec[0]} == {np.dtype(np.int16)}
    assert {a.dtype for spec, a in stored.items() if "rec1" in spec[0]} == {np.dtype(np.float32)}


def test_a_loader_worker_with_a_cache_loads_the_same_batches(cache_dir, tokenizer):
    plain, _ = two_epochs(cache_dir, tokenizer, dynamic_mixing=0.5)
    in_worker, _ = two_epochs(cache_dir, tokenizer, dynamic_mixing=0.5, audio_cache_mb=1, num_workers=1)
    assert_same_batches(plain, in_worker)


def test_each_transcript_is_encoded_once(cache_dir, tokenizer):
    config = DataConfig(batch_size=3)
    loader, sampler = make_loader(cache_dir, tokenizer, config, RATE, seed=1, shuffle=True, train=True)
    calls = []
    encode = tokenizer.encode
    loader.dataset.tokenizer = type(
        "Counting", (), {"encode": lambda self, t: calls.append(t) or encode(t)}
    )()
    first = list(loader)
    sampler.set_epoch(1)
    second = list(loader)
    assert len(calls) == len(FILES)
    by_id = {b.ids[r]: b.tokens[r].tolist() for b in first for r in range(len(b))}
    assert all(by_id[b.ids[r]] == b.tokens[r].tolist() for b in second for r in range(len(b)))


def test_cache_setting_is_checked_and_the_tiny_recipe_sets_one(tmp_path):
    assert DataConfig().audio_cache_mb == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  audio_cache_mb: -1\n")
    with pytest.raises(ConfigError, match="audio_cache_mb"):
        load_config(bad)
    assert load_config(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml").data.audio_cache_mb > 0
