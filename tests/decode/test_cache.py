"""The incremental decoder (keys and values cached per block) against re-running the whole prefix: one step
equals the last position of the full forward pass, and the cached beam search returns the same hypotheses
and scores as the uncached one, batched or one utterance at a time, with and without CTC and LM."""

from __future__ import annotations

import pytest
import torch

from gradremedy.decode.batch import decode_batch
from gradremedy.decode.beam_search import beam_search
from gradremedy.decode.lm import LSTMLM

from .helpers import make_batch, tiny_model


def test_step_equals_the_last_position_of_the_full_forward() -> None:
    """Three utterances (padded encoder outputs) x two hypotheses each, fed token by token."""
    model = tiny_model(vocab_size=9, seed=1)
    decoder = model.decoder
    enc, enc_lens = make_batch([7, 3, 5])
    width, eos = 2, model.vocab_size - 1
    tokens = torch.cat([torch.full((6, 1), eos), torch.randint(1, eos, (6, 5))], dim=1)  # (A x W, L)
    rows = torch.arange(3).repeat_interleave(width)
    state = decoder.start(enc, enc_lens, width)
    for length in range(1, tokens.shape[1] + 1):
        logits, state = decoder.step(tokens[:, length - 1], state)
        full = decoder(tokens[:, :length], torch.full((6,), length), enc[rows], enc_lens[rows])[:, -1]
        torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)
    assert state.length == tokens.shape[1]


def test_reordered_and_dropped_rows_keep_their_own_prefixes() -> None:
    """After ``take`` (parents within an utterance) and ``take_utterances``, each row continues the prefix
    it was given."""
    model = tiny_model(vocab_size=9, seed=2)
    decoder = model.decoder
    enc, enc_lens = make_batch([6, 4])
    eos = model.vocab_size - 1
    state = decoder.start(enc, enc_lens, 3)
    first = torch.tensor([1, 2, 3, 4, 5, 6])
    _, state = decoder.step(torch.full((6,), eos), state)
    _, state = decoder.step(first, state)
    parents = torch.tensor([2, 2, 0, 4, 3, 5])  # each row's parent is a row of its own utterance
    state = state.take(parents).take_utterances(torch.tensor([1]), 3)  # then the first utterance ends
    logits, _ = decoder.step(torch.tensor([7, 1, 2]), state)
    prefixes = torch.tensor([[eos, 5, 7], [eos, 4, 1], [eos, 6, 2]])
    full = decoder(prefixes, torch.full((3,), 3), enc[[1, 1, 1]], enc_lens[[1, 1, 1]])[:, -1]
    torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)


def assert_same_results(cached, uncached) -> None:
    assert len(cached) == len(uncached)
    for got, want in zip(cached, uncached):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beam_size", [1, 4, 9])
@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
@pytest.mark.parametrize("with_lm", [False, True])
def test_cached_search_equals_uncached_search(seed: int, beam_size: int, ctc_weight: float, with_lm: bool):
    model = tiny_model(vocab_size=8, eos_bias=-1.5, seed=seed)
    torch.manual_seed(100 + seed)
    lm = LSTMLM(vocab_size=model.vocab_size, layers=1, units=8).eval() if with_lm else None
    enc, enc_lens = make_batch([11, 5, 14, 8])
    settings = dict(
        beam_size=beam_size, ctc_weight=ctc_weight, length_penalty=0.3, lm=lm, lm_weight=0.5, nbest=beam_size
    )
    cached = beam_search(model, enc, enc_lens, cache=True, **settings)
    uncached = beam_search(model, enc, enc_lens, cache=False, **settings)
    assert_same_results(cached, uncached)
    assert max(len(h.tokens) for hyps in cached for h in hyps) > 3  # not only empty or short outputs


@pytest.mark.parametrize("ctc_weight", [0.0, 0.5])
def test_cached_batched_search_equals_one_utterance_at_a_time(ctc_weight: float) -> None:
    model = tiny_model(seed=4)
    torch.manual_seed(7)
    lm = LSTMLM(vocab_size=model.vocab_size, layers=2, units=8).eval()
    enc, enc_lens = make_batch([9, 13, 4, 10, 6])
    settings = dict(beam_size=5, ctc_weight=ctc_weight, length_penalty=0.1, lm=lm, lm_weight=0.3, nbest=3)
    batched = beam_search(model, enc, enc_lens, **settings)
    for i in range(enc.shape[0]):
        one, one_len = enc[i : i + 1, : enc_lens[i]], enc_lens[i : i + 1]
        alone = beam_search(model, one, one_len, cache=False, **settings)
        assert_same_results(batched[i : i + 1], alone)


def test_decode_batch_of_waveforms_equals_one_at_a_time_and_the_uncached_search() -> None:
    model = tiny_model(vocab_size=8, eos_bias=-2.0, seed=5)
    rate = model.sample_rate
    torch.manual_seed(11)
    lengths = torch.tensor([int(0.9 * rate), int(0.5 * rate), int(0.7 * rate)])
    waveforms = torch.randn(3, int(lengths.max())) * 0.1
    for i, n in enumerate(lengths.tolist()):
        waveforms[i, n:] = 0.0
    settings = dict(beam_size=4, ctc_weight=0.3, length_penalty=0.2, nbest=2)
    batched = decode_batch(model, waveforms, lengths, **settings)
    assert_same_results(batched, decode_batch(model, waveforms, lengths, cache=False, **settings))
    for i, n in enumerate(lengths.tolist()):
        alone = decode_batch(model, waveforms[i : i + 1, :n], lengths[i : i + 1], **settings)
        assert_same_results(batched[i : i + 1], alone)
    assert max(len(h.tokens) for hyps in batched for h in hyps) > 3


def test_step_refuses_training_mode() -> None:
    """Dropout would make the cached keys differ from a full forward pass: the step is for inference only."""
    model = tiny_model()
    enc, enc_lens = make_batch([4])
    state = model.decoder.start(enc, enc_lens, 1)
    model.decoder.train()
    with pytest.raises(RuntimeError, match="inference"):
        model.decoder.step(torch.tensor([model.vocab_size - 1]), state)
