"""Statistics for comparing methods: mean/std over seeds, relative WER change, per-utterance error
counts, a paired bootstrap over test utterances and an exact sign test over seeds.

The bootstrap follows Bisani & Ney (ICASSP 2004), "Bootstrap estimates for confidence intervals in ASR
performance evaluation": the test utterances are resampled with replacement, the same resample for both
systems (paired), and the p-value is the fraction of resamples in which the candidate is *not* better
than the baseline (ties count against the candidate, so identical systems give p = 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from gradremedy.data.wer import utterance_error_counts

DEFAULT_RESAMPLES = 10_000
DEFAULT_BOOTSTRAP_SEED = 1234


def mean_std(values: Iterable[float]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    array = np.asarray(finite, dtype=np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "n": int(array.size)}


def relative_change(value: float | None, baseline: float | None) -> float | None:
    """(value - baseline) / baseline in percent; None when undefined (no baseline or baseline 0)."""
    if value is None or baseline is None or baseline == 0:
        return None
    return 100.0 * (value - baseline) / baseline


@dataclass(frozen=True)
class UtteranceErrors:
    """Word errors and reference words of one utterance (errors = substitutions + deletions + insertions)."""

    errors: int
    words: int


def utterance_errors(
    references: Mapping[str, str], hypotheses: Mapping[str, str]
) -> dict[str, UtteranceErrors]:
    """Per-utterance word error counts by the package's one rule (:mod:`gradremedy.data.wer`).

    Every utterance of ``references`` is scored; one missing from ``hypotheses`` counts as an empty
    hypothesis (all deletions). Callers choose which utterances to score by what they pass.
    """
    utt_ids = sorted(references)
    hyps = [hypotheses.get(u, "") for u in utt_ids]
    counts = utterance_error_counts([references[u] for u in utt_ids], hyps)
    return {u: UtteranceErrors(errors=c.errors, words=c.reference_length) for u, c in zip(utt_ids, counts)}


@dataclass(frozen=True)
class BootstrapResult:
    """Outcome of :func:`paired_bootstrap`."""

    p_value: float  # P(candidate not better than baseline) over resamples
    resamples: int
    seed: int
    num_units: int  # utterances resampled
    delta_wer: float  # observed WER(candidate) - WER(baseline), percent
    ci95: tuple[float, float]  # 2.5 / 97.5 percentiles of the resampled delta, percent


def paired_bootstrap(
    candidate_errors: Sequence[float],
    baseline_errors: Sequence[float],
    words: Sequence[float],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    chunk: int = 500,
) -> BootstrapResult:
    """Paired bootstrap over utterances for "candidate has a lower WER than baseline".

    ``candidate_errors[i]``, ``baseline_errors[i]`` and ``words[i]`` belong to utterance i (pooled over
    seeds: summed over the seeds both systems were run with). Each resample draws the utterances with
    replacement, the same draw for both systems, and compares the pooled WERs.
    """
    cand = np.asarray(candidate_errors, dtype=np.float64)
    base = np.asarray(baseline_errors, dtype=np.float64)
    ref_words = np.asarray(words, dtype=np.float64)
    if not (cand.shape == base.shape == ref_words.shape) or cand.ndim != 1:
        raise ValueError("candidate, baseline and words must be 1-D arrays of the same length")
    if cand.size == 0 or ref_words.sum() <= 0:
        raise ValueError("paired bootstrap needs at least one utterance with reference words")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    rng = np.random.default_rng(seed)
    n = cand.size
    diff = cand - base  # per-utterance error difference; the WER denominators are shared
    deltas = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))  # (R, n) utterance draws
        deltas[start:stop] = 100.0 * diff[idx].sum(axis=1) / ref_words[idx].sum(axis=1).clip(min=1.0)
    not_better = float(np.mean(deltas >= 0.0))
    low, high = np.percentile(deltas, [2.5, 97.5])
    observed = 100.0 * diff.sum() / ref_words.sum()
    return BootstrapResult(
        p_value=not_better,
        resamples=resamples,
        seed=seed,
        num_units=int(n),
        delta_wer=float(observed),
        ci95=(float(low), float(high)),
    )


@dataclass(frozen=True)
class SignTestResult:
    """Outcome of :func:`sign_test`."""

    p_value: float  # one-sided: P(at least `wins` wins out of `trials` | no difference)
    wins: int  # seeds where the candidate's WER is lower
    losses: int
    ties: int


def sign_test(candidate: Sequence[float], baseline: Sequence[float]) -> SignTestResult:
    """Exact one-sided sign test over paired per-seed WERs (ties dropped)."""
    if len(candidate) != len(baseline):
        raise ValueError("sign test needs the same number of candidate and baseline values")
    wins = sum(1 for c, b in zip(candidate, baseline) if c < b)
    losses = sum(1 for c, b in zip(candidate, baseline) if c > b)
    ties = len(candidate) - wins - losses
    trials = wins + losses
    p_value = 1.0 if trials == 0 else float(stats.binomtest(wins, trials, 0.5, alternative="greater").pvalue)
    return SignTestResult(p_value=p_value, wins=wins, losses=losses, ties=ties)
