"""Joint CTC/attention beam search: reduces to greedy decoding, finds the exact CTC optimum, scores what it
says it scores, and gives the same answers batched as one utterance at a time."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from gradremedy.decode.beam_search import beam_search
from gradremedy.decode.greedy import greedy_attention, greedy_ctc

from .helpers import ctc_log_likelihood, make_batch, peaky_ctc_model, tiny_model


@pytest.mark.parametrize("length_penalty", [0.0, 0.5])
def test_beam_one_without_ctc_is_greedy_attention(length_penalty: float) -> None:
    model = tiny_model()
    enc, enc_lens = make_batch([9, 5, 12, 3])
    greedy = greedy_attention(model, enc, enc_lens, max_length_ratio=1.0)
    beam = beam_search(model, enc, enc_lens, beam_size=1, ctc_weight=0.0, length_penalty=length_penalty)
    assert [hyps[0].tokens for hyps in beam] == greedy
    assert any(len(tokens) > 1 for tokens in greedy)  # the comparison is not between empty outputs


def brute_force_ctc_decode(log_probs: torch.Tensor, labels: list[int]) -> tuple[tuple[int, ...], float]:
    """The most probable label sequence: every sequence up to T labels, each scored over all alignments."""
    num_frames = log_probs.shape[0]
    best, best_score = (), float("-inf")
    for length in range(num_frames + 1):
        for seq in itertools.product(labels, repeat=length):
            score = ctc_log_likelihood(log_probs, list(seq))
            if score > best_score:
                best, best_score = seq, score
    return best, best_score


def test_ctc_weight_one_finds_the_brute_force_ctc_optimum() -> None:
    """Tiny case (V = 4: blank, two labels, <eos>; T = 5): a wide beam must find the best labelling."""
    num_frames = 5
    for trial in range(4):
        model = tiny_model(vocab_size=4, seed=trial)
        enc = torch.randn(1, num_frames, 16) * 3
        log_probs = model.ctc_log_probs(enc)[0].double()
        best, best_score = brute_force_ctc_decode(log_probs, [1, 2])
        hyps = beam_search(model, enc, torch.tensor([num_frames]), beam_size=40, ctc_weight=1.0)
        assert tuple(hyps[0][0].tokens) == best
        assert hyps[0][0].score == pytest.approx(best_score, rel=1e-5)


def test_ctc_weight_one_agrees_with_greedy_ctc_on_peaky_posteriors() -> None:
    """When each frame is nearly certain, the best path and the best labelling coincide."""
    path = [0, 2, 2, 0, 1, 0, 0, 1, 2, 2, 0]
    model, enc = peaky_ctc_model(path)
    lens = torch.tensor([len(path)])
    expected = greedy_ctc(model.ctc_log_probs(enc), lens)[0]
    assert expected == [2, 1, 1, 2]
    hyps = beam_search(model, enc, lens, beam_size=4, ctc_weight=1.0, length_penalty=0.0)
    assert hyps[0][0].tokens == expected


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3, 1.0])
def test_batched_search_equals_one_utterance_at_a_time(ctc_weight: float) -> None:
    model = tiny_model()
    enc, enc_lens = make_batch([10, 4, 13, 7])
    batched = beam_search(
        model, enc, enc_lens, beam_size=4, ctc_weight=ctc_weight, length_penalty=0.2, nbest=3
    )
    for i in range(enc.shape[0]):
        alone = beam_search(
            model,
            enc[i : i + 1, : enc_lens[i]],
            enc_lens[i : i + 1],
            beam_size=4,
            ctc_weight=ctc_weight,
            length_penalty=0.2,
            nbest=3,
        )[0]
        assert [h.tokens for h in batched[i]] == [h.tokens for h in alone]
        for got, want in zip(batched[i], alone):
            assert got.score == pytest.approx(want.score, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("ctc_weight", [0.0, 0.4, 1.0])
def test_reported_score_is_the_joint_score_of_the_hypothesis(ctc_weight: float) -> None:
    """score = (1 - l) log P_att(h <eos>) + l log P_ctc(h) + penalty * (|h| + 1), recomputed from scratch."""
    model = tiny_model()
    enc, enc_lens = make_batch([11, 6])
    penalty = 0.7
    results = beam_search(
        model, enc, enc_lens, beam_size=3, ctc_weight=ctc_weight, length_penalty=penalty, nbest=3
    )
    ctc = model.ctc_log_probs(enc).double()
    eos = model.vocab_size - 1
    for i, hyps in enumerate(results):
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        for hyp in hyps:
            full = [eos, *hyp.tokens, eos]
            att = 0.0
            for k in range(1, len(full)):
                prefix = torch.tensor([full[:k]])
                att += model.decoder_log_probs(prefix, enc[i : i + 1], enc_lens[i : i + 1])[0, full[k]].item()
            ctc_score = ctc_log_likelihood(ctc[i, : enc_lens[i]], hyp.tokens)
            want = (1 - ctc_weight) * att + penalty * (len(hyp.tokens) + 1)
            if ctc_weight > 0:
                want += ctc_weight * ctc_score
            assert hyp.score == pytest.approx(want, rel=1e-4, abs=1e-3)


def test_larger_beam_never_scores_worse() -> None:
    model = tiny_model()
    enc, enc_lens = make_batch([12, 9, 6])
    small = beam_search(model, enc, enc_lens, beam_size=1, ctc_weight=0.3, length_penalty=0.0)
    large = beam_search(model, enc, enc_lens, beam_size=8, ctc_weight=0.3, length_penalty=0.0)
    for a, b in zip(small, large):
        assert b[0].score >= a[0].score - 1e-5


def test_outputs_respect_the_length_limit() -> None:
    model = tiny_model(eos_bias=-30.0)  # the decoder hardly ever wants to stop
    enc, enc_lens = make_batch([6, 3])
    for hyps in beam_search(model, enc, enc_lens, beam_size=3, ctc_weight=0.0, max_length_ratio=0.5):
        assert all(math.isfinite(h.score) for h in hyps)
    out = beam_search(model, enc, enc_lens, beam_size=3, ctc_weight=0.0, max_length_ratio=0.5)
    assert [len(h[0].tokens) for h in out] == [3, 1]
    assert [len(t) for t in greedy_attention(model, enc, enc_lens, max_length_ratio=0.5)] == [3, 1]
