"""Scoring the enhanced audio against the clean references: PESQ, STOI, SI-SNR and its improvement over
the noisy input, per utterance, in worker processes beside the decoding (:class:`ScoringPool`), on the
chosen subset of a test set (:func:`enhancement_subset`); used by :func:`gradremedy.evaluate.evaluate`.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from gradremedy.data import load_audio
from gradremedy.data.kaldi_dir import Utterance
from gradremedy.errors import DataError
from gradremedy.evaluate import metrics
from gradremedy.evaluate.metrics import check_samples, pesq_score, rounded_mean, si_snr, stoi_score

if TYPE_CHECKING:
    from gradremedy.evaluate.run import DecodedBatch, Recognizer


def say(line: str) -> None:
    """One line on stderr that leaves a running progress bar intact (evaluation's messages)."""
    tqdm.write(line, file=sys.stderr)


def _load_reference(utt: Utterance, rate: int) -> tuple[np.ndarray | None, str | None]:
    """(clean samples, None), or (None, why the clean reference cannot be used)."""
    assert utt.clean_spec is not None
    try:
        clean = load_audio(utt.clean_spec, rate)
    except (DataError, OSError, RuntimeError, ValueError) as err:
        return None, f"{utt.utt_id}: clean reference unreadable ({err})"
    problem = check_samples(clean)
    return (None, f"{utt.utt_id}: clean reference: {problem}") if problem else (clean, None)


def _enhancement_scores(
    clean: np.ndarray, noisy: np.ndarray, enhanced: np.ndarray, rate: int, utt: str, with_pesq: bool = True
) -> tuple[dict[str, float], list[str]]:
    """SE scores of one utterance (enhanced and noisy input against the reference) and the reasons of any
    that failed."""
    scores: dict[str, float] = {}
    failures = []
    enhanced_si_snr, noisy_si_snr = si_snr(enhanced, clean), si_snr(noisy, clean)
    if math.isfinite(enhanced_si_snr) and math.isfinite(noisy_si_snr):
        scores["si_snr"], scores["si_snr_noisy"] = enhanced_si_snr, noisy_si_snr
    else:
        failures.append(f"{utt}: si_snr undefined (silent clean reference)")
    measures = {"pesq": pesq_score, "stoi": stoi_score} if with_pesq else {"stoi": stoi_score}
    for name, fn in measures.items():
        for suffix, signal in (("", enhanced), ("_noisy", noisy)):
            try:
                value = fn(clean, signal, rate)
            except Exception as err:  # the pesq package raises its own error types; report, go on
                failures.append(f"{utt}: {name}{suffix} failed ({type(err).__name__}: {err})")
                continue
            if math.isfinite(value):
                scores[name + suffix] = value
    return scores, failures


def _score_utterance(
    utt: Utterance, noisy: np.ndarray, enhanced: np.ndarray, rate: int, with_pesq: bool
) -> tuple[dict[str, float], list[str]]:
    """One scoring job: load the clean reference of ``utt``, then :func:`_enhancement_scores`."""
    clean, problem = _load_reference(utt, rate)
    if clean is None:
        return {}, [problem or f"{utt.utt_id}: clean reference unusable"]
    return _enhancement_scores(clean, noisy, enhanced, rate, utt.utt_id, with_pesq)


class ScoringPool:
    """Runs scoring jobs in worker processes while the main process decodes; the results come back in the
    order of submission, so the scores (and the order of their sums) do not depend on the number of workers.

    With ``workers == 0``, or when no worker process can be started, each job runs here when it is
    submitted. Workers are forked where the platform allows it (they start in milliseconds with numpy,
    scipy, pystoi and pesq already imported, and never touch torch); they are started at once, before
    decoding starts torch's threads. A job whose worker died is run again here.
    """

    def __init__(self, workers: int):
        self._executor: ProcessPoolExecutor | None = None
        self._jobs: list[tuple[Callable[..., Any], tuple[Any, ...], Future | None, Any]] = []
        if workers <= 0:
            return
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        try:
            self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
            self._executor.submit(os.getpid).result()  # forks every worker now (ProcessPoolExecutor, fork)
        except (OSError, RuntimeError, BrokenProcessPool) as err:
            say(f"gradremedy: warning: scoring in this process only (no worker process: {err})")
            self.close()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._executor is None:
            self._jobs.append((fn, args, None, fn(*args)))
        else:
            self._jobs.append((fn, args, self._executor.submit(fn, *args), None))

    def results(self) -> Iterator[Any]:
        """The results of the jobs submitted so far, in submission order (each job's result once)."""
        jobs, self._jobs = self._jobs, []
        for fn, args, future, result in jobs:
            if future is None:
                yield result
                continue
            try:
                yield future.result()
            except BrokenProcessPool:  # a worker was killed (out of memory?): score the job here
                yield fn(*args)

    @property
    def parallel(self) -> bool:
        """Whether the jobs run in worker processes."""
        return self._executor is not None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EnhancementScores:
    """PESQ, STOI and SI-SNR (and SI-SNR improvement) of the enhanced audio of the chosen utterances,
    scored on ``pool``."""

    def __init__(self, recognizer: Recognizer, chosen: set[str], pool: ScoringPool):
        self.recognizer = recognizer
        self.pool = pool
        self.chosen = chosen if recognizer.has_enhancer else set()
        self.pesq_unavailable = metrics.PESQ_UNAVAILABLE
        self.values: dict[str, list[float]] = defaultdict(list)
        self.failures: list[str] = []
        if self.chosen and self.pesq_unavailable is not None:
            say(f"gradremedy: warning: PESQ not scored: {self.pesq_unavailable}")

    def add(self, decoded: DecodedBatch) -> None:
        """Submit the scoring of the batch's chosen utterances (collected by :meth:`summary`)."""
        rate, with_pesq = self.recognizer.sample_rate, self.pesq_unavailable is None
        enhanced = decoded.enhanced  # what the encoder read; None: enhance the batch here, once
        for i, (utt, samples) in enumerate(zip(decoded.utts, decoded.waveforms)):
            if utt.utt_id not in self.chosen or utt.clean_spec is None:
                continue
            if enhanced is None:
                enhanced = self.recognizer.enhance(decoded.waveforms)
            self.pool.submit(_score_utterance, utt, samples, enhanced[i], rate, with_pesq)

    def _collect(self) -> None:
        for scores, failures in self.pool.results():
            self._fail(failures)
            for name, value in scores.items():
                self.values[name].append(value)

    def _fail(self, lines: list[str]) -> None:
        for line in lines:
            say(line)
        self.failures.extend(lines)

    def summary(self) -> dict[str, Any]:
        self._collect()
        v = self.values
        se: dict[str, Any] = {
            "pesq": rounded_mean(v["pesq"]),
            "stoi": rounded_mean(v["stoi"]),
            "si_snr": rounded_mean(v["si_snr"]),
            "si_snr_improvement": rounded_mean([e - n for e, n in zip(v["si_snr"], v["si_snr_noisy"])]),
            "pesq_noisy": rounded_mean(v["pesq_noisy"]),
            "stoi_noisy": rounded_mean(v["stoi_noisy"]),
            "si_snr_noisy": rounded_mean(v["si_snr_noisy"]),
            "num_utts": len(v["si_snr"]),
            "failures": self.failures,
        }
        if not self.recognizer.has_enhancer:
            se["note"] = "the model has no enhancer"
        elif self.pesq_unavailable is not None:
            se["pesq_unavailable"] = self.pesq_unavailable
        return se


def enhancement_subset(utt_ids: list[str], max_utts: int) -> set[str]:
    """The utterances whose enhancement is scored: all, or ``max_utts`` evenly spaced in sorted-id order
    (deterministic, and spread over speakers, since ids start with the speaker)."""
    ordered = sorted(utt_ids)
    if max_utts <= 0 or len(ordered) <= max_utts:
        return set(ordered)
    return {ordered[(k * len(ordered)) // max_utts] for k in range(max_utts)}
