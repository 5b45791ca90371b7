"""CTC prefix scores against brute-force enumeration of every alignment of tiny posteriors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from gradremedy.decode.ctc_prefix_score import CTCPrefixScorer

BLANK = 0


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    """CTC collapse: merge repeats, drop blanks."""
    out, prev = [], None
    for label in path:
        if label != prev and label != BLANK:
            out.append(label)
        prev = label
    return tuple(out)


def brute_force(log_probs: torch.Tensor, prefix: tuple[int, ...], exact: bool) -> float:
    """log of the summed probability of every path whose output starts with (or, if exact, equals) prefix."""
    num_frames, vocab = log_probs.shape
    total = 0.0
    for path in itertools.product(range(vocab), repeat=num_frames):
        out = collapse(path)
        if (out == prefix) if exact else (out[: len(prefix)] == prefix):
            total += math.exp(sum(log_probs[t, label].item() for t, label in enumerate(path)))
    return math.log(total) if total > 0 else float("-inf")


def extend(scorer: CTCPrefixScorer, prefix: tuple[int, ...]):
    """Walk the scorer along ``prefix`` (one hypothesis), returning the final state."""
    state = scorer.initial_state()
    for label in prefix:
        state = scorer.extend(state, torch.tensor([0]), torch.tensor([label]))
    return state


@pytest.mark.parametrize("prefix", [(), (1,), (2,), (1, 1), (1, 2), (2, 1, 2)])
def test_prefix_scores_match_enumeration_of_alignments(prefix: tuple[int, ...]) -> None:
    vocab, num_frames, eos = 4, 5, 3  # labels 1, 2 (3 is eos: never emitted by the CTC)
    log_probs = torch.randn(num_frames, vocab, dtype=torch.float64).log_softmax(-1)
    log_probs[:, eos] = float("-inf")
    log_probs = log_probs.log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs[None], torch.tensor([num_frames]), blank=BLANK, eos=eos)
    state = extend(scorer, prefix)
    candidates = torch.tensor([[1, 2, eos, BLANK]])
    psi = scorer.score(state, candidates)
    for label, got in zip([1, 2], psi[0, :2].tolist()):
        want = brute_force(log_probs, prefix + (label,), exact=False)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12) or (got == want == float("-inf"))
    assert psi[0, 2].item() == pytest.approx(brute_force(log_probs, prefix, exact=True), rel=1e-9)
    assert psi[0, 3].item() == float("-inf")


def test_prefix_longer_than_the_utterance_is_impossible() -> None:
    log_probs = torch.randn(2, 3).log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs[None], torch.tensor([2]), blank=BLANK, eos=2)
    state = extend(scorer, (1,))
    psi = scorer.score(state, torch.tensor([[1, 2]]))
    assert psi[0, 0].item() == float("-inf")  # "1 1" needs a blank between: 3 frames
    assert math.isfinite(psi[0, 1].item())


def test_padded_rows_score_like_unpadded_ones() -> None:
    """Hypotheses of a short utterance padded to a longer batch get the scores they get alone."""
    vocab, eos = 5, 4
    short = torch.randn(4, vocab).log_softmax(-1)
    long = torch.randn(7, vocab).log_softmax(-1)
    batch = torch.stack([torch.cat([short, torch.randn(3, vocab)]), long])  # garbage in the padding
    batched = CTCPrefixScorer(batch, torch.tensor([4, 7]), blank=BLANK, eos=eos)
    alone = CTCPrefixScorer(short[None], torch.tensor([4]), blank=BLANK, eos=eos)
    candidates = torch.tensor([[1, 2, 3, eos]])
    state_b, state_a = batched.initial_state(), alone.initial_state()
    for label in [2, 3]:
        psi_b = batched.score(state_b, candidates.expand(2, -1))
        psi_a = alone.score(state_a, candidates)
        torch.testing.assert_close(psi_b[0], psi_a[0])
        state_b = batched.extend(state_b, torch.tensor([0, 1]), torch.tensor([label, label]))
        state_a = alone.extend(state_a, torch.tensor([0]), torch.tensor([label]))


def literal_algorithm_2(log_probs: torch.Tensor, prefix: list[int], candidate: int) -> float:
    """Watanabe et al. (2017) Algorithm 2 as written: a loop over frames, one prefix at a time."""
    num_frames = log_probs.shape[0]
    neg = torch.tensor(float("-inf"), dtype=torch.float64)
    r_n = torch.full((num_frames,), float("-inf"), dtype=torch.float64)  # empty prefix
    r_b = torch.cumsum(log_probs[:, BLANK], 0)
    labels: list[int] = []
    for label in [*prefix, candidate]:
        new_n, new_b = torch.full_like(r_n, float("-inf")), torch.full_like(r_n, float("-inf"))
        if not labels:
            new_n[0] = log_probs[0, label]
        psi = new_n[0].clone()
        for t in range(1, num_frames):
            phi = torch.logaddexp(r_b[t - 1], neg if labels and labels[-1] == label else r_n[t - 1])
            new_n[t] = torch.logaddexp(new_n[t - 1], phi) + log_probs[t, label]
            new_b[t] = torch.logaddexp(new_b[t - 1], new_n[t - 1]) + log_probs[t, BLANK]
            psi = torch.logaddexp(psi, phi + log_probs[t, label])
        labels.append(label)
        r_n, r_b = new_n, new_b
    return psi.item()


@pytest.mark.parametrize("sharpness", [1.0, 30.0])
def test_unrolled_recursion_matches_the_literal_frame_loop(sharpness: float) -> None:
    """Long utterance (no enumeration possible), soft and very peaked posteriors (log-probs near -300)."""
    vocab, num_frames, eos = 6, 60, 5
    log_probs = (torch.randn(num_frames, vocab, dtype=torch.float64) * sharpness).log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs[None], torch.tensor([num_frames]), blank=BLANK, eos=eos)
    prefix = [3, 3, 1, 4, 2, 2, 1]
    state = extend(scorer, tuple(prefix))
    candidates = torch.tensor([[1, 2, 3, 4]])
    psi = scorer.score(state, candidates)[0]
    for column, label in enumerate(candidates[0].tolist()):
        assert psi[column].item() == pytest.approx(literal_algorithm_2(log_probs, prefix, label), rel=1e-9)
