"""Scores of enhanced speech (PESQ, STOI, SI-SNR) and SNR buckets (text: :mod:`gradremedy.data.wer`).

PESQ needs the ``pesq`` package, a C extension that fails to build on some Pythons: without it
:data:`PESQ_UNAVAILABLE` says why, and evaluation reports PESQ as unavailable instead of stopping.
"""

from __future__ import annotations

import math

import numpy as np
from pystoi import stoi as _stoi

from gradremedy.data.audio import resample

try:
    from pesq import pesq as _pesq

    PESQ_UNAVAILABLE: str | None = None
except (ImportError, OSError) as err:  # not installed, or a build that cannot load
    _pesq = None
    PESQ_UNAVAILABLE = f"the pesq package cannot be imported ({type(err).__name__}: {err})"

# SNR buckets for per-SNR tables: [low, high) except the last, which includes its upper edge.
SNR_EDGES = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0)


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

    Raises the ``pesq`` package's errors (e.g. no utterance detected in a silent signal); callers
    report them per utterance. Raises RuntimeError when the package is unavailable (see
    :data:`PESQ_UNAVAILABLE`).
    """
    if _pesq is None:
        raise RuntimeError(f"PESQ unavailable: {PESQ_UNAVAILABLE}")
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


def check_samples(samples: np.ndarray) -> str | None:
    """Why these samples can be neither decoded nor scored, or None."""
    if samples.size == 0:
        return "empty audio"
    if not np.isfinite(samples).all():
        return "non-finite samples (NaN or inf)"
    return None


def rounded(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded for a report; None when it is None or not finite."""
    return None if value is None or not math.isfinite(value) else round(value, digits)


def rounded_mean(values: list[float]) -> float | None:
    """The mean of ``values`` rounded for a report; None when there are none."""
    return rounded(float(np.mean(values))) if values else None
