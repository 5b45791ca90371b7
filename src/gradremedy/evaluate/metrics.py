"""Scores: word and character error rates (jiwer), PESQ, STOI and SI-SNR, and SNR buckets.

Text is scored after :func:`gradremedy.data.tokenizer.normalize_text` (NFKC, lower case, punctuation and
symbols removed except word-internal apostrophes, white space collapsed), on references and hypotheses
alike. Error counts are summed over utterances before dividing (corpus-level WER, as in sclite), and an
utterance whose normalised reference is empty counts its hypothesis words as insertions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jiwer
import numpy as np
from pystoi import stoi as _stoi

try:  # pesq is built from source; where that failed, PESQ is reported unavailable and the rest goes on
    from pesq import pesq as _pesq

    PESQ_UNAVAILABLE = ""
except ImportError as err:
    _pesq = None
    PESQ_UNAVAILABLE = f"PESQ unavailable: the pesq package cannot be imported ({err})"

from gradremedy.data.audio import resample
from gradremedy.data.tokenizer import normalize_text

# SNR buckets for per-SNR tables: [low, high) except the last, which includes its upper edge.
SNR_EDGES = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0)


@dataclass
class ErrorCounts:
    """Edit operations of hypotheses against references, and the number of reference units."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float | None:
        """Percent errors per reference unit; None without any reference unit (undefined)."""
        if self.reference_length == 0:
            return None
        return 100.0 * self.errors / self.reference_length


def error_counts(reference: str, hypothesis: str, unit: str = "word") -> ErrorCounts:
    """Edit counts of one utterance after normalisation; ``unit`` is ``word`` or ``char``.

    Characters include the single spaces between words (as ``jiwer.cer``), so a merged or split word
    costs one character error.
    """
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    if not ref:  # jiwer refuses empty references; every hypothesis unit is an insertion
        return ErrorCounts(insertions=len(hyp.split()) if unit == "word" else len(hyp))
    out = jiwer.process_words(ref, hyp) if unit == "word" else jiwer.process_characters(ref, hyp)
    return ErrorCounts(
        out.substitutions, out.deletions, out.insertions, out.hits + out.substitutions + out.deletions
    )


def si_snr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-noise ratio in dB (Le Roux et al., "SDR - half-baked or well done?", 2019).

    Both signals are made zero-mean; the target is the projection of the estimate on the reference,
    ``s_t = <e, r> r / |r|^2``, the noise ``e - s_t``; SI-SNR = 10 log10(|s_t|^2 / |e - s_t|^2). Both
    energies get 1e-15 x |e|^2 added, which caps a perfect estimate near 150 dB and leaves every other
    value unchanged to many digits. NaN for a silent (constant) reference, where it is undefined.
    """
    length = min(len(estimate), len(reference))
    est = np.asarray(estimate[:length], dtype=np.float64)
    ref = np.asarray(reference[:length], dtype=np.float64)
    est, ref = est - est.mean(), ref - ref.mean()
    ref_energy = float(ref @ ref)
    if length == 0 or ref_energy == 0.0:
        return math.nan
    target = (est @ ref) / ref_energy * ref
    noise = est - target
    eps = 1e-15 * float(est @ est) + np.finfo(np.float64).tiny
    return float(10.0 * np.log10((target @ target + eps) / (noise @ noise + eps)))


def pesq_rate(sample_rate: int) -> int:
    """The PESQ rate a signal is scored at: 8 kHz (narrow band) or 16 kHz (wide band), whichever is
    nearer (ties go to 16 kHz)."""
    return 8000 if abs(sample_rate - 8000) < abs(sample_rate - 16000) else 16000


def pesq_score(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """PESQ (ITU-T P.862; wide band at 16 kHz, narrow band at 8 kHz; other rates are resampled).

    Raises the ``pesq`` package's errors (e.g. no utterance detected in a silent signal), or a
    RuntimeError saying why PESQ is unavailable; callers report them per utterance.
    """
    if _pesq is None:
        raise RuntimeError(PESQ_UNAVAILABLE)
    rate = pesq_rate(sample_rate)
    length = min(len(reference), len(degraded))
    ref = resample(np.asarray(reference[:length], dtype=np.float32), sample_rate, rate)
    deg = resample(np.asarray(degraded[:length], dtype=np.float32), sample_rate, rate)
    return float(_pesq(rate, ref, deg, "wb" if rate == 16000 else "nb"))


def stoi_score(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Short-time objective intelligibility (Taal et al. 2011), 0..1, via ``pystoi``."""
    length = min(len(reference), len(degraded))
    return float(_stoi(reference[:length], degraded[:length], sample_rate, extended=False))


def snr_bucket(snr: float | None) -> str | None:
    """The label of the SNR bucket of ``snr`` dB: ``[-5,0)``, ..., ``[15,20]``, ``<-5``, ``>20``."""
    if snr is None or math.isnan(snr):
        return None
    low, high = SNR_EDGES[0], SNR_EDGES[-1]
    if snr < low:
        return f"<{low:g}"
    if snr > high:
        return f">{high:g}"
    for lo, hi in zip(SNR_EDGES[:-1], SNR_EDGES[1:]):
        if snr < hi:
            return f"[{lo:g},{hi:g})" if hi < high else f"[{lo:g},{hi:g}]"
    return f"[{SNR_EDGES[-2]:g},{high:g}]"


def snr_bucket_order(label: str) -> float:
    """Sort key of a bucket label (its lower edge)."""
    if label.startswith("<"):
        return -math.inf
    if label.startswith(">"):
        return math.inf
    return float(label[1:].split(",")[0])
