"""Dynamic mixing: the remix maths, donor selection, and the training loader's draws and resume."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.config import ConfigError, DataConfig, load_config
from gradremedy.data.audio import load_audio
from gradremedy.data.batching import make_loader
from gradremedy.data.kaldi_dir import read_data_dir, write_data_dir
from gradremedy.data.mixing import (
    donor_indices,
    donor_levels,
    draw_donor,
    is_additive,
    mix_rng,
    remix,
    rms,
)

from .helpers import write_table, write_wav

RATE = 16000
# (seconds, utt2cond condition, utt2aug entry); u02 radio, u04 codec, u06 bandlimit are not donors.
SPECS = [
    (0.20, "white", "speed=1.0 bandlimit=0 codec=none"),
    (0.35, "pink", "speed=1.1 bandlimit=0 codec=none"),
    (0.30, "radio", "speed=1.0 bandlimit=0 codec=none"),
    (0.50, "babble", "speed=0.9 bandlimit=0 codec=none"),
    (0.25, "white", "speed=1.0 bandlimit=0 codec=gsm"),
    (0.40, "sfx", "speed=1.0 bandlimit=0 codec=none"),
    (0.30, "brown", "speed=1.0 bandlimit=1 codec=none"),
    (0.45, "white", "speed=1.0 bandlimit=0 codec=none"),
]
NOT_DONORS = {"u02", "u04", "u06"}


def noise_freq(index: int) -> float:
    """Each utterance's noise is a sine of its own frequency, so a mixture names its donor."""
    return 1000.0 + 250.0 * index


def make_mixing_dir(root, specs=SPECS, *, with_aug: bool = True, with_cond: bool = True):
    """Additive mixtures ``clean + noise`` stored as float WAV, so that noisy - clean is the noise."""
    wav, clean, text, utt2spk, utt2cond, utt2aug = [], [], [], [], [], []
    for i, (seconds, condition, aug) in enumerate(specs):
        utt = f"u{i:02d}"
        t = np.arange(int(round(seconds * RATE))) / RATE
        speech = (0.1 + 0.02 * i) * np.sin(2 * np.pi * 200.0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        noise = (0.02 + 0.01 * i) * np.sin(2 * np.pi * noise_freq(i) * t)
        noisy_path = write_wav(
            root / "wav" / f"{utt}.wav", (speech + noise).astype(np.float32), subtype="FLOAT"
        )
        clean_path = write_wav(root / "clean" / f"{utt}.wav", speech.astype(np.float32), subtype="FLOAT")
        wav.append(f"{utt} {noisy_path}")
        clean.append(f"{utt} {clean_path}")
        text.append(f"{utt} {['alpha bravo', 'charlie delta echo', 'foxtrot'][i % 3]}")
        utt2spk.append(f"{utt} spk{i % 2}")
        utt2cond.append(f"{utt} {condition} {5 * (i % 3)}")
        utt2aug.append(f"{utt} {aug}")
    write_table(root / "wav.scp", wav)
    write_table(root / "spk1.scp", clean)
    write_table(root / "text", text)
    write_table(root / "utt2spk", utt2spk)
    if with_cond:
        write_table(root / "utt2cond", utt2cond)
    if with_aug:
        write_table(root / "utt2aug", utt2aug)
    return root


@pytest.fixture(scope="module")
def mix_dir(tmp_path_factory):
    return make_mixing_dir(tmp_path_factory.mktemp("mix"))


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    return 10 * np.log10(
        np.sum(np.square(speech, dtype=np.float64)) / np.sum(np.square(noise, dtype=np.float64))
    )


def dominant_freq(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / RATE)[np.argmax(spectrum)])


def loader_items(loader) -> dict[str, dict[str, np.ndarray]]:
    """utt id -> its unpadded noisy, clean and tokens, over one pass of the loader."""
    items = {}
    for batch in loader:
        for row, utt_id in enumerate(batch.ids):
            length = int(batch.noisy_lens[row])
            items[utt_id] = {
                "noisy": batch.noisy[row, :length].numpy().copy(),
                "clean": batch.clean[row, :length].numpy().copy(),
                "tokens": batch.tokens[row, : int(batch.token_lens[row])].numpy().copy(),
            }
    return items


def batches_equal(first: list, second: list) -> bool:
    return len(first) == len(second) and all(
        a.ids == b.ids and torch.equal(a.noisy, b.noisy) and torch.equal(a.clean, b.clean)
        for a, b in zip(first, second)
    )


# ---------------------------------------------------------------------------------------------------
# The pure function


@settings(max_examples=60, deadline=None)
@given(
    clean_len=st.integers(1, 400),
    donor_len=st.integers(1, 400),
    seed=st.integers(0, 2**32 - 1),
    level=st.floats(1e-3, 10.0),
)
def test_remix_keeps_length_and_the_donors_snr_and_cuts_or_loops_the_noise(clean_len, donor_len, seed, level):
    rng = np.random.default_rng(seed)
    clean = (level * rng.standard_normal(clean_len)).astype(np.float32)
    donor_clean = rng.standard_normal(donor_len)
    noise = rng.uniform(0.01, 2.0) * rng.standard_normal(donor_len)
    # The donor's speech may be silent where the noise is not (and vice versa); only whole silence matters.
    clean[rng.integers(clean_len)] = level
    donor_clean[rng.integers(donor_len)] = 1.0
    noise[rng.integers(donor_len)] = 1.0
    mixed = remix(clean, donor_clean + noise, donor_clean, np.random.default_rng(seed + 1))
    assert mixed is not None and mixed.shape == clean.shape and mixed.dtype == clean.dtype
    residual = mixed.astype(np.float64) - clean
    assert snr_db(clean, residual) == pytest.approx(snr_db(donor_clean, noise), abs=1e-3)
    # The residual is a scaled window of the noise: contiguous when the noise is long enough, else looped.
    offsets = range(donor_len - clean_len + 1) if donor_len >= clean_len else range(donor_len)
    windows = [noise[(o + np.arange(clean_len)) % donor_len] for o in offsets]
    gains = [np.dot(residual, w) / np.dot(w, w) for w in windows]
    tolerance = 1e-5 * (np.max(np.abs(mixed)) + 1)
    assert any(np.allclose(residual, g * w, atol=tolerance) for g, w in zip(gains, windows))


def remix_of_the_whole_noise(clean, donor_noisy, donor_clean, rng):
    """remix written out on the whole noise, as the docstring states it: the reference for exactness."""
    noise = np.asarray(donor_noisy, dtype=np.float64) - np.asarray(donor_clean, dtype=np.float64)
    clean_rms, donor_rms = rms(clean), rms(donor_clean)
    if clean_rms == 0 or donor_rms == 0 or len(noise) == 0:
        return None
    length = len(clean)
    offset = int(rng.integers(len(noise) - length + 1 if len(noise) >= length else len(noise)))
    cut = noise[(offset + np.arange(length)) % len(noise)]
    gain = clean_rms / donor_rms * (rms(noise) / rms(cut) if rms(cut) > 0 else 1.0)
    return (np.asarray(clean, dtype=np.float64) + gain * cut).astype(clean.dtype, copy=False)


@settings(max_examples=60, deadline=None)
@given(
    clean_len=st.integers(1, 300),
    donor_len=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
    silent=st.sampled_from(["", "clean", "donor"]),
)
def test_remix_with_known_levels_is_the_remix_of_the_whole_noise_bit_for_bit(
    clean_len, donor_len, seed, silent
):
    rng = np.random.default_rng(seed)
    clean = rng.standard_normal(clean_len).astype(np.float32) * (silent != "clean")
    donor_clean = rng.standard_normal(donor_len).astype(np.float32) * (silent != "donor")
    donor_noisy = donor_clean + rng.standard_normal(donor_len).astype(np.float32)
    expected = remix_of_the_whole_noise(clean, donor_noisy, donor_clean, np.random.default_rng(seed + 1))
    plain = remix(clean, donor_noisy, donor_clean, np.random.default_rng(seed + 1))
    known = remix(
        clean,
        donor_noisy,
        donor_clean,
        np.random.default_rng(seed + 1),
        clean_rms=rms(clean),
        levels=donor_levels(donor_noisy, donor_clean),
    )
    if expected is None:
        assert plain is None and known is None
    else:
        assert np.array_equal(plain, expected) and np.array_equal(known, expected)
        assert known.dtype == np.float32


@pytest.mark.parametrize("donor_len", [1000, 30])  # cut, looped
def test_remix_starts_the_noise_at_a_random_offset(donor_len):
    ramp = np.arange(1.0, donor_len + 1)  # a noise whose every window differs
    clean = np.ones(100)
    starts = set()
    for seed in range(20):
        residual = (
            remix(clean, np.ones(donor_len) + ramp, np.ones(donor_len), np.random.default_rng(seed)) - 1
        )
        starts.add(round(float(residual[0] / residual.max()), 9))
    assert len(starts) > 5


def test_remix_refuses_silent_references_and_mismatched_donors():
    rng = np.random.default_rng(0)
    speech = np.ones(10, np.float32)
    assert remix(np.zeros(10, np.float32), speech * 2, speech, rng) is None
    assert remix(speech, speech * 2, np.zeros(10), rng) is None
    with pytest.raises(ValueError, match="donor noisy has 10 samples, its clean 9"):
        remix(speech, speech, speech[:9], rng)


def test_draw_donor_never_picks_the_utterance_itself():
    donors = [0, 2, 3, 7]
    picks = [draw_donor(mix_rng(5, 0, i), 1.0, 3, donors) for i in range(200)]
    assert set(picks) == {0, 2, 7}
    assert draw_donor(mix_rng(5, 0, 0), 1.0, 9, donors) in donors
    assert draw_donor(mix_rng(5, 0, 0), 1.0, 2, [2]) is None
    assert all(draw_donor(mix_rng(5, 0, i), 0.0, 1, donors) is None for i in range(50))
    drawn = sum(draw_donor(mix_rng(5, 0, i), 0.3, 1, donors) is not None for i in range(2000))
    assert 500 < drawn < 700  # p = 0.3 of 2000


# ---------------------------------------------------------------------------------------------------
# Donors


def test_radio_codec_and_bandlimit_utterances_are_never_donors(mix_dir, tmp_path):
    directory = read_data_dir(mix_dir)
    assert directory["u04"].augmentations == "speed=1.0 bandlimit=0 codec=gsm"
    donors = {directory.ids[i] for i in donor_indices(directory.utterances)}
    assert donors == set(directory.ids) - NOT_DONORS
    write_data_dir(tmp_path / "copy", directory)  # utt2aug survives a rewrite
    assert {directory.ids[i] for i in donor_indices(read_data_dir(tmp_path / "copy").utterances)} == donors
    # A real corpus's directory (no utt2cond/utt2aug): every utterance with a clean reference lends.
    plain = make_mixing_dir(tmp_path / "plain", with_aug=False, with_cond=False)
    assert donor_indices(read_data_dir(plain).utterances) == list(range(len(SPECS)))
    write_table(plain / "spk1.scp", (plain / "spk1.scp").read_text().splitlines()[1:])
    assert not is_additive(read_data_dir(plain)["u00"])
    rats = read_data_dir(
        make_mixing_dir(tmp_path / "rats", [(0.2, "A", ""), (0.2, "H", ""), (0.2, "simu", "")])
    )
    assert donor_indices(rats.utterances) == [2]  # RATS transceiver channels are not additive


def test_mixed_noise_comes_from_an_allowed_donor_in_every_epoch(mix_dir, tokenizer):
    config = DataConfig(batch_size=3, num_buckets=2, dynamic_mixing=1.0)
    loader, sampler = make_loader(mix_dir, tokenizer, config, RATE, seed=4, shuffle=True, train=True)
    allowed = {noise_freq(i) for i, _ in enumerate(SPECS) if f"u{i:02d}" not in NOT_DONORS}
    seen = set()
    for epoch in range(4):
        sampler.set_epoch(epoch)
        for utt_id, item in loader_items(loader).items():
            own = noise_freq(int(utt_id[1:]))
            freq = min(allowed | {own}, key=lambda f: abs(f - dominant_freq(item["noisy"] - item["clean"])))
            assert freq in allowed and freq != own, (epoch, utt_id)
            seen.add(freq)
    assert len(seen) > 2


# ---------------------------------------------------------------------------------------------------
# The loader


def test_off_by_default_and_never_outside_training(mix_dir, tokenizer):
    assert DataConfig().dynamic_mixing == 0.0
    off, _ = make_loader(mix_dir, tokenizer, DataConfig(batch_size=3), RATE, seed=2, shuffle=True, train=True)
    on = DataConfig(batch_size=3, dynamic_mixing=1.0)
    valid, _ = make_loader(mix_dir, tokenizer, on, RATE, seed=2, shuffle=True)  # train=False
    plain = list(off)
    assert batches_equal(plain, list(valid))
    directory = read_data_dir(mix_dir)
    for batch in plain:  # exactly the files
        for row, utt_id in enumerate(batch.ids):
            noisy = load_audio(directory[utt_id].noisy_spec, RATE)
            assert np.array_equal(batch.noisy[row, : len(noisy)].numpy(), noisy)


def test_full_mixing_changes_noisy_only(mix_dir, tokenizer):
    base = DataConfig(batch_size=3, num_buckets=2)
    plain = loader_items(make_loader(mix_dir, tokenizer, base, RATE, seed=3, shuffle=True, train=True)[0])
    config = DataConfig(batch_size=3, num_buckets=2, dynamic_mixing=1.0)
    mixed = loader_items(make_loader(mix_dir, tokenizer, config, RATE, seed=3, shuffle=True, train=True)[0])
    assert mixed.keys() == plain.keys()
    for utt_id, item in mixed.items():
        assert len(item["noisy"]) == len(plain[utt_id]["noisy"])
        assert not np.allclose(item["noisy"], plain[utt_id]["noisy"]), utt_id
        assert np.array_equal(item["clean"], plain[utt_id]["clean"])
        assert np.array_equal(item["tokens"], plain[utt_id]["tokens"])


def test_half_mixing_mixes_some(mix_dir, tokenizer):
    base = DataConfig(batch_size=4)
    plain = loader_items(make_loader(mix_dir, tokenizer, base, RATE, seed=3, shuffle=True, train=True)[0])
    config = DataConfig(batch_size=4, dynamic_mixing=0.5)
    loader, sampler = make_loader(mix_dir, tokenizer, config, RATE, seed=3, shuffle=True, train=True)
    changed = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        items = loader_items(loader)
        changed += [not np.array_equal(items[u]["noisy"], plain[u]["noisy"]) for u in items]
    assert 0 < sum(changed) < len(changed)


@pytest.mark.parametrize("workers", [0, 1])
def test_same_seed_and_epoch_same_batches_other_epoch_other_mixtures(mix_dir, tokenizer, workers):
    config = DataConfig(batch_size=3, num_buckets=2, dynamic_mixing=1.0, num_workers=workers)
    first, sampler = make_loader(mix_dir, tokenizer, config, RATE, seed=7, shuffle=True, train=True, epoch=1)
    serial = DataConfig(batch_size=3, num_buckets=2, dynamic_mixing=1.0)
    second, _ = make_loader(mix_dir, tokenizer, serial, RATE, seed=7, shuffle=True, train=True, epoch=1)
    epoch1 = list(first)
    assert batches_equal(epoch1, list(second))
    sampler.set_epoch(2)  # before the epoch's iterator copies the dataset into the workers
    later = loader_items(first)
    again = {b.ids[r]: b.noisy[r] for b in epoch1 for r in range(len(b))}
    assert any(
        not torch.equal(torch.from_numpy(later[u]["noisy"]), again[u][: len(later[u]["noisy"])])
        for u in later
    )
    sampler.set_epoch(1)
    assert batches_equal(list(first), epoch1)


def test_resume_mid_epoch_equals_the_uninterrupted_epoch(mix_dir, tokenizer):
    config = DataConfig(batch_size=2, num_buckets=2, dynamic_mixing=0.7)
    loader, _ = make_loader(mix_dir, tokenizer, config, RATE, seed=9, shuffle=True, train=True, epoch=3)
    full = list(loader)
    resumed, sampler = make_loader(
        mix_dir, tokenizer, config, RATE, seed=9, shuffle=True, train=True, epoch=0
    )
    sampler.set_epoch(3, start_batch=2)  # as run_training does after loading a checkpoint
    assert batches_equal(list(resumed), full[2:])
    # and epoch 3's mixtures are its own, not epoch 0's
    sampler.set_epoch(0)
    epoch0 = loader_items(resumed)
    epoch3 = {b.ids[r]: b.noisy[r, : int(b.noisy_lens[r])].numpy() for b in full for r in range(len(b))}
    assert any(not np.array_equal(epoch0[u]["noisy"], epoch3[u]) for u in epoch3)


def test_no_donors_is_a_no_op_with_one_warning(tmp_path, tokenizer, caplog):
    root = make_mixing_dir(tmp_path / "radio", [(0.2, "radio", ""), (0.3, "radio", "")])
    config = DataConfig(batch_size=2, dynamic_mixing=1.0)
    with caplog.at_level(logging.WARNING, logger="gradremedy.data.batching"):
        loader, _ = make_loader(root, tokenizer, config, RATE, seed=1, shuffle=True, train=True)
    assert caplog.text.count("dynamic mixing is off") == 1
    plain, _ = make_loader(root, tokenizer, DataConfig(batch_size=2), RATE, seed=1, shuffle=True, train=True)
    assert batches_equal(list(loader), list(plain))


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_probability_outside_zero_one_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"'data\.dynamic_mixing' must be a probability in \[0, 1\]"):
        load_config(None, [f"data.dynamic_mixing={value}"])
    assert load_config(None, ["data.dynamic_mixing=0.5"]).data.dynamic_mixing == 0.5
