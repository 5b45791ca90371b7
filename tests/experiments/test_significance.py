"""Statistics of the comparison report: mean/std, relative change, paired bootstrap, sign test."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.experiments.significance import (
    mean_std,
    paired_bootstrap,
    relative_change,
    sign_test,
    utterance_errors,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=2, max_size=20))
def test_mean_std_matches_the_statistics_module(values):
    result = mean_std(values)
    assert result["n"] == len(values)
    assert result["mean"] == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-6)
    assert result["std"] == pytest.approx(statistics.stdev(values), rel=1e-6, abs=1e-6)


def test_mean_std_of_one_value_has_zero_std_and_of_none_is_undefined():
    assert mean_std([12.5]) == {"mean": 12.5, "std": 0.0, "n": 1}
    assert mean_std([]) == {"mean": None, "std": None, "n": 0}
    assert mean_std([1.0, math.nan, None, 3.0])["mean"] == 2.0  # non-finite and missing values are ignored


@given(st.floats(min_value=0.1, max_value=100), st.floats(min_value=-99, max_value=500))
def test_relative_change_inverts_scaling(baseline, percent):
    assert relative_change(baseline * (1 + percent / 100), baseline) == pytest.approx(percent, abs=1e-6)


def test_relative_change_is_undefined_without_a_baseline():
    assert relative_change(10.0, None) is None
    assert relative_change(10.0, 0.0) is None
    assert relative_change(None, 10.0) is None
    assert relative_change(9.0, 10.0) == pytest.approx(-10.0)


def _errors(rate: float, num_utts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    words = rng.integers(3, 12, size=num_utts)
    return rng.binomial(words, rate), words


def test_bootstrap_gives_a_small_p_value_when_the_candidate_is_clearly_better():
    baseline, words = _errors(0.30, 300, seed=1)
    rng = np.random.default_rng(2)
    candidate = rng.binomial(words, 0.15)
    result = paired_bootstrap(candidate, baseline, words, resamples=2000, seed=7)
    assert result.p_value < 0.01
    assert result.delta_wer < 0
    assert result.ci95[1] < 0
    assert (result.resamples, result.seed, result.num_units) == (2000, 7, 300)


def test_bootstrap_gives_a_large_p_value_when_the_candidate_is_clearly_worse():
    baseline, words = _errors(0.15, 300, seed=1)
    candidate = np.random.default_rng(2).binomial(words, 0.30)
    assert paired_bootstrap(candidate, baseline, words, resamples=2000).p_value > 0.99


def test_identical_systems_are_never_called_better():
    errors, words = _errors(0.2, 100, seed=3)
    result = paired_bootstrap(errors, errors, words, resamples=1000)
    assert result.p_value == 1.0  # every resample is a tie, and ties count against the candidate
    assert result.delta_wer == 0.0


def test_two_draws_of_the_same_system_are_not_significant():
    _, words = _errors(0.2, 400, seed=4)
    rng = np.random.default_rng(5)
    first, second = rng.binomial(words, 0.2), rng.binomial(words, 0.2)
    p_first = paired_bootstrap(first, second, words, resamples=2000).p_value
    p_second = paired_bootstrap(second, first, words, resamples=2000).p_value
    assert min(p_first, p_second) > 0.05


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(1, 8)), min_size=1, max_size=40))
def test_swapping_the_systems_mirrors_the_p_value(rows):
    cand, base, words = (np.array(col) for col in zip(*rows))
    forward = paired_bootstrap(cand, base, words, resamples=300, seed=11)
    backward = paired_bootstrap(base, cand, words, resamples=300, seed=11)
    # The same seed draws the same resamples, so delta flips sign exactly:
    # P(d >= 0) + P(d <= 0) = 1 + P(d = 0).
    assert forward.p_value + backward.p_value >= 1.0 - 1e-12
    assert forward.delta_wer == pytest.approx(-backward.delta_wer)


def test_bootstrap_is_reproducible_for_a_seed():
    cand, words = _errors(0.2, 50, seed=8)
    base, _ = _errors(0.25, 50, seed=9)
    assert paired_bootstrap(cand, base, words, seed=3) == paired_bootstrap(cand, base, words, seed=3)


def test_bootstrap_refuses_inputs_it_cannot_score():
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1], [3, 3])
    with pytest.raises(ValueError):
        paired_bootstrap([], [], [])
    with pytest.raises(ValueError):
        paired_bootstrap([1], [1], [0])


def test_sign_test_matches_the_binomial_tail():
    all_wins = sign_test([10.0, 11.0, 12.0], [12.0, 13.0, 14.0])
    assert (all_wins.wins, all_wins.losses, all_wins.ties) == (3, 0, 0)
    assert all_wins.p_value == pytest.approx(0.5**3)
    mixed = sign_test([10.0, 11.0, 15.0, 9.0], [12.0, 13.0, 14.0, 9.0])  # 2 wins, 1 loss, 1 tie
    assert (mixed.wins, mixed.losses, mixed.ties) == (2, 1, 1)
    assert mixed.p_value == pytest.approx((math.comb(3, 2) + math.comb(3, 3)) / 2**3)
    assert sign_test([14.0, 15.0, 16.0], [12.0, 13.0, 14.0]).p_value == 1.0
    assert sign_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).p_value == 1.0


def test_utterance_errors_count_substitutions_deletions_and_insertions():
    refs = {"a": "alpha bravo charlie", "b": "delta echo", "c": "foxtrot"}
    hyps = {"a": "alpha zulu charlie golf", "c": "foxtrot"}  # b missing: all deletions
    counts = utterance_errors(refs, hyps)
    assert (counts["a"].errors, counts["a"].words) == (2, 3)
    assert (counts["b"].errors, counts["b"].words) == (2, 2)
    assert (counts["c"].errors, counts["c"].words) == (0, 1)
    assert utterance_errors({}, {}) == {}


def test_utterance_errors_normalise_both_sides():
    counts = utterance_errors({"a": "Alpha, Bravo!"}, {"a": "alpha BRAVO"})
    assert counts["a"] == type(counts["a"])(errors=0, words=2)
